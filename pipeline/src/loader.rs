//! The loader: sampler -> read -> decode -> augment -> uint8 batch, on a pool of worker
//! threads, written straight into batch storage the consumer supplies (pinned memory on a GPU
//! machine), with a bounded number of batches in flight.
//!
//! - **Determinism.** Sample `position` of a run draws its augmentation from the stream
//!   (seed, epoch, global position), where the global position counts over all ranks
//!   (`position * world + rank`, the sampler's order; so 2 ranks x batch B see the same crops
//!   as 1 rank x batch 2B), and batch `step` its iBOT masks from (seed, epoch, step * world + rank): the
//!   output does not depend on the number of workers or on timing, and a run resumes exactly
//!   from (epoch, step).
//! - **Backpressure and memory.** Only as many batches are in flight as there are storages;
//!   workers take one sample job at a time. Memory is the storages plus one decoded image per
//!   worker.
//! - **Errors.** With [`BadRecordPolicy::Fail`], a failing record (corrupt shard, undecodable
//!   image) ends the epoch with an error naming the record; with `Skip`, a deterministic
//!   substitute takes its place and the batch lists it in [`Batch::skipped`], up to a cap per
//!   epoch (see [`crate::bad_records`]). A panicking worker always ends the epoch; nothing
//!   hangs and no sample is dropped silently.

use crate::bad_records::{BadRecordPolicy, BadRecords, SkippedRecord};
use crate::collate::{BatchMasks, collate_masks};
use crate::dataset::Dataset;
use crate::decode::Decoder;
use crate::masking::MaskingGenerator;
use crate::presets::{CropGroup, Preset};
use crate::rng::{PyRandom, Xoshiro, stream_key};
use crate::sampler::{Sampler, SamplerKind};
use crate::transforms::Resizer;
use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Memory a batch is written into: one plane per crop group of the preset, each
/// `count * batch_size * size * size * 3` bytes, crop-major (crop k of every sample, then
/// crop k+1), like the reference collate's `stack([s[i] for i in crops for s in samples])`.
pub trait BatchStorage: Send {
    fn planes(&mut self) -> Vec<&mut [u8]>;
}

/// Plain heap storage.
pub struct VecStorage(pub Vec<Vec<u8>>);

impl VecStorage {
    /// Storage sized for `batch_size` samples of `preset`.
    pub fn for_preset(preset: &Preset, batch_size: usize) -> Self {
        Self(
            preset
                .groups()
                .iter()
                .map(|g| vec![0u8; g.count * batch_size * g.crop_bytes()])
                .collect(),
        )
    }
}

impl BatchStorage for VecStorage {
    fn planes(&mut self) -> Vec<&mut [u8]> {
        self.0.iter_mut().map(|v| v.as_mut_slice()).collect()
    }
}

/// iBOT masking settings of the DINOv2 collate.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskConfig {
    pub patch_size: usize,
    pub ratio: (f64, f64),
    pub probability: f64,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            patch_size: 14,
            ratio: (0.1, 0.5),
            probability: 0.5,
        }
    }
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub preset: Preset,
    /// Samples per batch on this rank.
    pub batch_size: usize,
    pub workers: usize,
    pub seed: u64,
    pub sampler: SamplerKind,
    pub rank: usize,
    pub world: usize,
    /// iBOT masks for the global crops (the `dinov2` preset).
    pub masks: Option<MaskConfig>,
    /// Emit the last, partial batch of an epoch (evaluation: every sample once) instead of
    /// dropping it; its `labels` / `indices` are shorter than the batch size and only the
    /// first `len()` rows of each crop are written.
    pub keep_partial_batch: bool,
    /// What a record that cannot be read or decoded does.
    pub bad_records: BadRecords,
}

/// Time spent per stage, summed over workers (nanoseconds).
#[derive(Debug, Default)]
pub struct StageTimes {
    pub read: AtomicU64,
    pub decode: AtomicU64,
    pub augment: AtomicU64,
    pub collate: AtomicU64,
    pub samples: AtomicU64,
    pub bytes: AtomicU64,
}

