//! The pretraining loop (dinov2/train/train.py `do_train`): per iteration apply the schedules,
//! forward the multi-crop batch through student and teacher, backpropagate, clip each student
//! submodule's gradients, AdamW, EMA-update the teacher; metrics, checkpoints with exact resume,
//! and an export of the teacher backbone with the official key names.

use super::config::SslConfig;
use super::meta_arch::{LossValues, MetaArchConfig, SslBatch, SslMetaArch};
use crate::dist::{Dist, GradOverlap, registration_order};
use crate::metrics::MetricsWriter;
use crate::optim::{AdamW, apply_schedules, clip_grad_norm_by_submodule, student_param_groups};
use crate::scaler::LossScaler;
use crate::ssl::schedules::{SslScheduleParams, SslSchedules, sqrt_wrt_1024};
use crate::step_timer::{Phase, StepTimer};
use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use model::heads::DinoHeadConfig;
use model::{FfnLayer, VitConfig};
use pipeline::bad_records::{BadRecordPolicy, BadRecords};
use pipeline::dataset::open_dataset;
use pipeline::loader::{Loader, LoaderConfig, MaskConfig};
use pipeline::presets::{MultiCrop, Preset};
use pipeline::sampler::SamplerKind;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SslOutcome {
    pub iterations: u64,
    pub last: LossValues,
    pub teacher_backbone: PathBuf,
}

/// The student backbone architecture of a config.
pub fn student_config(c: &SslConfig) -> Result<VitConfig> {
    let s = &c.student;
    let mut v = match (s.embed_dim, s.depth, s.num_heads) {
        (Some(d), Some(depth), Some(h)) => VitConfig {
            embed_dim: d,
            depth,
            num_heads: h,
            ..VitConfig::arch("vit_small")?
        },
        (None, None, None) => VitConfig::arch(&s.arch)?,
        _ => bail!("student.embed_dim, student.depth and student.num_heads go together"),
    };
    v.patch_size = s.patch_size;
    // build_model: img_size = crops.global_crops_size.
    v.img_size = c.crops.global_crops_size as i64;
    v.init_values = Some(s.layerscale);
    v.drop_path_rate = s.drop_path_rate;
    v.drop_path_uniform = s.drop_path_uniform;
    v.ffn_layer = FfnLayer::parse(&s.ffn_layer)?;
    v.qkv_bias = s.qkv_bias;
    v.proj_bias = s.proj_bias;
    v.ffn_bias = s.ffn_bias;
    v.num_register_tokens = s.num_register_tokens;
    v.interpolate_antialias = s.interpolate_antialias;
    v.interpolate_offset = s.interpolate_offset;
    if s.block_chunks != 0 {
        eprintln!(
            "note: student.block_chunks {} is an FSDP wrapping detail; blocks are not chunked here",
            s.block_chunks
        );
    }
    v.validate()?;
    Ok(v)
}

pub fn meta_arch_config(c: &SslConfig) -> Result<MetaArchConfig> {
    let student = student_config(c)?;
    let head = |n, b, l, h| DinoHeadConfig {
        in_dim: student.embed_dim,
        out_dim: n,
        nlayers: l,
        hidden_dim: h,
        bottleneck_dim: b,
        mlp_bias: true,
    };
    let d = &c.dino;
    let i = &c.ibot;
    Ok(MetaArchConfig {
        dino_head: head(
            d.head_n_prototypes,
            d.head_bottleneck_dim,
            d.head_nlayers,
            d.head_hidden_dim,
        ),
        ibot_head: i.separate_head.then(|| {
            head(
                i.head_n_prototypes,
                i.head_bottleneck_dim,
                i.head_nlayers,
                i.head_hidden_dim,
            )
        }),
        dino_loss_weight: d.loss_weight,
        koleo_loss_weight: d.koleo_loss_weight,
        ibot_loss_weight: i.loss_weight,
        local_crops: c.crops.local_crops_number as usize,
        centering: c.train.centering,
        student,
    })
}

