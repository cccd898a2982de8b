//! What a config builds before training: the student's architecture, the meta-architecture's
//! config, the schedules after the lr scaling rule, the device, and the student's pretrained
//! weights.

use crate::ssl::config::SslConfig;
use crate::ssl::meta_arch::{MetaArchConfig, SslMetaArch};
use crate::ssl::schedules::{SslScheduleParams, SslSchedules, sqrt_wrt_1024};
use anyhow::{Result, bail};
use model::heads::DinoHeadConfig;
use model::{FfnLayer, VitConfig};
use std::path::Path;
use tch::Device;

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

/// Loads `student.pretrained_weights` (a backbone found in the file) into the student and
/// copies the student to the teacher; rank 0 (`main`) says what it loaded.
pub(super) fn load_pretrained_student(
    arch: &mut SslMetaArch,
    c: &SslConfig,
    main: bool,
) -> Result<()> {
    // dinov2 loads `chkpt["model"]` with strict=False; ours: a backbone found in the file.
    let w = crate::weights_io::resolve_weights_path(Path::new(&c.student.pretrained_weights))?;
    let (choice, t) = crate::weights_io::read_backbone(&w)?;
    let t: Vec<_> = t
        .into_iter()
        .map(|(k, v)| (format!("backbone.{k}"), v))
        .collect();
    let r = model::weights::load_state_dict(&arch.student_vs, t, false, &w.display().to_string())?;
    arch.teacher_vs.copy(&arch.student_vs)?;
    if main {
        eprintln!(
            "student initialised from {} ({}): {}",
            w.display(),
            choice.describe(),
            r.describe(5)
        );
    }
    Ok(())
}
