//! `SSLMetaArch` (dinov2/train/ssl_meta_arch.py): a student (backbone, DINO head, optional
//! separate iBOT head) and an EMA teacher of the same structure, and one training
//! iteration's losses (`forward_backward`): DINO on the CLS tokens of the local and global
//! crops against the crop-swapped teacher, iBOT on the masked patch tokens, KoLeo on the
//! student's global CLS tokens.

use anyhow::{Result, ensure};
use model::heads::{DinoHead, DinoHeadConfig};
use model::loss::{AllReduce, DinoLoss, IbotPatchLoss, KoLeoLoss};
use model::{DinoVisionTransformer, VitConfig};
use tch::{Device, Kind, Tensor, nn};

/// Teacher-output normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centering {
    Centering,
    SinkhornKnopp,
}

/// The parts of the dinov2 config the meta-architecture reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaArchConfig {
    pub student: VitConfig,
    pub dino_head: DinoHeadConfig,
    /// `Some` for `ibot.separate_head: true`.
    pub ibot_head: Option<DinoHeadConfig>,
    pub dino_loss_weight: f64,
    pub koleo_loss_weight: f64,
    pub ibot_loss_weight: f64,
    pub local_crops: usize,
    pub centering: Centering,
}

/// One of student / teacher.
#[derive(Debug)]
pub struct Branch {
    pub backbone: DinoVisionTransformer,
    pub dino_head: DinoHead,
    pub ibot_head: Option<DinoHead>,
}

impl Branch {
    fn new(root: &nn::Path, c: &MetaArchConfig, backbone: &VitConfig) -> Result<Self> {
        Ok(Self {
            backbone: DinoVisionTransformer::new(root / "backbone", backbone)?,
            dino_head: DinoHead::new(root / "dino_head", &c.dino_head),
            ibot_head: c
                .ibot_head
                .as_ref()
                .map(|h| DinoHead::new(root / "ibot_head", h)),
        })
    }
}

/// A collated multi-crop batch on the device (see pipeline::collate): images normalised.
pub struct SslBatch {
    /// `[2B, 3, S, S]`, crop-major (all samples' crop 1, then crop 2).
    pub global: Tensor,
    /// `[nB, 3, s, s]`, crop-major.
    pub local: Tensor,
    /// bool `[2B, N]`.
    pub masks: Tensor,
    /// int64 `[M]`, flat indices into `[2B * N]`.
    pub mask_indices: Tensor,
    /// f32 `[M]`.
    pub masks_weight: Tensor,
}

impl SslBatch {
    /// The same tensors (shared storage), e.g. to run one batch through several steps.
    pub fn shallow_clone(&self) -> Self {
        Self {
            global: self.global.shallow_clone(),
            local: self.local.shallow_clone(),
            masks: self.masks.shallow_clone(),
            mask_indices: self.mask_indices.shallow_clone(),
            masks_weight: self.masks_weight.shallow_clone(),
        }
    }
}

/// The loss terms of one iteration (as the reference logs them: KoLeo and iBOT halved).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LossValues {
    pub total: f64,
    pub dino_local_crops_loss: f64,
    pub dino_global_crops_loss: f64,
    pub koleo_loss: f64,
    pub ibot_loss: f64,
    /// Mean entropy (nats) of the teacher's DINO targets, per image; `ln K` is uniform.
    pub teacher_entropy: f64,
    /// Entropy of the batch-mean teacher target: near 0 when every image maps to the same
    /// prototype (collapse), near `ln K` when prototypes are used evenly.
    pub teacher_marginal_entropy: f64,
}

impl LossValues {
    /// The terms of [`SslMetaArch::forward`]'s stacked tensor, read back in one copy.
    pub fn from_terms(terms: &Tensor) -> Result<Self> {
        let v: Vec<f64> = Vec::try_from(terms.to_device(Device::Cpu).to_kind(Kind::Double))?;
        Self::from_slice(&v)
    }

    /// Every term averaged over the ranks (what dinov2 logs).
    pub fn mean_over(&self, dist: &crate::dist::Dist) -> Result<Self> {
        Self::from_slice(&dist.mean_scalars(&self.to_vec())?)
    }

    /// The terms in field order (the order of [`SslMetaArch::forward`]'s stacked tensor).
    pub fn to_vec(&self) -> Vec<f64> {
        vec![
            self.total,
            self.dino_local_crops_loss,
            self.dino_global_crops_loss,
            self.koleo_loss,
            self.ibot_loss,
            self.teacher_entropy,
            self.teacher_marginal_entropy,
        ]
    }

    fn from_slice(v: &[f64]) -> Result<Self> {
        ensure!(v.len() == 7, "{} loss terms, expected 7", v.len());
        Ok(Self {
            total: v[0],
            dino_local_crops_loss: v[1],
            dino_global_crops_loss: v[2],
            koleo_loss: v[3],
            ibot_loss: v[4],
            teacher_entropy: v[5],
            teacher_marginal_entropy: v[6],
        })
    }
}