/// Schedules after the lr scaling rule (one process: world size 1).
pub fn schedules(c: &SslConfig, world: u64) -> Result<SslSchedules> {
    let lr = match c.optim.scaling_rule.as_str() {
        "sqrt_wrt_1024" => sqrt_wrt_1024(c.optim.base_lr, c.train.batch_size_per_gpu, world),
        other => bail!("optim.scaling_rule {other:?} is not supported (sqrt_wrt_1024)"),
    };
    SslSchedules::new(&SslScheduleParams {
        epochs: c.optim.epochs,
        official_epoch_length: c.train.official_epoch_length,
        lr,
        min_lr: c.optim.min_lr,
        warmup_epochs: c.optim.warmup_epochs,
        weight_decay: c.optim.weight_decay,
        weight_decay_end: c.optim.weight_decay_end,
        momentum_teacher: c.teacher.momentum_teacher,
        final_momentum_teacher: c.teacher.final_momentum_teacher,
        warmup_teacher_temp: c.teacher.warmup_teacher_temp,
        teacher_temp: c.teacher.teacher_temp,
        warmup_teacher_temp_epochs: c.teacher.warmup_teacher_temp_epochs,
        freeze_last_layer_epochs: c.optim.freeze_last_layer_epochs,
    })
}

/// A loader batch as the meta-architecture's tensors on `device`.
pub fn batch_tensors(
    b: &mut pipeline::loader::Batch,
    g: usize,
    l: usize,
    n_local: usize,
    device: Device,
) -> Result<SslBatch> {
    let n = b.len();
    let masks = b
        .masks
        .take()
        .context("the pretraining loader produced no iBOT masks")?;
    let planes = b.planes();
    let img = |plane: &[u8], count: usize, size: usize| {
        crate::batch_memory::upload(
            &plane[..count * n * size * size * 3],
            &[(count * n) as i64, size as i64, size as i64, 3],
            device,
        )
    };
    let global = model::input::normalize_uint8(&img(planes[0], 2, g), Kind::Float);
    let local = if n_local > 0 {
        model::input::normalize_uint8(&img(planes[1], n_local, l), Kind::Float)
    } else {
        Tensor::zeros([0, 3, l as i64, l as i64], (Kind::Float, device))
    };
    let m: Vec<u8> = masks.masks.iter().map(|&x| x as u8).collect();
    Ok(SslBatch {
        global,
        local,
        masks: Tensor::from_slice(&m)
            .view([(2 * n) as i64, masks.n_tokens as i64])
            .to_kind(Kind::Bool)
            .to_device(device),
        mask_indices: Tensor::from_slice(&masks.mask_indices).to_device(device),
        masks_weight: Tensor::from_slice(&masks.masks_weight).to_device(device),
    })
}

/// `auto` (the first GPU when libtorch sees one), `cpu`, `cuda`/`gpu` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" | "gpu" => Device::Cuda(0),
        o => match o.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => bail!("unknown device {o:?} (expected auto, cpu, cuda or cuda:N)"),
        },
    })
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SslState {
    iteration: u64,
    scaler: Option<LossScaler>,
    tensors: String,
    /// Bad records skipped up to `iteration` (policy `skip`).
    #[serde(default)]
    skipped_records: u64,
}

fn parse_state(bytes: &[u8]) -> Result<SslState> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Whether `bytes` read as a pretraining `checkpoints/latest.json` (for `dinov2 bench fuzz`).
pub fn check_state_file(bytes: &[u8]) -> Result<()> {
    parse_state(bytes).map(drop)
}

const STUDENT: &str = "student.";
const TEACHER: &str = "teacher.";
const OPTIM: &str = "optimizer.";
const CENTERS: &str = "loss.";

fn save(
    out: &Path,
    arch: &SslMetaArch,
    opt: &AdamW,
    names: &[String],
    st: &SslState,
) -> Result<()> {
    let mut t = Vec::new();
    for (k, v) in model::weights::state_dict(&arch.student_vs, "") {
        t.push((format!("{STUDENT}{k}"), v));
    }
    for (k, v) in model::weights::state_dict(&arch.teacher_vs, "") {
        t.push((format!("{TEACHER}{k}"), v));
    }
    for (k, v) in opt.state_tensors(names)? {
        t.push((format!("{OPTIM}{k}"), v));
    }
    t.push((
        format!("{CENTERS}dino_center"),
        arch.dino_loss.center().to_device(Device::Cpu),
    ));
    t.push((
        format!("{CENTERS}ibot_center"),
        arch.ibot_loss.center().to_device(Device::Cpu),
    ));
    if let Some((sum, n)) = arch.dino_loss.pending_center_update() {
        t.push((
            format!("{CENTERS}dino_pending.{n}"),
            sum.to_device(Device::Cpu),
        ));
    }
    if let Some((sum, n)) = arch.ibot_loss.pending_center_update() {
        t.push((
            format!("{CENTERS}ibot_pending.{n}"),
            sum.to_device(Device::Cpu),
        ));
    }
    crate::checkpoint::commit(&out.join("checkpoints"), &st.tensors, &t, st, "iter_")
}