/// One batch. Its storage goes back to the loader when it is dropped; a consumer that keeps
/// every storage's batch alive stalls the loader until it lets one go.
pub struct Batch {
    storage: Option<Box<dyn BatchStorage>>,
    home: Sender<Box<dyn BatchStorage>>,
    pub epoch: u64,
    pub step: u64,
    /// Dataset index and label of each sample.
    pub indices: Vec<usize>,
    pub labels: Vec<u32>,
    pub masks: Option<BatchMasks>,
    /// Records skipped for this batch (policy `skip`), in sample order; `indices` holds
    /// their substitutes.
    pub skipped: Vec<SkippedRecord>,
}

impl Batch {
    /// Samples in this batch (the batch size, or fewer for a kept partial last batch).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The crop planes (see [`BatchStorage`]).
    pub fn planes(&mut self) -> Vec<&mut [u8]> {
        self.storage
            .as_mut()
            .expect("storage present until drop")
            .planes()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(s) = self.storage.take() {
            let _ = self.home.send(s);
        }
    }
}

/// The loader: owns the storages between epochs.
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    groups: Vec<CropGroup>,
    free_tx: Sender<Box<dyn BatchStorage>>,
    free_rx: Receiver<Box<dyn BatchStorage>>,
    n_storages: usize,
    pub times: Arc<StageTimes>,
}

/// A pointer to one crop slot inside a storage that is in flight.
#[derive(Clone, Copy)]
struct Slot(*mut u8, usize);
// SAFETY: each slot is a disjoint region of a storage that stays alive and unmoved until all
// jobs of its batch have reported back.
unsafe impl Send for Slot {}

struct Job {
    seq: u64,
    sample: usize,
    index: usize,
    position: u64,
    slots: Vec<Slot>,
}

/// What a sample job produced: its label, the dataset index it used (a substitute's when the
/// record was skipped) and the records it skipped.
struct JobOutput {
    label: u32,
    index: usize,
    skipped: Vec<SkippedRecord>,
}

type JobResult = (u64, usize, Result<JobOutput, String>);

impl Loader {
    /// A loader over `dataset`; `storages` (at least one) bound the batches in flight.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        cfg: LoaderConfig,
        storages: Vec<Box<dyn BatchStorage>>,
    ) -> Result<Self> {
        if storages.is_empty() || cfg.batch_size == 0 || cfg.workers == 0 {
            bail!(
                "the loader needs at least one storage, one worker and a batch size of at least 1"
            );
        }
        let groups = cfg.preset.groups();
        let (free_tx, free_rx) = unbounded();
        let n_storages = storages.len();
        for mut s in storages {
            let sizes: Vec<usize> = s.planes().iter().map(|p| p.len()).collect();
            let want: Vec<usize> = groups
                .iter()
                .map(|g| g.count * cfg.batch_size * g.crop_bytes())
                .collect();
            if sizes != want {
                bail!(
                    "a batch storage has planes of {sizes:?} bytes; this preset and batch size need {want:?}"
                );
            }
            free_tx.send(s).expect("receiver alive");
        }
        Sampler::new(cfg.sampler, dataset.len(), cfg.seed, cfg.rank, cfg.world)?;
        Ok(Self {
            dataset,
            cfg,
            groups,
            free_tx,
            free_rx,
            n_storages,
            times: Arc::new(StageTimes::default()),
        })
    }

    /// Batches per epoch on this rank (the last partial batch is dropped unless
    /// `keep_partial_batch`); `None` if infinite.
    pub fn steps_per_epoch(&self) -> Option<u64> {
        let s = Sampler::new(
            self.cfg.sampler,
            self.dataset.len(),
            self.cfg.seed,
            self.cfg.rank,
            self.cfg.world,
        )
        .ok()?;
        s.per_rank().map(|n| {
            if self.cfg.keep_partial_batch {
                n.div_ceil(self.cfg.batch_size) as u64
            } else {
                (n / self.cfg.batch_size) as u64
            }
        })
    }

    /// Iterates over `epoch` from `start_step` (for the infinite sampler, positions continue
    /// from `start_step` and `epoch` only names the run).
    pub fn epoch(&mut self, epoch: u64, start_step: u64) -> Result<EpochIter<'_>> {
        let end = self.steps_per_epoch();
        if let Some(end) = end
            && start_step > end
        {
            bail!("step {start_step} is past the end of the epoch ({end} steps)");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = bounded::<Job>(self.cfg.workers * 2);
        let (res_tx, res_rx) = unbounded::<JobResult>();
        let mut workers = Vec::new();
        for _ in 0..self.cfg.workers {
            let (job_rx, res_tx, ds, preset, stop, times) = (
                job_rx.clone(),
                res_tx.clone(),
                self.dataset.clone(),
                self.cfg.preset.clone(),
                stop.clone(),
                self.times.clone(),
            );
            let (seed, bad) = (self.cfg.seed, self.cfg.bad_records);
            workers.push(std::thread::spawn(move || {
                worker(job_rx, res_tx, ds, preset, (seed, epoch), bad, stop, times)
            }));
        }
        drop(res_tx);
        let (out_tx, out_rx) = bounded::<Result<Batch>>(self.n_storages);
        let coord = Coordinator {
            dataset: self.dataset.clone(),
            cfg: self.cfg.clone(),
            groups: self.groups.clone(),
            free_rx: self.free_rx.clone(),
            free_tx: self.free_tx.clone(),
            epoch,
            start_step,
            end_step: end,
            stop: stop.clone(),
            times: self.times.clone(),
        };
        let handle = std::thread::spawn(move || coord.run(job_tx, res_rx, out_tx));
        Ok(EpochIter {
            rx: out_rx,
            stop,
            coordinator: Some(handle),
            workers,
            _loader: std::marker::PhantomData,
        })
    }
}

