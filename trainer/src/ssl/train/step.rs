//! One training iteration: the student's optimiser state ([`Optim`]) and the step itself
//! ([`train_step`]): forward, backward, gradient reduction, clipping, AdamW and the teacher's
//! EMA.

use crate::dist::{Dist, GradOverlap};
use crate::optim::{AdamW, apply_schedules, clip_grad_norm_by_submodule, student_param_groups};
use crate::scaler::LossScaler;
use crate::ssl::config::SslConfig;
use crate::ssl::meta_arch::{LossValues, SslBatch, SslMetaArch};
use crate::step_timer::{Phase, StepTimer};
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

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
