//! The loader: same output for any worker count, exact resume, errors instead of hangs,
//! bounded memory.

mod common;
use common::*;
use converters::synth::{SynthSpec, generate};
use pipeline::dataset::{Dataset, open_dataset};
use pipeline::loader::{BatchStorage, Loader, LoaderConfig, MaskConfig, VecStorage};
use pipeline::presets::{MultiCrop, Preset};
use pipeline::sampler::SamplerKind;
use std::sync::Arc;

fn shards(name: &str, per_class: usize) -> std::path::PathBuf {
    let dir = scratch(name);
    let spec = SynthSpec {
        classes: 3,
        train_per_class: per_class,
        val_per_class: 0,
        mean_width: 120,
        mean_height: 100,
        ..SynthSpec::default()
    };
    generate(&dir.join("tree"), &spec).unwrap();
    let out = dir.join("lmdb");
    dinov2_ok(args![
        "convert",
        "folder",
        "--root",
        dir.join("tree/train"),
        "--out",
        out,
        "--format",
        "lmdb",
        "--shard-size",
        "10"
    ]);
    out
}

fn small_dinov2() -> Preset {
    Preset::Dinov2(MultiCrop {
        global_size: 64,
        local_size: 32,
        local_crops: 3,
        ..MultiCrop::default()
    })
}

fn config(preset: Preset, workers: usize, batch: usize) -> LoaderConfig {
    LoaderConfig {
        preset,
        batch_size: batch,
        workers,
        seed: 42,
        sampler: SamplerKind::Epoch {
            shuffle: true,
            drop_last: true,
        },
        rank: 0,
        world: 1,
        masks: Some(MaskConfig {
            patch_size: 16,
            ..MaskConfig::default()
        }),
        keep_partial_batch: false,
        bad_records: pipeline::bad_records::BadRecords::FAIL,
    }
}

fn loader(ds: Arc<dyn Dataset>, cfg: LoaderConfig, storages: usize) -> Loader {
    let st: Vec<Box<dyn BatchStorage>> = (0..storages)
        .map(|_| {
            Box::new(VecStorage::for_preset(&cfg.preset, cfg.batch_size)) as Box<dyn BatchStorage>
        })
        .collect();
    Loader::new(ds, cfg, st).unwrap()
}

/// Everything a batch holds, as comparable values.
type Snapshot = (u64, Vec<usize>, Vec<u32>, Vec<Vec<u8>>, Option<Vec<bool>>);

fn run(l: &mut Loader, epoch: u64, start: u64) -> Vec<Snapshot> {
    l.epoch(epoch, start)
        .unwrap()
        .map(|b| {
            let mut b = b.unwrap();
            let planes = b.planes().iter().map(|p| p.to_vec()).collect();
            (
                b.step,
                b.indices.clone(),
                b.labels.clone(),
                planes,
                b.masks.as_ref().map(|m| m.masks.clone()),
            )
        })
        .collect()
}

#[test]
fn same_batches_for_any_worker_count_and_exact_resume() {
    let ds: Arc<dyn Dataset> = Arc::from(open_dataset(&shards("loader-det", 8), "train").unwrap());
    let mut one = loader(ds.clone(), config(small_dinov2(), 1, 4), 2);
    let mut three = loader(ds.clone(), config(small_dinov2(), 3, 4), 3);
    assert_eq!(one.steps_per_epoch(), Some(6));
    let a = run(&mut one, 0, 0);
    let b = run(&mut three, 0, 0);
    assert_eq!(a.len(), 6);
    assert!(a == b, "worker count changed the output");
    // Labels are the records' labels; every index appears once per epoch.
    let mut all: Vec<usize> = a.iter().flat_map(|s| s.1.clone()).collect();
    for s in &a {
        for (i, l) in s.1.iter().zip(&s.2) {
            assert_eq!(ds.get(*i).unwrap().label, *l);
        }
        assert_eq!(s.3[0].len(), 2 * 4 * 64 * 64 * 3);
        assert_eq!(s.3[1].len(), 3 * 4 * 32 * 32 * 3);
        assert!(
            s.4.as_ref().unwrap().iter().any(|&m| m),
            "half of the global crops are masked"
        );
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 24);
    // Another epoch differs; resuming at step 4 gives steps 4.. of the full run.
    let e1 = run(&mut one, 1, 0);
    assert_ne!(a[0].1, e1[0].1);
    let resumed = run(&mut three, 0, 4);
    assert!(resumed[..] == a[4..], "resume from step 4 differs");
}

