//! `dinov2 bench train -c CONFIG`: images/s of the whole pretraining step (data + forward +
//! backward + optimizer + EMA) side by side with the data pipeline alone on the same config,
//! in one run: how far the pipeline is from starving the step. The step is timed twice: fed
//! by the pipeline, and on one pre-made batch already on the device (no loader running); their
//! ratio says whether the accelerator ever waits for data. Both runs also report where each
//! step's time goes (data wait, host-to-device copy, forward + backward, optimizer, EMA).

use super::shared::{median, sync};
use anyhow::{Context, Result, ensure};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use trainer::ssl::config::SslConfig;
use trainer::ssl::meta_arch::{SslBatch, SslMetaArch};
use trainer::ssl::train::{
    Optim, batch_tensors, build_loader, meta_arch_config, open_train_dataset, parse_device,
    schedules, train_step,
};
use trainer::step_timer::{Breakdown, Phase, StepTimer};

#[derive(clap::Args)]
pub struct TrainBenchArgs {
    /// A pretraining config (dinov2's keys), e.g. configs/tiny_ssl_cpu.yaml.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    #[arg(short = 'o', long = "override")]
    pub overrides: Vec<String>,
    /// Timed iterations (after 2 warm-up ones).
    #[arg(long, default_value_t = 20)]
    pub iterations: u64,
    /// Where results.json goes.
    #[arg(long, default_value = "runs/bench-train")]
    pub workdir: PathBuf,
}

/// The data-only rate is measured over at least this many batches (more with more
/// --iterations) and at least DATA_SECONDS.
const DATA_BATCHES: usize = 30;
const DATA_SECONDS: f64 = 2.0;

