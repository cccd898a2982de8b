//! `DinoVisionTransformer`: patch embedding, class/register/mask tokens, the exact
//! positional-embedding interpolation, the blocks and the final norm, with the reference's
//! `forward_features` and `get_intermediate_layers` outputs.

use crate::config::VitConfig;
use crate::layers::{Block, PatchEmbed, layer_norm};
use anyhow::{Result, bail, ensure};
use tch::{Kind, Tensor, nn, nn::Module};

/// The dict `forward_features` returns.
#[derive(Debug)]
pub struct Features {
    /// `x_norm_clstoken`, `[B, D]`.
    pub cls: Tensor,
    /// `x_norm_regtokens`, `[B, R, D]` (R may be 0).
    pub registers: Tensor,
    /// `x_norm_patchtokens`, `[B, N, D]`.
    pub patches: Tensor,
    /// `x_prenorm`, `[B, 1 + R + N, D]`.
    pub prenorm: Tensor,
}

/// Which blocks `get_intermediate_layers` returns.
#[derive(Debug, Clone)]
pub enum Take {
    /// The last `n` blocks.
    Last(usize),
    /// These block indices.
    Indices(Vec<usize>),
}

/// One entry of `get_intermediate_layers`: patch tokens (`[B, N, D]`, or `[B, D, h, w]` when
/// reshaped) and the class token `[B, D]`.
#[derive(Debug)]
pub struct Intermediate {
    pub patches: Tensor,
    pub cls: Tensor,
}

#[derive(Debug)]
pub struct DinoVisionTransformer {
    pub config: VitConfig,
    pub patch_embed: PatchEmbed,
    pub cls_token: Tensor,
    pub pos_embed: Tensor,
    pub register_tokens: Option<Tensor>,
    pub mask_token: Tensor,
    pub blocks: Vec<Block>,
    pub norm: nn::LayerNorm,
}

impl DinoVisionTransformer {
    /// Creates the parameters under `p` (use the VarStore root for official key names) with the
    /// reference initialisation (`init_weights`).
    pub fn new(p: nn::Path, config: &VitConfig) -> Result<Self> {
        config.validate()?;
        let c = config;
        let d = c.embed_dim;
        let n_pos = c.pos_grid() * c.pos_grid();
        let patch_embed = PatchEmbed::new(&p / "patch_embed", c.in_chans, d, c.patch_size);
        let tiny = nn::Init::Randn {
            mean: 0.0,
            stdev: 1e-6,
        };
        let cls_token = p.var("cls_token", &[1, 1, d], tiny);
        let pos_embed = p.var(
            "pos_embed",
            &[1, n_pos + 1, d],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let register_tokens = (c.num_register_tokens > 0)
            .then(|| p.var("register_tokens", &[1, c.num_register_tokens, d], tiny));
        let mask_token = p.var("mask_token", &[1, d], nn::Init::Const(0.0));
        let bp = &p / "blocks";
        let blocks = c
            .block_drop_path()
            .into_iter()
            .enumerate()
            .map(|(i, r)| Block::new(&bp / i, c, r))
            .collect();
        Ok(Self {
            config: c.clone(),
            patch_embed,
            cls_token,
            pos_embed,
            register_tokens,
            mask_token,
            blocks,
            norm: layer_norm(&p / "norm", d),
        })
    }

    pub fn num_registers(&self) -> i64 {
        self.config.num_register_tokens
    }

    /// The positional embedding for an `h`x`w` input, resampled from the trained grid exactly
    /// as the reference: bicubic with explicit scale factors `(h/p + offset) / M` when the
    /// offset is non-zero, otherwise size-based (antialiased for the register models);
    /// computed in fp32 and cast to `kind`.
    pub fn interpolate_pos_encoding(&self, npatch: i64, h: i64, w: i64, kind: Kind) -> Tensor {
        let n = self.pos_embed.size()[1] - 1;
        if npatch == n && w == h {
            return self.pos_embed.to_kind(kind);
        }
        let d = self.config.embed_dim;
        let pe = self.pos_embed.to_kind(Kind::Float);
        let cls = pe.narrow(1, 0, 1);
        let m = (n as f64).sqrt() as i64;
        let patch = pe
            .narrow(1, 1, n)
            .reshape([1, m, m, d])
            .permute([0, 3, 1, 2]);
        let (h0, w0) = (h / self.config.patch_size, w / self.config.patch_size);
        let off = self.config.interpolate_offset;
        let out = if off != 0.0 {
            let (sh, sw) = ((h0 as f64 + off) / m as f64, (w0 as f64 + off) / m as f64);
            if self.config.interpolate_antialias {
                patch.internal_upsample_bicubic2d_aa([h0, w0], false, sh, sw)
            } else {
                patch.upsample_bicubic2d([h0, w0], false, sh, sw)
            }
        } else if self.config.interpolate_antialias {
            patch.internal_upsample_bicubic2d_aa([h0, w0], false, None, None)
        } else {
            patch.upsample_bicubic2d([h0, w0], false, None, None)
        };
        Tensor::cat(&[cls, out.permute([0, 2, 3, 1]).reshape([1, -1, d])], 1).to_kind(kind)
    }

    /// `prepare_tokens_with_masks`: patch embedding, mask token where `masks` (bool `[B, N]`)
    /// is set, class token, positional embedding, then the registers after the class token.
    pub fn prepare_tokens(&self, x: &Tensor, masks: Option<&Tensor>) -> Result<Tensor> {
        let size = x.size();
        let mut t = self.patch_embed.forward(x)?;
        let (b, n) = (size[0], t.size()[1]);
        if let Some(m) = masks {
            ensure!(
                m.size() == [b, n],
                "masks have shape {:?}, expected [{b}, {n}] for this input",
                m.size()
            );
            let mt = self.mask_token.to_kind(t.kind()).unsqueeze(0);
            t = mt.where_self(&m.to_kind(Kind::Bool).unsqueeze(-1), &t);
        }
        // `torch.cat` promotes, as in the reference: under autocast the patch embedding is
        // fp16/bf16 but the fp32 class token makes the token stream (the residual stream of
        // every block) fp32; a model converted to fp16/bf16 stays in its dtype.
        let cls = self.cls_token.expand([b, -1, -1], false);
        t = Tensor::cat(&[cls, t], 1);
        t = &t + self.interpolate_pos_encoding(n, size[2], size[3], t.kind());
        if let Some(reg) = &self.register_tokens {
            let reg = reg.expand([b, -1, -1], false);
            t = Tensor::cat(&[t.narrow(1, 0, 1), reg, t.narrow(1, 1, n)], 1);
        }
        Ok(t)
    }

    /// `forward_features(x, masks)`; `train` turns stochastic depth on.
    pub fn forward_features(
        &self,
        x: &Tensor,
        masks: Option<&Tensor>,
        train: bool,
    ) -> Result<Features> {
        let mut t = self.prepare_tokens(x, masks)?;
        for blk in &self.blocks {
            t = blk.forward_t(&t, train);
        }
        Ok(self.split(&t))
    }

    /// Splits the normed tokens into class, registers and patches.
    fn split(&self, prenorm: &Tensor) -> Features {
        let x = self.norm.forward(prenorm);
        let r = self.num_registers();
        let len = x.size()[1];
        Features {
            cls: x.select(1, 0),
            registers: x.narrow(1, 1, r),
            patches: x.narrow(1, 1 + r, len - 1 - r),
            prenorm: prenorm.shallow_clone(),
        }
    }

    /// `forward(x)` in eval mode: the normed class token.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_features(x, None, false)?.cls)
    }