/// The batches of one epoch, in step order. It borrows the loader, so the next epoch starts
/// only after this one's threads are gone.
pub struct EpochIter<'a> {
    rx: Receiver<Result<Batch>>,
    stop: Arc<AtomicBool>,
    coordinator: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    _loader: std::marker::PhantomData<&'a mut Loader>,
}

impl Iterator for EpochIter<'_> {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        self.rx.recv().ok()
    }
}

impl Drop for EpochIter<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Drain so the coordinator is not blocked on a full queue; dropped batches return
        // their storage.
        while self.rx.try_recv().is_ok() {}
        if let Some(h) = self.coordinator.take() {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct InFlight {
    storage: Box<dyn BatchStorage>,
    step: u64,
    indices: Vec<usize>,
    labels: Vec<u32>,
    skipped: Vec<Vec<SkippedRecord>>,
    remaining: usize,
}

struct Coordinator {
    dataset: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    groups: Vec<CropGroup>,
    free_rx: Receiver<Box<dyn BatchStorage>>,
    free_tx: Sender<Box<dyn BatchStorage>>,
    epoch: u64,
    start_step: u64,
    end_step: Option<u64>,
    stop: Arc<AtomicBool>,
    times: Arc<StageTimes>,
}

impl Coordinator {
    fn run(self, job_tx: Sender<Job>, res_rx: Receiver<JobResult>, out_tx: Sender<Result<Batch>>) {
        let mut in_flight = BTreeMap::new();
        let result = self.run_inner(job_tx, res_rx, &out_tx, &mut in_flight);
        self.stop.store(true, Ordering::SeqCst);
        // Unfinished batches give their storage back. Workers stop before their next job and
        // are joined before the loader can start another epoch (EpochIter borrows it).
        for (_, f) in in_flight {
            let _ = self.free_tx.send(f.storage);
        }
        if let Err(e) = result {
            let _ = out_tx.send(Err(e));
        }
    }

    fn run_inner(
        &self,
        job_tx: Sender<Job>,
        res_rx: Receiver<JobResult>,
        out_tx: &Sender<Result<Batch>>,
        in_flight: &mut BTreeMap<u64, InFlight>,
    ) -> Result<()> {
        let b = self.cfg.batch_size;
        let mut sampler = Sampler::new(
            self.cfg.sampler,
            self.dataset.len(),
            self.cfg.seed,
            self.cfg.rank,
            self.cfg.world,
        )?;
        let generator = self.cfg.masks.as_ref().map(|m| {
            let crop = self.groups[0].size;
            let grid = crop / m.patch_size;
            // As train.py: max_num_patches = 0.5 * S // p * S // p.
            let max = ((0.5 * crop as f64) as usize / m.patch_size) * crop / m.patch_size;
            MaskingGenerator::new(grid, grid, 4, max, 0.3, None)
        });
        let mut next_step = self.start_step;
        let mut next_emit = self.start_step;
        // The bad-record cap counts per epoch: the samples this rank draws in one (for the
        // infinite sampler, one pass: its share of the dataset), and the records skipped so
        // far in the current one.
        let epoch_samples = sampler
            .per_rank()
            .unwrap_or(self.dataset.len() / self.cfg.world)
            .max(1) as u64;
        let (mut skipped_in_epoch, mut pass) = (0u64, None);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let more = self.end_step.is_none_or(|e| next_step < e);
            // Dispatch a new batch when a storage is free.
            if more && let Ok(mut storage) = self.free_rx.try_recv() {
                let step = next_step;
                next_step += 1;
                // Samples in this batch: b, or what is left of the epoch for a kept partial one.
                let n = match sampler.per_rank() {
                    Some(per_rank) if self.cfg.keep_partial_batch => {
                        b.min(per_rank - step as usize * b)
                    }
                    _ => b,
                };
                let positions: Vec<u64> = (0..n as u64).map(|i| step * b as u64 + i).collect();
                let indices: Vec<usize> = positions
                    .iter()
                    .map(|&p| sampler.index(self.epoch, p))
                    .collect();
                let planes: Vec<(*mut u8, usize)> = storage
                    .planes()
                    .into_iter()
                    .map(|p| (p.as_mut_ptr(), p.len()))
                    .collect();
                for (i, (&index, &position)) in indices.iter().zip(&positions).enumerate() {
                    let mut slots = Vec::new();
                    for (g, group) in self.groups.iter().enumerate() {
                        let cb = group.crop_bytes();
                        for k in 0..group.count {
                            let offset = (k * b + i) * cb;
                            debug_assert!(offset + cb <= planes[g].1);
                            // SAFETY: in bounds (checked sizes at construction); disjoint per (k, i).
                            slots.push(Slot(unsafe { planes[g].0.add(offset) }, cb));
                        }
                    }
                    job_tx
                        .send(Job {
                            seq: step,
                            sample: i,
                            index,
                            position: sampler.global_position(position),
                            slots,
                        })
                        .map_err(|_| anyhow!("the loader's workers stopped"))?;
                }
                in_flight.insert(
                    step,
                    InFlight {
                        storage,
                        step,
                        indices,
                        labels: vec![0; n],
                        skipped: vec![Vec::new(); n],
                        remaining: n,
                    },
                );
                continue;
            }
            if in_flight.is_empty() {
                if !more {
                    return Ok(());
                }
                // Wait for a storage to come back from the consumer.
                match self
                    .free_rx
                    .recv_timeout(std::time::Duration::from_millis(50))
                {
                    Ok(s) => {
                        self.free_tx.send(s).expect("own channel");
                        continue;
                    }
                    Err(_) => continue,
                }
            }
            let (seq, sample, result) =
                match res_rx.recv_timeout(std::time::Duration::from_millis(50)) {
                    Ok(r) => r,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(_) => bail!("the loader's workers stopped unexpectedly"),
                };
            let entry = in_flight
                .get_mut(&seq)
                .expect("result for a batch in flight");
            match result {
                Ok(out) => {
                    entry.labels[sample] = out.label;
                    entry.indices[sample] = out.index;
                    entry.skipped[sample] = out.skipped;
                }
                Err(e) => bail!("{e}"),
            }
            entry.remaining -= 1;
            // Emit finished batches in step order.
            while in_flight.get(&next_emit).is_some_and(|f| f.remaining == 0) {
                let f = in_flight.remove(&next_emit).unwrap();
                next_emit += 1;
                let skipped: Vec<SkippedRecord> = f.skipped.into_iter().flatten().collect();
                let this_pass = f.step * b as u64 / epoch_samples;
                if pass != Some(this_pass) {
                    (skipped_in_epoch, pass) = (0, Some(this_pass));
                }
                skipped_in_epoch += skipped.len() as u64;
                if !skipped.is_empty() {
                    self.cfg
                        .bad_records
                        .check(skipped_in_epoch, epoch_samples, skipped.last())?;
                }
                let t = Instant::now();
                let masks = generator.as_ref().map(|g| {
                    let m = self.cfg.masks.as_ref().unwrap();
                    // each rank draws its own masks (for one process: the step)
                    let (w, r) = (self.cfg.world as u64, self.cfg.rank as u64);
                    let key = stream_key(self.cfg.seed, &[0x4D41_534B, self.epoch, f.step * w + r]);
                    collate_masks(
                        self.groups[0].count * f.labels.len(),
                        m.ratio,
                        m.probability,
                        g,
                        &mut PyRandom::new(key),
                    )
                });
                self.times
                    .collate
                    .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let batch = Batch {
                    storage: Some(f.storage),
                    home: self.free_tx.clone(),
                    epoch: self.epoch,
                    step: f.step,
                    indices: f.indices,
                    labels: f.labels,
                    masks,
                    skipped,
                };
                if out_tx.send(Ok(batch)).is_err() {
                    return Ok(()); // the consumer went away
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    jobs: Receiver<Job>,
    results: Sender<JobResult>,
    dataset: Arc<dyn Dataset>,
    preset: Preset,
    (seed, epoch): (u64, u64),
    bad: BadRecords,
    stop: Arc<AtomicBool>,
    times: Arc<StageTimes>,
) {
    let mut decoder = match Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            let _ = results.send((0, 0, Err(format!("{e:#}"))));
            return;
        }
    };
    let mut resizer = Resizer::new();
    while let Ok(job) = jobs.recv() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (seq, sample) = (job.seq, job.sample);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process(
                &job,
                &*dataset,
                &preset,
                (seed, epoch),
                bad,
                &mut decoder,
                &mut resizer,
                &times,
            )
        }))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(anyhow!(
                "a loader worker panicked on record {}: {}",
                job.index,
                msg.unwrap_or_default()
            ))
        });
        if results
            .send((seq, sample, outcome.map_err(|e| format!("{e:#}"))))
            .is_err()
        {
            break;
        }
    }
}