pub fn run(a: TrainBenchArgs) -> Result<ExitCode> {
    ensure!(a.iterations >= 3, "--iterations must be at least 3");
    let c: SslConfig = trainer::config::load_yaml(&a.config, &a.overrides)?;
    let device = parse_device(&c.train.device)?;
    let ds = open_train_dataset(&c)?;
    let batch = c.train.batch_size_per_gpu as usize;
    let n = a.iterations + 2;
    let cr = &c.crops;
    let (g, l, nl) = (
        cr.global_crops_size as usize,
        cr.local_crops_size as usize,
        cr.local_crops_number as usize,
    );

    // 1. The data pipeline alone (batches dropped as soon as they arrive): its sustained rate
    // over at least DATA_BATCHES batches and DATA_SECONDS, after the first few (the loader
    // fills its queue of prefetched batches while those are taken; they would come for free).
    const SKIP: usize = 5;
    let mut loader = build_loader(&c, ds.clone(), (0, 1), device)?;
    let (data_batches, data_seconds) = {
        let mut it = loader.epoch(0, 0)?;
        for _ in 0..SKIP {
            drop(it.next().context("the loader ended")??);
        }
        let t = Instant::now();
        let mut k = 0usize;
        while k < DATA_BATCHES.max(n as usize) || t.elapsed().as_secs_f64() < DATA_SECONDS {
            drop(it.next().context("the loader ended")??);
            k += 1;
        }
        (k, t.elapsed().as_secs_f64())
    };
    drop(loader);
    // 2. The whole training step on one pre-made batch (no loader running), then 3. fed by
    // the same pipeline; one model and optimizer carried through both.
    tch::manual_seed(0);
    let mac = meta_arch_config(&c)?;
    let mut arch = SslMetaArch::new(mac.clone(), device)?;
    let mut o = Optim::new(&arch, &c)?;
    let sched = schedules(&c, 1)?;
    let single = trainer::dist::Dist::single();
    // `n` steps, each synchronised; the times of all but the first two (warm-up), and where
    // the time of those went (every phase synchronised on CUDA: a profiling run).
    let mut timed_steps = |first: u64,
                           batch: &mut dyn FnMut(&mut StepTimer) -> Result<SslBatch>|
     -> Result<(Vec<f64>, Breakdown)> {
        let mut timer = StepTimer::new(device, 1);
        let mut times = Vec::new();
        for i in 0..n {
            let t = Instant::now();
            timer.begin(i);
            let b = batch(&mut timer)?;
            // Past warm-up values so that every parameter group moves.
            let v = sched.at(sched.last_layer_frozen_iters + first + i);
            train_step(&mut arch, &mut o, &b, &v, &single, &mut timer)?;
            timer.end();
            if i == 1 {
                timer.take();
            }
            sync(device);
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        Ok((times, timer.take()))
    };
    let premade = {
        let mut loader = build_loader(&c, ds.clone(), (0, 1), device)?;
        let mut it = loader.epoch(0, 0)?;
        let mut b = it.next().context("the loader ended")??;
        let sb = batch_tensors(&mut b, g, l, nl, device)?;
        // the tensors are the batch's normalised copies; wait until the upload has read the
        // loader's host memory, which goes away with the loader here
        sync(device);
        sb
    };
    let (premade_times, premade_breakdown) = timed_steps(0, &mut |_| Ok(premade.shallow_clone()))?;
    drop(premade);
    let mut loader = build_loader(&c, ds, (0, 1), device)?;
    let mut it = loader.epoch(0, 0)?;
    let (step_times, fed_breakdown) = timed_steps(n, &mut |timer| {
        let mut b = it.next().context("the loader ended")??;
        timer.lap(Phase::DataWait);
        let sb = batch_tensors(&mut b, g, l, nl, device)?;
        timer.lap(Phase::HostToDevice);
        Ok(sb)
    })?;
    drop(it);
    let data_ips = (data_batches * batch) as f64 / data_seconds;
    let step_ips = batch as f64 / median(&step_times);
    let premade_ips = batch as f64 / median(&premade_times);
    let crops = 2 + nl;
    println!(
        "{} ({}x{} ViT, patch {}), batch {batch}, {crops} crops ({g} + {nl} x {l} px), {device:?}, {}{}, {} timed iterations, medians:",
        c.student.arch,
        mac.student.depth,
        mac.student.embed_dim,
        mac.student.patch_size,
        o.precision,
        if o.scaler.is_some() {
            " + loss scaler"
        } else {
            ""
        },
        a.iterations
    );
    println!("| what | images/s | crops/s |");
    println!("|---|---:|---:|");
    println!(
        "| data pipeline alone | {data_ips:.1} | {:.0} |",
        data_ips * crops as f64
    );
    println!(
        "| whole training step, one pre-made batch | {premade_ips:.1} | {:.0} |",
        premade_ips * crops as f64
    );
    println!(
        "| whole training step, fed by the pipeline | {step_ips:.1} | {:.0} |",
        step_ips * crops as f64
    );
    println!(
        "the pipeline delivers {:.1}x what the step consumes; the step fed by it runs at {:.3}x the step on a pre-made batch",
        data_ips / step_ips,
        step_ips / premade_ips
    );
    println!("where the step's time goes (ms per step, medians' runs; mean over the timed steps):");
    println!("| phase | pre-made batch | fed by the pipeline | share (fed) |");
    println!("|---|---:|---:|---:|");
    for p in Phase::ALL {
        println!(
            "| {} | {:.2} | {:.2} | {:.1} % |",
            p.label(),
            premade_breakdown.get(p) * 1e3,
            fed_breakdown.get(p) * 1e3,
            100.0 * fed_breakdown.get(p) / fed_breakdown.total().max(1e-12)
        );
    }
    println!("the step fed by the pipeline is {}", fed_breakdown.bound());
    std::fs::create_dir_all(&a.workdir)?;
    let path = a.workdir.join("results.json");
    pipeline::atomic::write_atomic(
        &path,
        &serde_json::to_vec_pretty(&serde_json::json!({
            "config": a.config, "overrides": a.overrides, "batch": batch, "device": format!("{device:?}"),
            "precision": o.precision.name(),
            "data_images_per_s": data_ips, "step_images_per_s": step_ips,
            "premade_step_images_per_s": premade_ips, "fed_vs_premade": step_ips / premade_ips,
            "data_batches": data_batches, "data_seconds": data_seconds, "step_seconds": step_times,
            "premade_step_seconds": premade_times,
            "breakdown_premade": premade_breakdown.to_json(), "breakdown_fed": fed_breakdown.to_json(),
            "bound": fed_breakdown.bound(),
        }))?,
    )?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