    /// `get_intermediate_layers(x, n, reshape, return_class_token, norm)`: outputs of the
    /// chosen blocks (earliest first), through the final norm when `norm`, registers dropped.
    pub fn get_intermediate_layers(
        &self,
        x: &Tensor,
        take: &Take,
        reshape: bool,
        norm: bool,
    ) -> Result<Vec<Intermediate>> {
        let depth = self.blocks.len();
        let wanted: Vec<usize> = match take {
            Take::Last(n) => {
                ensure!(
                    *n >= 1 && *n <= depth,
                    "asked for the last {n} blocks of {depth}"
                );
                (depth - n..depth).collect()
            }
            Take::Indices(v) => {
                if let Some(bad) = v.iter().find(|i| **i >= depth) {
                    bail!("block index {bad} out of range (depth {depth})");
                }
                v.clone()
            }
        };
        let size = x.size();
        let mut t = self.prepare_tokens(x, None)?;
        let mut outs = Vec::new();
        for (i, blk) in self.blocks.iter().enumerate() {
            t = blk.forward_t(&t, false);
            if wanted.contains(&i) {
                outs.push(if norm {
                    self.norm.forward(&t)
                } else {
                    t.shallow_clone()
                });
            }
        }
        ensure!(
            outs.len() == wanted.len(),
            "only {} of {} layers returned",
            outs.len(),
            wanted.len()
        );
        let r = self.num_registers();
        let p = self.config.patch_size;
        Ok(outs
            .into_iter()
            .map(|o| {
                let len = o.size()[1];
                let mut patches = o.narrow(1, 1 + r, len - 1 - r);
                if reshape {
                    patches = patches
                        .reshape([size[0], size[2] / p, size[3] / p, -1])
                        .permute([0, 3, 1, 2])
                        .contiguous();
                }
                Intermediate {
                    patches,
                    cls: o.select(1, 0),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensor and parameter counts of the released hub models (dinov2-reference §1.1, §1.5).
    #[test]
    fn hub_architectures_have_the_released_state_dicts() {
        for (arch, reg, tensors, params) in [
            ("vit_small", false, 175, 22_056_576i64),
            ("vit_small", true, 176, 22_056_576 + 4 * 384),
            ("vit_base", false, 175, 86_580_480),
            ("vit_large", false, 343, 304_368_640),
        ] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let c = VitConfig::hub(arch, reg).unwrap();
            DinoVisionTransformer::new(vs.root(), &c).unwrap();
            let vars = vs.variables();
            let n: i64 = vars.values().map(|t| t.numel() as i64).sum();
            assert_eq!((vars.len(), n), (tensors, params), "{arch} reg={reg}");
            for key in [
                "cls_token",
                "pos_embed",
                "mask_token",
                "patch_embed.proj.weight",
                "blocks.0.attn.qkv.weight",
                "blocks.0.ls1.gamma",
                "blocks.0.mlp.fc1.weight",
                "blocks.11.ls2.gamma",
                "norm.bias",
            ] {
                assert!(vars.contains_key(key), "{arch}: {key} missing");
            }
            assert_eq!(vars["pos_embed"].size(), [1, 1370, c.embed_dim]);
            assert_eq!(vars.contains_key("register_tokens"), reg);
            // And the config inferred back from the shapes is the same architecture.
            let shapes = vars.iter().map(|(k, t)| (k.clone(), t.size())).collect();
            assert_eq!(VitConfig::infer(&shapes, Some(arch)).unwrap(), c);
        }
    }
}