fn restore(
    out: &Path,
    arch: &mut SslMetaArch,
    opt: &mut AdamW,
    names: &[String],
) -> Result<Option<SslState>> {
    let dir = out.join("checkpoints");
    let json = dir.join("latest.json");
    if !json.exists() {
        return Ok(None);
    }
    let st = parse_state(&std::fs::read(&json)?)
        .with_context(|| format!("{} is not a pretraining checkpoint", json.display()))?;
    let path = dir.join(&st.tensors);
    let all =
        Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut groups: BTreeMap<&str, Vec<(String, Tensor)>> = BTreeMap::new();
    for (k, v) in all {
        let (g, rest) = [STUDENT, TEACHER, OPTIM, CENTERS]
            .iter()
            .find_map(|p| k.strip_prefix(p).map(|r| (*p, r.to_string())))
            .with_context(|| format!("{}: unexpected tensor {k}", path.display()))?;
        groups.entry(g).or_default().push((rest, v));
    }
    let mut take = |g: &str| groups.remove(g).unwrap_or_default();
    let src = path.display().to_string();
    model::weights::load_state_dict(&arch.student_vs, take(STUDENT), true, &src)?;
    model::weights::load_state_dict(&arch.teacher_vs, take(TEACHER), true, &src)?;
    opt.load_state_tensors(names, &take(OPTIM))?;
    let device = arch.dino_loss.center().device();
    for (k, v) in take(CENTERS) {
        let v = v.to_device(device);
        match k.split_once('.') {
            None if k == "dino_center" => arch.dino_loss.set_center(&v),
            None if k == "ibot_center" => arch.ibot_loss.set_center(&v),
            Some(("dino_pending", n)) => arch
                .dino_loss
                .set_pending_center_update(Some((v, n.parse()?))),
            Some(("ibot_pending", n)) => arch
                .ibot_loss
                .set_pending_center_update(Some((v, n.parse()?))),
            _ => bail!("{src}: unexpected tensor {CENTERS}{k}"),
        }
    }
    Ok(Some(st))
}

/// The student's trainable parameters (in name order) with their groups, AdamW state and
/// loss scaler.
pub struct Optim {
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    pub groups: Vec<crate::optim::ParamGroup>,
    pub adamw: AdamW,
    pub scaler: Option<LossScaler>,
    /// The forward pass's autocast precision (`compute_precision`, resolved for the device).
    pub precision: model::runtime::Precision,
    pub clip_grad: f64,
    /// Gradient all-reduce overlapped with the backward pass (set by the training loop when
    /// distributed); without it `train_step` averages the gradients after the backward pass.
    pub overlap: Option<GradOverlap>,
}

impl Optim {
    /// As train.py: dinov2's parameter groups of every student submodule, AdamW with the
    /// config's betas; the precision of `compute_precision` on the model's device and, with fp16
    /// (by default: on CUDA with `compute_precision.grad_scaler`), a loss scaler with torch's
    /// GradScaler defaults (dinov2's ShardedGradScaler).
    pub fn new(arch: &SslMetaArch, c: &SslConfig) -> Result<Self> {
        let vars: BTreeMap<String, Tensor> = arch.student_vs.variables().into_iter().collect();
        let names: Vec<String> = vars.keys().cloned().collect();
        let params: Vec<Tensor> = vars.values().map(|t| t.shallow_clone()).collect();
        let groups = student_param_groups(
            &names,
            arch.config.student.depth as usize,
            false,
            c.optim.layerwise_decay,
            c.optim.patch_embed_lr_mult,
        )?;
        let mut adamw = AdamW::with_betas(&params, c.optim.adamw_beta1, c.optim.adamw_beta2, 1e-8);
        adamw.fused = c.optim.fused_adamw;
        let device = arch.dino_loss.center().device();
        let (precision, scaler) = c.compute_precision.resolve(device)?;
        Ok(Self {
            names,
            params,
            groups,
            adamw,
            scaler: scaler.then(|| LossScaler::new(65536.0, 2.0, 0.5, 2000, 1)),
            precision,
            clip_grad: c.optim.clip_grad,
            overlap: None,
        })
    }
}