#[test]
fn a_corrupt_record_is_an_error_naming_it_not_a_hang() {
    let out = shards("loader-corrupt", 6);
    let m = pipeline::shards::Manifest::load(&out).unwrap();
    let path = out.join(&m.splits["train"].shards[1].file);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .unwrap()
        + 300;
    bytes[at] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let ds: Arc<dyn Dataset> = Arc::from(open_dataset(&out, "train").unwrap());
    let mut l = loader(ds, config(Preset::by_name("linear-eval").unwrap(), 2, 3), 2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Batches are dropped as they come: holding every storage would (by design) stall
            // the loader until one is given back.
            let errors: Vec<String> = l
                .epoch(0, 0)
                .unwrap()
                .filter_map(|r| r.err())
                .map(|e| format!("{e:#}"))
                .collect();
            tx.send(errors).unwrap();
        });
        let errors = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the loader hung");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("train-00001.lmdb record 0") && errors[0].contains("corrupt"),
            "{errors:?}"
        );
    });
    // The loader is still usable afterwards (its storages came back; otherwise this would
    // hang): the next epoch meets the same record again and reports it again.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let errors = l.epoch(1, 0).unwrap().filter(|r| r.is_err()).count();
            tx.send(errors).unwrap();
        });
        let errors = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the loader hung");
        assert_eq!(errors, 1);
    });
}

fn rss_anon_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn memory_stays_bounded() {
    let ds: Arc<dyn Dataset> = Arc::from(open_dataset(&shards("loader-mem", 20), "train").unwrap());
    let cfg = config(Preset::by_name("linear-train").unwrap(), 2, 8);
    let batch_bytes = 8 * 224 * 224 * 3;
    let mut l = loader(ds, cfg, 3);
    // Warm up (thread stacks, allocator arenas), then measure over many epochs.
    let _ = run(&mut l, 0, 0);
    let before = rss_anon_kb();
    let mut peak = before;
    for epoch in 1..12 {
        for b in l.epoch(epoch, 0).unwrap() {
            drop(b.unwrap());
            peak = peak.max(rss_anon_kb());
        }
    }
    let grown = (peak - before) * 1024;
    // Storages are allocated up front; what may grow is per-worker scratch, not batches.
    assert!(
        grown < (2 * batch_bytes) as u64 + (16 << 20),
        "RSS grew by {grown} bytes"
    );
}

#[test]
fn linear_eval_batches_equal_the_transforms_applied_to_full_decodes() {
    use pipeline::transforms::{Interpolation, Resizer, center_crop, resize_shorter};
    let ds: Arc<dyn Dataset> = Arc::from(open_dataset(&shards("loader-eval", 4), "train").unwrap());
    let mut cfg = config(Preset::by_name("linear-eval").unwrap(), 2, 3);
    cfg.masks = None;
    cfg.sampler = SamplerKind::Epoch {
        shuffle: false,
        drop_last: true,
    };
    let mut l = loader(ds.clone(), cfg, 2);
    let mut decoder = pipeline::decode::Decoder::new().unwrap();
    let mut resizer = Resizer::new();
    for b in l.epoch(0, 0).unwrap() {
        let mut b = b.unwrap();
        let indices = b.indices.clone();
        let plane = b.planes()[0].to_vec();
        for (i, index) in indices.iter().enumerate() {
            let img = decoder.decode(&ds.get(*index).unwrap().bytes).unwrap();
            let want = center_crop(
                &resize_shorter(&img, 256, Interpolation::Bicubic, &mut resizer),
                224,
            );
            let n = 224 * 224 * 3;
            assert!(
                plane[i * n..(i + 1) * n] == want.data[..],
                "sample {i} of step {}",
                b.step
            );
        }
    }
}

#[test]
fn evaluation_keeps_the_partial_last_batch_and_sees_every_sample_once() {
    let ds: Arc<dyn Dataset> =
        Arc::from(open_dataset(&shards("loader-partial", 4), "train").unwrap());
    assert_eq!(ds.len(), 12);
    let mut cfg = config(Preset::by_name("linear-eval").unwrap(), 2, 5);
    cfg.masks = None;
    cfg.keep_partial_batch = true;
    cfg.sampler = SamplerKind::Epoch {
        shuffle: false,
        drop_last: false,
    };
    let mut l = loader(ds.clone(), cfg, 2);
    assert_eq!(l.steps_per_epoch(), Some(3));
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    for b in l.epoch(0, 0).unwrap() {
        let b = b.unwrap();
        sizes.push(b.len());
        assert_eq!(b.indices.len(), b.labels.len());
        seen.extend(b.indices.clone());
    }
    assert_eq!(sizes, [5, 5, 2]);
    assert_eq!(seen, (0..12).collect::<Vec<_>>());
    // Resuming at the partial step gives just it.
    let sizes: Vec<usize> = l.epoch(0, 2).unwrap().map(|b| b.unwrap().len()).collect();
    assert_eq!(sizes, [2]);
}