/// Reads and decodes record `index` (timed), errors naming it.
fn read_and_decode(
    dataset: &dyn Dataset,
    index: usize,
    decoder: &mut Decoder,
    times: &StageTimes,
) -> Result<(crate::Record, crate::transforms::RgbImage)> {
    let t0 = Instant::now();
    let record = dataset
        .get(index)
        .with_context(|| format!("loading record {index} ({})", dataset.describe()));
    let t1 = Instant::now();
    times
        .read
        .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
    let record = record?;
    let img = decoder
        .decode(&record.bytes)
        .with_context(|| format!("decoding record {index} ({})", record.key));
    times
        .decode
        .fetch_add(t1.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok((record, img?))
}

#[allow(clippy::too_many_arguments)]
fn process(
    job: &Job,
    dataset: &dyn Dataset,
    preset: &Preset,
    (seed, epoch): (u64, u64),
    bad: BadRecords,
    decoder: &mut Decoder,
    resizer: &mut Resizer,
    times: &StageTimes,
) -> Result<JobOutput> {
    let mut index = job.index;
    let mut skipped = Vec::new();
    let (record, img) = loop {
        match read_and_decode(dataset, index, decoder, times) {
            Ok(ok) => break ok,
            Err(e) => {
                let attempt = skipped.len() as u64 + 1;
                let stream = (seed, epoch, job.position);
                match bad.substitute(stream, attempt, dataset.len()) {
                    Some(substitute) => {
                        skipped.push(SkippedRecord {
                            index,
                            error: format!("{e:#}"),
                            substitute,
                        });
                        index = substitute;
                    }
                    None if bad.policy == BadRecordPolicy::Skip => {
                        return Err(e.context(format!(
                            "{} substitutes in a row were bad too",
                            skipped.len()
                        )));
                    }
                    None => return Err(e),
                }
            }
        }
    };
    let t2 = Instant::now();
    let mut rng = Xoshiro::stream(seed, &[epoch, job.position]);
    // SAFETY: see `Slot`.
    let mut outs: Vec<&mut [u8]> = job
        .slots
        .iter()
        .map(|s| unsafe { std::slice::from_raw_parts_mut(s.0, s.1) })
        .collect();
    preset.apply(&img, &mut rng, resizer, &mut outs);
    let t3 = Instant::now();
    times
        .augment
        .fetch_add((t3 - t2).as_nanos() as u64, Ordering::Relaxed);
    times.samples.fetch_add(1, Ordering::Relaxed);
    times
        .bytes
        .fetch_add(record.bytes.len() as u64, Ordering::Relaxed);
    Ok(JobOutput {
        label: record.label,
        index,
        skipped,
    })
}