/// What one iteration hands back, still on the device (reading it would wait for the step).
pub struct StepOutput {
    /// The loss terms, stacked ([`LossValues::from_terms`] reads them).
    pub terms: Tensor,
    /// Each student submodule's gradient norm before clipping (0-dim tensors).
    pub norms: Vec<(String, Tensor)>,
}

/// One iteration (train.py's loop body): forward with the teacher temperature of `v` under
/// autocast to `o.precision` (none for fp32), backward outside it (scaled with fp16),
/// gradients averaged over the ranks of `dist`, unscale, clip each student
/// submodule, AdamW with the scheduled lr and weight decay per parameter group, EMA update of
/// the teacher with the scheduled momentum. A non-finite loss is an error (nothing is updated).
///
/// One value per step comes back from the device: whether the loss (and, with a loss scaler,
/// every gradient) is finite, which decides the update as torch's GradScaler does. The loss
/// terms and norms stay on the device until the caller logs them.
pub fn train_step(
    arch: &mut SslMetaArch,
    o: &mut Optim,
    b: &SslBatch,
    v: &crate::ssl::schedules::SslScheduleValues,
    dist: &Dist,
    timer: &mut StepTimer,
) -> Result<StepOutput> {
    let reduce: Option<&dyn model::loss::AllReduce> = dist.is_distributed().then_some(dist);
    let device = b.global.device();
    let (loss, terms) = model::runtime::autocast(device, o.precision, || {
        arch.forward(b, v.teacher_temp, reduce)
    })??;
    dist.check()?;
    let scaled = match o.scaler.as_ref() {
        Some(s) => &loss * s.scale,
        None => loss.shallow_clone(),
    };
    if let Some(ov) = &o.overlap {
        ov.arm()?;
    }
    let mut grads = Tensor::f_run_backward(&[&scaled], &o.params, false, false)?;
    timer.lap(Phase::ForwardBackward);
    match &o.overlap {
        Some(ov) => ov.finish(&mut grads)?,
        None => dist.average_gradients(&grads)?,
    }
    timer.lap(Phase::AllReduce);
    let loss_bad = terms.get(0).isfinite().logical_not().to_kind(Kind::Float);
    let flags = match o.scaler.as_ref() {
        Some(s) => Tensor::stack(&[loss_bad, s.unscale_found_inf(&mut grads)?], 0),
        None => loss_bad.reshape([1]),
    };
    let flags: Vec<f32> = Vec::try_from(flags.to_device(Device::Cpu))?;
    if flags[0] != 0.0 {
        let values = LossValues::from_terms(&terms)?;
        bail!("the loss became {} ({values:?})", values.total);
    }
    let ok = match o.scaler.as_mut() {
        Some(s) => s.update(flags[1] == 0.0),
        None => true,
    };
    let mut norms = Vec::new();
    if ok {
        if o.clip_grad > 0.0 {
            norms = clip_grad_norm_by_submodule(&o.names, &mut grads, o.clip_grad)?;
        }
        let (lrs, wds) = apply_schedules(&o.groups, v.lr, v.wd, v.last_layer_lr);
        o.adamw.step(&o.params, &grads, &lrs, &wds)?;
    }
    timer.lap(Phase::Optimizer);
    arch.update_teacher(v.momentum)?;
    timer.lap(Phase::Ema);
    Ok(StepOutput { terms, norms })
}

/// The dataset `train.dataset_path` / `train.split` names.
pub fn open_train_dataset(c: &SslConfig) -> Result<Arc<dyn pipeline::Dataset>> {
    Ok(Arc::from(
        open_dataset(Path::new(&c.train.dataset_path), &c.train.split)
            .with_context(|| format!("opening train.dataset_path {}", c.train.dataset_path))?,
    ))
}

