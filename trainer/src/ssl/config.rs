//! The pretraining config: dinov2's own layout and keys (`dinov2/configs/ssl_default_config.yaml`,
//! every default the same), read strictly, plus a few keys this project adds (marked).

use crate::ssl::meta_arch::Centering;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

macro_rules! defaults {
    ($($f:ident: $t:ty = $v:expr;)*) => {
        $(fn $f() -> $t { $v })*
    };
}

defaults! {
    d_true: bool = true;
    d_one: f64 = 1.0;
    d_protos: i64 = 65536;
    d_bottleneck: i64 = 256;
    d_nlayers: i64 = 3;
    d_hidden: i64 = 2048;
    d_koleo: f64 = 0.1;
    d_mask_p: f64 = 0.5;
    d_mask_ratio: (f64, f64) = (0.1, 0.5);
    d_batch: u64 = 64;
    d_dataset: String = "ImageNet:split=TRAIN".into();
    d_output: PathBuf = PathBuf::from(".");
    d_saveckp: u64 = 20;
    d_workers: u64 = 10;
    d_epoch_len: u64 = 1250;
    d_centering: Centering = Centering::Centering;
    d_arch: String = "vit_large".into();
    d_patch: i64 = 16;
    d_dpr: f64 = 0.3;
    d_ls: f64 = 1e-5;
    d_ffn: String = "mlp".into();
    d_offset: f64 = 0.1;
    d_mom: f64 = 0.992;
    d_wtt: f64 = 0.04;
    d_tt: f64 = 0.07;
    d_wtt_ep: u64 = 30;
    d_epochs: u64 = 100;
    d_wd: f64 = 0.04;
    d_wd_end: f64 = 0.4;
    d_base_lr: f64 = 0.004;
    d_warmup: u64 = 10;
    d_min_lr: f64 = 1e-6;
    d_clip: f64 = 3.0;
    d_freeze: u64 = 1;
    d_rule: String = "sqrt_wrt_1024".into();
    d_pe_mult: f64 = 0.2;
    d_lwd: f64 = 0.9;
    d_b1: f64 = 0.9;
    d_b2: f64 = 0.999;
    d_gscale: (f64, f64) = (0.32, 1.0);
    d_lcrops: u64 = 8;
    d_lscale: (f64, f64) = (0.05, 0.32);
    d_gsize: u64 = 224;
    d_lsize: u64 = 96;
    d_eval_period: u64 = 12500;
    d_log_every: u64 = 10;
    d_device: String = "auto".into();
    d_split: String = "train".into();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    #[serde(rename = "MODEL", default)]
    pub model: ModelSection,
    #[serde(default)]
    pub compute_precision: ComputePrecision,
    #[serde(default)]
    pub dino: DinoSection,
    #[serde(default)]
    pub ibot: IbotSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub student: StudentSection,
    #[serde(default)]
    pub teacher: TeacherSection,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub crops: CropsSection,
    #[serde(default)]
    pub evaluation: EvaluationSection,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    #[serde(rename = "WEIGHTS", default)]
    pub weights: String,
}

/// `compute_precision`: `grad_scaler` is honoured (fp16 on CUDA: autocast + loss scaling);
/// the FSDP sharding / mixed-precision sub-sections are accepted as written and not used
/// (there is no FSDP here: whole-model data parallelism). `autocast_dtype` is ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputePrecision {
    #[serde(default = "d_true")]
    pub grad_scaler: bool,
    /// Ours: the dtype the forward pass (student and teacher, backbones and heads, on the CPU
    /// or CUDA) runs under autocast in; parameters, gradients, AdamW and the teacher EMA stay
    /// fp32, and the losses upcast to fp32 (Sinkhorn-Knopp fp64) either way.
    /// - unset (default): the reference's setting, fp16 with a loss scaler on CUDA when
    ///   `grad_scaler` is true, otherwise fp32 (always fp32 on the CPU);
    /// - `fp16`: fp16 autocast, CUDA only (an error on the CPU), with a loss scaler when
    ///   `grad_scaler` is true;
    /// - `bf16`: bf16 autocast on the CPU or CUDA; bf16 has fp32's exponent range, so no loss
    ///   scaler: `grad_scaler` is ignored;
    /// - `fp32`: no autocast, no loss scaler.
    ///
    /// Also accepted: `float16`, `half`, `bfloat16`, `float32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autocast_dtype: Option<model::runtime::Precision>,
    #[serde(default)]
    pub teacher: Option<serde_norway::Value>,
    #[serde(default)]
    pub student: Option<serde_norway::Value>,
}