pub struct SslMetaArch {
    pub config: MetaArchConfig,
    pub student_vs: nn::VarStore,
    pub teacher_vs: nn::VarStore,
    pub student: Branch,
    pub teacher: Branch,
    pub dino_loss: DinoLoss,
    pub ibot_loss: IbotPatchLoss,
    pub koleo_loss: KoLeoLoss,
    /// (teacher, student) parameter pairs for the EMA, in name order.
    ema: Vec<(Tensor, Tensor)>,
}

impl SslMetaArch {
    /// Student with the configured drop path; teacher without, initialised from the student.
    pub fn new(config: MetaArchConfig, device: Device) -> Result<Self> {
        let student_vs = nn::VarStore::new(device);
        let student = Branch::new(&student_vs.root(), &config, &config.student)?;
        let mut teacher_cfg = config.student.clone();
        teacher_cfg.drop_path_rate = 0.0;
        let mut teacher_vs = nn::VarStore::new(device);
        let teacher = Branch::new(&teacher_vs.root(), &config, &teacher_cfg)?;
        teacher_vs.copy(&student_vs)?;
        teacher_vs.freeze();
        let k = config.dino_head.out_dim;
        let k_ibot = config.ibot_head.as_ref().map_or(k, |h| h.out_dim);
        let students = student_vs.variables();
        let teachers: std::collections::BTreeMap<_, _> =
            teacher_vs.variables().into_iter().collect();
        let ema = teachers
            .into_iter()
            .map(|(name, t)| (t, students[&name].shallow_clone()))
            .collect();
        Ok(Self {
            dino_loss: DinoLoss::new(k, device),
            ibot_loss: IbotPatchLoss::new(k_ibot, device),
            koleo_loss: KoLeoLoss,
            ema,
            config,
            student_vs,
            teacher_vs,
            student,
            teacher,
        })
    }

    fn do_ibot(&self) -> bool {
        self.config.ibot_loss_weight > 0.0
    }

    /// Teacher targets: the crop-swapped DINO targets `[2, B, K]` and the iBOT targets of the
    /// masked patches `[M, K]` (softmax-centred or Sinkhorn-Knopp), updating the centres.
    fn teacher_targets(
        &mut self,
        b: &SslBatch,
        teacher_temp: f64,
        reduce: Option<&dyn AllReduce>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let _g = tch::no_grad_guard();
        let t = self
            .teacher
            .backbone
            .forward_features(&b.global, None, false)?;
        let cls = t.cls.chunk(2, 0);
        let cls = Tensor::cat(&[&cls[1], &cls[0]], 0);
        let n_cls = cls.size()[0];
        let patches = t.patches.flatten(0, 1).index_select(0, &b.mask_indices);
        let n_masked = patches.size()[0];
        let (cls_logits, patch_logits) = if !self.do_ibot() {
            (self.teacher.dino_head.forward(&cls), None)
        } else if let Some(ibot) = &self.teacher.ibot_head {
            (
                self.teacher.dino_head.forward(&cls),
                Some(ibot.forward(&patches)),
            )
        } else {
            // One head pass over [cls; masked patches]: rows are independent, so this equals
            // the reference's zero-padded buffer of `upperbound` rows.
            let out = self
                .teacher
                .dino_head
                .forward(&Tensor::cat(&[&cls, &patches], 0));
            (
                out.narrow(0, 0, n_cls),
                Some(out.narrow(0, n_cls, n_masked)),
            )
        };
        let k = cls_logits.size()[1];
        let (dino, ibot) = match self.config.centering {
            Centering::Centering => {
                let d = self
                    .dino_loss
                    .softmax_center_teacher(&cls_logits, teacher_temp)
                    .view([2, -1, k]);
                self.dino_loss.update_center(&cls_logits, reduce);
                let i = patch_logits.map(|p| {
                    let p = p.unsqueeze(0);
                    let s = self
                        .ibot_loss
                        .softmax_center_teacher(&p, teacher_temp)
                        .squeeze_dim(0);
                    self.ibot_loss.update_center(&p, reduce);
                    s
                });
                (d, i)
            }
            Centering::SinkhornKnopp => {
                let d = self
                    .dino_loss
                    .sinkhorn_knopp_teacher(&cls_logits, teacher_temp, 3, reduce)
                    .view([2, -1, k]);
                let i = patch_logits.map(|p| {
                    self.ibot_loss
                        .sinkhorn_knopp_teacher(&p, teacher_temp, n_masked, 3, reduce)
                });
                (d, i)
            }
        };
        Ok((dino, ibot))
    }