/// The pretraining loader of a config: multi-crop preset, iBOT masks, infinite sampler
/// sharded over `(rank, world)`.
pub fn build_loader(
    c: &SslConfig,
    ds: Arc<dyn pipeline::Dataset>,
    (rank, world): (usize, usize),
    device: Device,
) -> Result<Loader> {
    let (cr, aug) = (&c.crops, &c.crops.augmentation);
    aug.check()?;
    let preset = Preset::Dinov2(MultiCrop {
        global_size: cr.global_crops_size as usize,
        local_size: cr.local_crops_size as usize,
        global_scale: cr.global_crops_scale,
        local_scale: cr.local_crops_scale,
        local_crops: cr.local_crops_number as usize,
        blur_p: aug.blur_p,
        solarize_p: aug.solarize_p,
        jitter_p: aug.jitter_p,
        grayscale_p: aug.grayscale_p,
        flip_p: aug.flip_p,
        jitter: aug.jitter,
    });
    let batch = c.train.batch_size_per_gpu as usize;
    let workers = (c.train.num_workers as usize).clamp(
        1,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let storages = crate::batch_memory::storages(&preset, batch, device, 3);
    Loader::new(
        ds,
        LoaderConfig {
            preset,
            batch_size: batch,
            workers,
            seed: c.train.seed,
            sampler: SamplerKind::Infinite,
            rank,
            world,
            masks: Some(MaskConfig {
                patch_size: c.student.patch_size as usize,
                ratio: c.ibot.mask_ratio_min_max,
                probability: c.ibot.mask_sample_probability,
            }),
            keep_partial_batch: false,
            bad_records: match c.train.bad_records {
                BadRecordPolicy::Fail => BadRecords::FAIL,
                BadRecordPolicy::Skip => BadRecords::skip(c.train.max_bad_fraction),
            },
        },
        storages,
    )
}

/// Runs (or with `resume`, continues) pretraining into `out`, as one process of `dist`
/// (every rank trains on its shard of the data with gradients, centres and Sinkhorn-Knopp
/// sums reduced over the ranks; rank 0 logs, checkpoints and exports).
pub fn run(
    c: &SslConfig,
    out: &Path,
    resume: bool,
    progress: bool,
    dist: &Dist,
) -> Result<SslOutcome> {
    let main = dist.is_main();
    let device = dist.info.device_for(parse_device(&c.train.device)?);
    if c.train.dataset_path.contains(":split=") {
        bail!(
            "train.dataset_path {:?} is dinov2's dataset string; give a shard directory or class-per-folder tree (see `dinov2 convert imagenet`)",
            c.train.dataset_path
        );
    }
    ensure!(
        c.train.official_epoch_length > 0 && c.optim.epochs > 0,
        "epochs and OFFICIAL_EPOCH_LENGTH must be positive"
    );
    if main {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    tch::manual_seed(c.train.seed as i64);
    let mac = meta_arch_config(c)?;
    let mut arch = SslMetaArch::new(mac.clone(), device)?;
    if !c.student.pretrained_weights.is_empty() {
        // dinov2 loads `chkpt["model"]` with strict=False; ours: a backbone found in the file.
        let w = crate::weights_io::resolve_weights_path(Path::new(&c.student.pretrained_weights))?;
        let (choice, t) = crate::weights_io::read_backbone(&w)?;
        let t: Vec<_> = t
            .into_iter()
            .map(|(k, v)| (format!("backbone.{k}"), v))
            .collect();
        let r =
            model::weights::load_state_dict(&arch.student_vs, t, false, &w.display().to_string())?;
        arch.teacher_vs.copy(&arch.student_vs)?;
        if main {
            eprintln!(
                "student initialised from {} ({}): {}",
                w.display(),
                choice.describe(),
                r.describe(5)
            );
        }
    }
    // Every rank starts from rank 0's student and teacher.
    dist.broadcast_from_main(&crate::dist::sorted_variables(&arch.student_vs))?;
    dist.broadcast_from_main(&crate::dist::sorted_variables(&arch.teacher_vs))?;
    // Trainable student parameters in name order, their groups and the optimizer.
    let mut o = Optim::new(&arch, c)?;
    o.overlap = dist.grad_overlap(&o.params, &registration_order(&arch.student_vs, &o.params))?;
    let sched = schedules(c, dist.world() as u64)?;

    let metrics_path = out.join("metrics.jsonl");
    let mut start = 0;
    let mut skipped_records = 0u64;
    match restore(out, &mut arch, &mut o.adamw, &o.names)? {
        Some(st) if resume => {
            start = st.iteration;
            skipped_records = st.skipped_records;
            // The saved scaler goes on only where this run's precision uses one.
            if o.scaler.is_some() {
                o.scaler = st.scaler.or(o.scaler.take());
            }
            if main {
                let keep: Vec<String> = crate::metrics::read_metrics(&metrics_path)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r["iteration"].as_u64().is_none_or(|i| i <= start))
                    .map(|r| r.to_string())
                    .collect();
                pipeline::atomic::write_atomic(
                    &metrics_path,
                    (keep.join("\n") + if keep.is_empty() { "" } else { "\n" }).as_bytes(),
                )?;
                eprintln!("resuming at iteration {start}");
            }
        }
        Some(_) => bail!(
            "{} already holds a checkpoint; pass --resume to continue it or choose another output directory",
            out.display()
        ),
        None => {
            if main {
                let _ = std::fs::remove_file(&metrics_path);
            }
        }
    }
    let mut metrics = MetricsWriter::append_if(main, &metrics_path)?;

    let ds = open_train_dataset(c)?;
    if main {
        eprintln!("data: {}", ds.describe());
    }
    let mut loader = build_loader(c, ds, (dist.rank(), dist.world()), device)?;
    let cr = &c.crops;
    let batch = c.train.batch_size_per_gpu as usize;
    let total = c.optim.epochs * c.train.official_epoch_length;
    let end = c.train.max_iterations.map_or(total, |m| m.min(total));
    let ckpt_every = (c.train.saveckp_freq * c.train.official_epoch_length).max(1);
    let bar = if progress && main {
        ProgressBar::new(end).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} it [{elapsed}<{eta}] {msg}")
                .unwrap(),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_position(start);
    if main {
        eprintln!(
            "pretraining {} ({}x{} ViT, patch {}) from iteration {start} to {end} of {total}; batch {batch}{}, {} local crops, {device:?}{}",
            c.student.arch,
            mac.student.depth,
            mac.student.embed_dim,
            mac.student.patch_size,
            if dist.world() > 1 {
                format!(" per process x {} processes", dist.world())
            } else {
                String::new()
            },
            cr.local_crops_number,
            match (o.precision, o.scaler.is_some()) {
                (model::runtime::Precision::Fp32, _) => ", fp32".to_string(),
                (p, true) => format!(", {p} autocast + loss scaler"),
                (p, false) => format!(", {p} autocast"),
            }
        );
    }
    let (g, l, nl) = (
        cr.global_crops_size as usize,
        cr.local_crops_size as usize,
        cr.local_crops_number as usize,
    );
    let mut last = LossValues::default();
    let mut timer = StepTimer::new(device, c.train.log_every.max(1));
    let mut it = start;
    let mut t_log = Instant::now();
    let mut n_log = 0usize;
    let (mut step_time, mut steps_log) = (0f64, 0u64);
    let state = |it: u64, scaler: &Option<LossScaler>, skipped_records: u64| SslState {
        iteration: it,
        scaler: scaler.clone(),
        tensors: format!("iter_{it}.safetensors"),
        skipped_records,
    };
    let mut batches = loader.epoch(0, start)?;
    while it < end {
        timer.begin(it);
        let Some(b) = batches.next() else { break };
        let mut b = b?;
        timer.lap(Phase::DataWait);
        for r in &b.skipped {
            eprintln!("warning: rank {} iteration {it}: {r}", dist.rank());
        }
        skipped_records += b.skipped.len() as u64;
        let v = sched.at(it);
        // Stochastic depth draws from libtorch's generator: seeding it per iteration makes a
        // resumed run draw exactly what an uninterrupted one does.
        // Each rank draws its own (dinov2 seeds seed + rank).
        tch::manual_seed(
            (c.train.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(it as i64)
                .wrapping_add((dist.rank() as i64) << 40),
        );
        let sb = batch_tensors(&mut b, g, l, nl, device)?;
        timer.lap(Phase::HostToDevice);
        let t_step = Instant::now();
        let StepOutput { terms, norms } = train_step(&mut arch, &mut o, &sb, &v, dist, &mut timer)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e:#} at iteration {it}; the last good checkpoint in {} is intact",
                    out.join("checkpoints").display()
                )
            })?;
        step_time += t_step.elapsed().as_secs_f64();
        steps_log += 1;
        it += 1;
        n_log += b.len();
        bar.inc(1);
        timer.end();
        if it.is_multiple_of(c.train.log_every.max(1)) || it == end {
            // the loss terms of this step, read back once
            last = LossValues::from_terms(&terms)?;
            let breakdown = timer.take();
            // per iteration: the training step, and the collectives inside it
            let comm_s = dist.take_comm_time().as_secs_f64() / steps_log as f64;
            let step_s = step_time / steps_log as f64;
            (step_time, steps_log) = (0.0, 0);
            if dist.is_distributed() {
                last = last.mean_over(dist)?;
            }
            let ips = (n_log * dist.world()) as f64 / t_log.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {ips:.1} img/s",
                last.total, v.lr
            ));
            let mut r = json!({
                "kind": "pretrain", "iteration": it, "epoch": it / c.train.official_epoch_length,
                "total_loss": last.total, "dino_local_crops_loss": last.dino_local_crops_loss,
                "dino_global_crops_loss": last.dino_global_crops_loss, "koleo_loss": last.koleo_loss,
                "ibot_loss": last.ibot_loss, "teacher_entropy": last.teacher_entropy,
                "teacher_marginal_entropy": last.teacher_marginal_entropy, "lr": v.lr, "wd": v.wd, "mom": v.momentum,
                "last_layer_lr": v.last_layer_lr, "teacher_temp": v.teacher_temp,
                "images_per_s": ips, "loss_scale": o.scaler.as_ref().map(|s| s.scale),
                "skipped_steps": o.scaler.as_ref().map(|s| s.skipped),
                "skipped_records": skipped_records,
                "precision": o.precision.name(),
                "step_s": step_s, "comm_s": comm_s, "world_size": dist.world(), "backend": dist.backend(),
            });
            for (name, n) in &norms {
                r[format!("grad_norm_{name}")] = json!(n.double_value(&[]));
            }
            if let Some(fields) = r.as_object_mut() {
                fields.extend(breakdown.to_json());
                fields.insert("breakdown_steps".into(), json!(breakdown.steps));
                fields.insert("bound".into(), json!(breakdown.bound()));
            }
            metrics.log(&r)?;
            t_log = Instant::now();
            n_log = 0;
        }
        timer.lap(Phase::Logging);
        if it.is_multiple_of(ckpt_every) || it == end {
            if dist.is_distributed() {
                // A cheap guard against silent divergence: every rank holds the same weights.
                let mut all = crate::dist::sorted_variables(&arch.student_vs);
                all.extend(crate::dist::sorted_variables(&arch.teacher_vs));
                let same = dist.identical_across_ranks(&all)?;
                metrics
                    .log(&json!({"kind": "ddp_check", "iteration": it, "ranks_identical": same}))?;
                ensure!(
                    same,
                    "the student or teacher differs between ranks at iteration {it}"
                );
            }
            if main {
                save(
                    out,
                    &arch,
                    &o.adamw,
                    &o.names,
                    &state(it, &o.scaler, skipped_records),
                )?;
            }
        }
    }
    bar.finish_and_clear();
    if !main {
        return Ok(SslOutcome {
            iterations: it,
            last,
            teacher_backbone: out.join("teacher_backbone.safetensors"),
        });
    }
    // The teacher backbone with the official key names, for the probe, k-NN and PyTorch users.
    let teacher = out.join("teacher_backbone.safetensors");
    model::weights::save_safetensors(
        &model::weights::state_dict(&arch.teacher_vs, "backbone."),
        &teacher,
    )?;
    Ok(SslOutcome {
        iterations: it,
        last,
        teacher_backbone: teacher,
    })
}