impl Default for ComputePrecision {
    fn default() -> Self {
        Self {
            grad_scaler: true,
            autocast_dtype: None,
            teacher: None,
            student: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoSection {
    #[serde(default = "d_one")]
    pub loss_weight: f64,
    #[serde(default = "d_protos")]
    pub head_n_prototypes: i64,
    #[serde(default = "d_bottleneck")]
    pub head_bottleneck_dim: i64,
    #[serde(default = "d_nlayers")]
    pub head_nlayers: i64,
    #[serde(default = "d_hidden")]
    pub head_hidden_dim: i64,
    #[serde(default = "d_koleo")]
    pub koleo_loss_weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IbotSection {
    #[serde(default = "d_one")]
    pub loss_weight: f64,
    #[serde(default = "d_mask_p")]
    pub mask_sample_probability: f64,
    #[serde(default = "d_mask_ratio")]
    pub mask_ratio_min_max: (f64, f64),
    #[serde(default)]
    pub separate_head: bool,
    #[serde(default = "d_protos")]
    pub head_n_prototypes: i64,
    #[serde(default = "d_bottleneck")]
    pub head_bottleneck_dim: i64,
    #[serde(default = "d_nlayers")]
    pub head_nlayers: i64,
    #[serde(default = "d_hidden")]
    pub head_hidden_dim: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default = "d_batch")]
    pub batch_size_per_gpu: u64,
    /// A shard directory or class-per-folder tree (ours); dinov2's `ImageNet:split=TRAIN`
    /// strings are rejected with a hint.
    #[serde(default = "d_dataset")]
    pub dataset_path: String,
    #[serde(default = "d_output")]
    pub output_dir: PathBuf,
    #[serde(default = "d_saveckp")]
    pub saveckp_freq: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "d_workers")]
    pub num_workers: u64,
    #[serde(rename = "OFFICIAL_EPOCH_LENGTH", default = "d_epoch_len")]
    pub official_epoch_length: u64,
    #[serde(default = "d_true")]
    pub cache_dataset: bool,
    #[serde(default = "d_centering")]
    pub centering: Centering,
    /// Ours: split of the dataset (default `train`).
    #[serde(default = "d_split")]
    pub split: String,
    /// Ours: auto, cpu, cuda or cuda:N.
    #[serde(default = "d_device")]
    pub device: String,
    /// Ours: log every this many iterations.
    #[serde(default = "d_log_every")]
    pub log_every: u64,
    /// Ours: stop after this many iterations (smoke runs); the schedules still span `epochs`.
    #[serde(default)]
    pub max_iterations: Option<u64>,
    /// Ours: `skip` (default) or `fail` a record that cannot be read or decoded. A skipped
    /// record is logged, counted in the metrics and replaced by a deterministic substitute.
    #[serde(default = "d_bad_records")]
    pub bad_records: pipeline::bad_records::BadRecordPolicy,
    /// Ours: with `skip`, the most records may be skipped per pass over the dataset, as a
    /// fraction of it (default 0.001); one more ends the run with an error.
    #[serde(default = "d_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn d_bad_records() -> pipeline::bad_records::BadRecordPolicy {
    pipeline::bad_records::BadRecordPolicy::Skip
}