    /// One iteration's loss (`forward_backward` without the backward): the scalar to
    /// backpropagate into the student, and the logged terms stacked in one float64 tensor on
    /// the device, in [`LossValues`] order (read them with [`LossValues::from_terms`]: nothing
    /// here waits for the device). `reduce`: the other ranks of a data-parallel run (centres
    /// and Sinkhorn-Knopp sums over all of them), `None` alone.
    pub fn forward(
        &mut self,
        b: &SslBatch,
        teacher_temp: f64,
        reduce: Option<&dyn AllReduce>,
    ) -> Result<(Tensor, Tensor)> {
        let n_local = self.config.local_crops as i64;
        let n_global = 2i64;
        ensure!(
            b.global.size()[0] % 2 == 0,
            "global crops must come in pairs"
        );
        let (teacher_dino, teacher_ibot) = self.teacher_targets(b, teacher_temp, reduce)?;
        let device = b.global.device();
        let (h, hm) = tch::no_grad(|| {
            let p = teacher_dino.flatten(0, 1).to_kind(Kind::Float);
            let ent = |q: &Tensor| {
                -(q * q.clamp_min(1e-12).log()).sum_dim_intlist(
                    [-1i64].as_slice(),
                    false,
                    Kind::Float,
                )
            };
            (
                ent(&p).mean(Kind::Float),
                ent(&p.mean_dim([0i64].as_slice(), false, Kind::Float)),
            )
        });
        let sg = self
            .student
            .backbone
            .forward_features(&b.global, Some(&b.masks), true)?;
        let sl = if n_local > 0 {
            Some(
                self.student
                    .backbone
                    .forward_features(&b.local, None, true)?,
            )
        } else {
            None
        };
        let student_patches = sg.patches.flatten(0, 1).index_select(0, &b.mask_indices);
        let n_masked = student_patches.size()[0];
        let n_g = sg.cls.size()[0];
        // One head pass over [local cls; global cls; masked patches] (rows independent).
        let mut head_in = Vec::new();
        if let Some(sl) = &sl {
            head_in.push(sl.cls.shallow_clone());
        }
        head_in.push(sg.cls.shallow_clone());
        let shared_patches = self.do_ibot() && self.student.ibot_head.is_none();
        if shared_patches {
            head_in.push(student_patches.shallow_clone());
        }
        let out = self.student.dino_head.forward(&Tensor::cat(&head_in, 0));
        let n_l_rows = sl.as_ref().map_or(0, |s| s.cls.size()[0]);
        let s_local = out.narrow(0, 0, n_l_rows);
        let s_global = out.narrow(0, n_l_rows, n_g);
        let s_patch = if !self.do_ibot() {
            None
        } else if let Some(ibot) = &self.student.ibot_head {
            Some(ibot.forward(&student_patches))
        } else {
            Some(out.narrow(0, n_l_rows + n_g, n_masked))
        };

        let terms = (n_global - 1) * n_global + (n_local * n_global).max(1);
        let terms = terms as f64;
        let teacher_list: Vec<Tensor> = teacher_dino.unbind(0);
        let mut total = Tensor::zeros([], (Kind::Float, device));
        let zero = || Tensor::zeros([], (Kind::Double, device));
        // the logged terms, kept on the device: [total, dino local, dino global, koleo, ibot]
        let mut logged = [zero(), zero(), zero(), zero()];
        let term = |t: &Tensor| t.detach().to_kind(Kind::Double);
        let c = &self.config;
        if n_local > 0 {
            let l = self
                .dino_loss
                .forward(&s_local.chunk(n_local, 0), &teacher_list)
                / terms;
            logged[0] = term(&l);
            total += l * c.dino_loss_weight;
        }
        let loss_scales = 2.0;
        if c.dino_loss_weight > 0.0 {
            let l = self
                .dino_loss
                .forward(&[s_global], &[teacher_dino.flatten(0, 1)])
                * loss_scales
                / terms;
            logged[1] = term(&l);
            total += l * c.dino_loss_weight;
            if c.koleo_loss_weight > 0.0 {
                let chunks = sg.cls.chunk(2, 0);
                let k = (self.koleo_loss.forward(&chunks[0]) + self.koleo_loss.forward(&chunks[1]))
                    * c.koleo_loss_weight;
                logged[2] = term(&k) / loss_scales;
                total += k;
            }
        }
        if let (Some(sp), Some(ti)) = (s_patch, teacher_ibot) {
            let l = self.ibot_loss.forward_masked(
                &sp,
                &ti,
                &b.masks,
                Some(n_masked),
                Some(&b.masks_weight),
            ) * loss_scales
                * (1.0 / n_global as f64);
            logged[3] = term(&l) / 2.0;
            total += l * c.ibot_loss_weight;
        }
        let [local, global, koleo, ibot] = logged;
        let stacked = Tensor::stack(
            &[
                term(&total),
                local,
                global,
                koleo,
                ibot,
                term(&h),
                term(&hm),
            ],
            0,
        );
        Ok((total, stacked))
    }

    /// `teacher = m * teacher + (1 - m) * student` over every parameter, as dinov2 does it:
    /// `_foreach_mul_(teacher, m)` then `_foreach_add_(teacher, student, alpha=1 - m)`.
    pub fn update_teacher(&mut self, m: f64) -> Result<()> {
        let (t, s): (Vec<&Tensor>, Vec<&Tensor>) = self.ema.iter().map(|(t, s)| (t, s)).unzip();
        model::foreach::ema_(&t, &s, m)
    }
}