fn d_max_bad_fraction() -> f64 {
    pipeline::bad_records::DEFAULT_MAX_BAD_FRACTION
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentSection {
    #[serde(default = "d_arch")]
    pub arch: String,
    #[serde(default = "d_patch")]
    pub patch_size: i64,
    #[serde(default = "d_dpr")]
    pub drop_path_rate: f64,
    #[serde(default = "d_ls")]
    pub layerscale: f64,
    #[serde(default = "d_true")]
    pub drop_path_uniform: bool,
    #[serde(default)]
    pub pretrained_weights: String,
    #[serde(default = "d_ffn")]
    pub ffn_layer: String,
    #[serde(default)]
    pub block_chunks: u64,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default = "d_true")]
    pub proj_bias: bool,
    #[serde(default = "d_true")]
    pub ffn_bias: bool,
    #[serde(default)]
    pub num_register_tokens: i64,
    #[serde(default)]
    pub interpolate_antialias: bool,
    #[serde(default = "d_offset")]
    pub interpolate_offset: f64,
    /// Ours: a custom size instead of `arch` (embed_dim, depth, num_heads all needed).
    #[serde(default)]
    pub embed_dim: Option<i64>,
    #[serde(default)]
    pub depth: Option<i64>,
    #[serde(default)]
    pub num_heads: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSection {
    #[serde(default = "d_mom")]
    pub momentum_teacher: f64,
    #[serde(default = "d_one")]
    pub final_momentum_teacher: f64,
    #[serde(default = "d_wtt")]
    pub warmup_teacher_temp: f64,
    #[serde(default = "d_tt")]
    pub teacher_temp: f64,
    #[serde(default = "d_wtt_ep")]
    pub warmup_teacher_temp_epochs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    #[serde(default = "d_epochs")]
    pub epochs: u64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_wd_end")]
    pub weight_decay_end: f64,
    #[serde(default = "d_base_lr")]
    pub base_lr: f64,
    /// Set from `base_lr` by the scaling rule (as dinov2; a value here is overwritten).
    #[serde(default)]
    pub lr: f64,
    #[serde(default = "d_warmup")]
    pub warmup_epochs: u64,
    #[serde(default = "d_min_lr")]
    pub min_lr: f64,
    #[serde(default = "d_clip")]
    pub clip_grad: f64,
    #[serde(default = "d_freeze")]
    pub freeze_last_layer_epochs: u64,
    #[serde(default = "d_rule")]
    pub scaling_rule: String,
    #[serde(default = "d_pe_mult")]
    pub patch_embed_lr_mult: f64,
    #[serde(default = "d_lwd")]
    pub layerwise_decay: f64,
    #[serde(default = "d_b1")]
    pub adamw_beta1: f64,
    #[serde(default = "d_b2")]
    pub adamw_beta2: f64,
    /// Not a dinov2 key: `true` runs torch's fused AdamW kernel (`AdamW(fused=True)`, one pass
    /// per tensor, CPU and CUDA) instead of the multi-tensor path dinov2 gets by default
    /// (`foreach=True` on CUDA). Its rounding differs slightly from dinov2's.
    #[serde(default)]
    pub fused_adamw: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropsSection {
    #[serde(default = "d_gscale")]
    pub global_crops_scale: (f64, f64),
    #[serde(default = "d_lcrops")]
    pub local_crops_number: u64,
    #[serde(default = "d_lscale")]
    pub local_crops_scale: (f64, f64),
    #[serde(default = "d_gsize")]
    pub global_crops_size: u64,
    #[serde(default = "d_lsize")]
    pub local_crops_size: u64,
    /// Ours: the photometric augmentation of the crops (default: what dinov2's
    /// `DataAugmentationDINO` applies).
    #[serde(default)]
    pub augmentation: AugmentationSection,
}

/// Probabilities and strengths of the crops' photometric augmentation. The defaults are what
/// the reference code applies (the blur probabilities after its `1 - p` bug: never on global
/// crop 1, 0.9 on global crop 2, 0.5 on local crops); small images such as the digits of the
/// learning check need gentler settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentationSection {
    /// Gaussian blur (kernel 9, sigma U(0.1, 2)) probability of global crop 1, global crop 2
    /// and each local crop.
    pub blur_p: (f64, f64, f64),
    /// Solarization probability of global crop 2.
    pub solarize_p: f64,
    /// Colour jitter probability of every crop.
    pub jitter_p: f64,
    /// Brightness, contrast, saturation and hue strengths of the colour jitter.
    pub jitter: (f64, f64, f64, f64),
    pub grayscale_p: f64,
    pub flip_p: f64,
}

impl AugmentationSection {
    /// Probabilities in [0, 1]; jitter strengths non-negative, hue at most 0.5 (torchvision's
    /// bounds).
    pub fn check(&self) -> anyhow::Result<()> {
        let (b1, b2, bl) = self.blur_p;
        let probs = [
            ("blur_p[0]", b1),
            ("blur_p[1]", b2),
            ("blur_p[2]", bl),
            ("solarize_p", self.solarize_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
            ("flip_p", self.flip_p),
        ];
        for (key, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                anyhow::bail!("crops.augmentation.{key} = {p}: expected a probability in [0, 1]");
            }
        }
        let (b, c, s, h) = self.jitter;
        if !(b >= 0.0 && c >= 0.0 && s >= 0.0 && (0.0..=0.5).contains(&h)) {
            anyhow::bail!(
                "crops.augmentation.jitter = [{b}, {c}, {s}, {h}]: expected brightness, contrast \
                 and saturation >= 0 and hue in [0, 0.5]"
            );
        }
        Ok(())
    }
}

impl Default for AugmentationSection {
    fn default() -> Self {
        let m = pipeline::presets::MultiCrop::default();
        Self {
            blur_p: m.blur_p,
            solarize_p: m.solarize_p,
            jitter_p: m.jitter_p,
            jitter: m.jitter,
            grayscale_p: m.grayscale_p,
            flip_p: m.flip_p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSection {
    #[serde(default = "d_eval_period")]
    pub eval_period_iterations: u64,
}

macro_rules! default_from_empty {
    ($($t:ty),*) => {
        $(impl Default for $t {
            fn default() -> Self {
                crate::config::from_yaml_as("{}").expect("every field has a default")
            }
        })*
    };
}

default_from_empty!(
    DinoSection,
    IbotSection,
    TrainSection,
    StudentSection,
    TeacherSection,
    OptimSection,
    CropsSection,
    EvaluationSection
);

impl ComputePrecision {
    /// The forward pass's precision on `device` and whether a loss scaler goes with it
    /// (see [`autocast_dtype`](Self::autocast_dtype)).
    pub fn resolve(
        &self,
        device: tch::Device,
    ) -> anyhow::Result<(model::runtime::Precision, bool)> {
        use model::runtime::Precision;
        let cuda = device.is_cuda();
        Ok(match self.autocast_dtype {
            None if cuda && self.grad_scaler => (Precision::Fp16, true),
            None | Some(Precision::Fp32) => (Precision::Fp32, false),
            Some(Precision::Fp16) => {
                anyhow::ensure!(
                    cuda,
                    "compute_precision.autocast_dtype: fp16 needs a CUDA device (this run is on \
                     {device:?}); use bf16 or fp32 there"
                );
                (Precision::Fp16, self.grad_scaler)
            }
            Some(Precision::Bf16) => (Precision::Bf16, false),
        })
    }
}

impl SslConfig {
    /// Whether a YAML document is a pretraining config (dinov2's sections) rather than a
    /// probe config (PASSL's `Global`/`Model` sections).
    pub fn looks_like(doc: &serde_norway::Value) -> bool {
        ["student", "teacher", "optim", "dino", "ibot", "crops"]
            .iter()
            .any(|k| doc.get(k).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmentation_defaults_to_the_reference_and_is_checked() {
        let c: CropsSection = crate::config::from_yaml_as("{}").unwrap();
        let m = pipeline::presets::MultiCrop::default();
        assert_eq!(c.augmentation.blur_p, m.blur_p);
        assert_eq!(c.augmentation.solarize_p, m.solarize_p);
        c.augmentation.check().unwrap();

        let c: CropsSection =
            crate::config::from_yaml_as("augmentation: {blur_p: [0, 0, 0], solarize_p: 0}")
                .unwrap();
        assert_eq!(c.augmentation.blur_p, (0.0, 0.0, 0.0));
        assert_eq!(c.augmentation.jitter, m.jitter);

        let bad: CropsSection = crate::config::from_yaml_as("augmentation: {flip_p: 1.5}").unwrap();
        let e = bad.augmentation.check().unwrap_err().to_string();
        assert!(e.contains("crops.augmentation.flip_p"), "{e}");
        let bad: CropsSection =
            crate::config::from_yaml_as("augmentation: {jitter: [0.4, 0.4, 0.2, 0.7]}").unwrap();
        assert!(bad.augmentation.check().is_err());
        assert!(crate::config::from_yaml_as::<CropsSection>("augmentation: {blurp: 1}").is_err());
    }

    #[test]
    fn compute_precision_resolves_per_device() {
        use model::runtime::Precision::{Bf16, Fp16, Fp32};
        use tch::Device::{Cpu, Cuda};
        let cp = |y: &str| crate::config::from_yaml_as::<ComputePrecision>(y).unwrap();
        // The defaults: the reference's fp16 + scaler on CUDA, fp32 on the CPU.
        assert_eq!(cp("{}").resolve(Cuda(0)).unwrap(), (Fp16, true));
        assert_eq!(cp("{}").resolve(Cpu).unwrap(), (Fp32, false));
        assert_eq!(
            cp("grad_scaler: false").resolve(Cuda(0)).unwrap(),
            (Fp32, false)
        );
        // bf16 everywhere, never with a scaler.
        for y in [
            "autocast_dtype: bf16",
            "{autocast_dtype: bfloat16, grad_scaler: true}",
        ] {
            assert_eq!(cp(y).resolve(Cpu).unwrap(), (Bf16, false));
            assert_eq!(cp(y).resolve(Cuda(0)).unwrap(), (Bf16, false));
        }
        assert_eq!(
            cp("autocast_dtype: fp32").resolve(Cuda(0)).unwrap(),
            (Fp32, false)
        );
        let f16 = "{autocast_dtype: fp16, grad_scaler: false}";
        assert_eq!(cp(f16).resolve(Cuda(0)).unwrap(), (Fp16, false));
        let e = cp("autocast_dtype: fp16")
            .resolve(Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("compute_precision.autocast_dtype") && e.contains("CUDA"),
            "{e}"
        );
        let e =
            crate::config::from_yaml_as::<ComputePrecision>("autocast_dtype: int8").unwrap_err();
        assert!(
            e.path == "autocast_dtype" && e.message.contains("int8") && e.message.contains("bf16"),
            "{e:?}"
        );
        // Unset, it is not written out (resolved configs stay the reference's keys).
        let y = crate::config::to_yaml_as(&cp("{}")).unwrap();
        assert!(!y.contains("autocast_dtype"), "{y}");
    }
}
