//! State dicts: strict loading with a report of missing, unexpected and mis-shaped keys, and
//! export to safetensors with the official key names.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Tensor, nn};

/// What a load found, key by key.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadReport {
    pub loaded: usize,
    /// Variables of the model.
    pub model_tensors: usize,
    /// Variables found in the file with the right shape.
    pub matched: usize,
    /// In the model, not in the file.
    pub missing: Vec<String>,
    /// In the file, not in the model.
    pub unexpected: Vec<String>,
    /// `(key, file shape, model shape)`.
    pub mismatched: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// Keys renamed from the FSDP chunked layout (`blocks.<chunk>.<i>.` -> `blocks.<i>.`).
    pub unchunked: usize,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// A multi-line description, at most `limit` keys of each kind.
    pub fn describe(&self, limit: usize) -> String {
        let mut s = format!(
            "{} of the model's {} tensors match",
            self.matched, self.model_tensors
        );
        if self.loaded > 0 {
            s.push_str(&format!(", {} loaded", self.loaded));
        }
        let list = |s: &mut String, what: &str, keys: Vec<String>| {
            if keys.is_empty() {
                return;
            }
            s.push_str(&format!("\n{} {what}:", keys.len()));
            for k in keys.iter().take(limit) {
                s.push_str(&format!("\n  {k}"));
            }
            if keys.len() > limit {
                s.push_str(&format!("\n  ... and {} more", keys.len() - limit));
            }
        };
        list(
            &mut s,
            "missing (in the model, not in the file)",
            self.missing.clone(),
        );
        list(
            &mut s,
            "unexpected (in the file, not in the model)",
            self.unexpected.clone(),
        );
        list(
            &mut s,
            "with the wrong shape",
            self.mismatched
                .iter()
                .map(|(k, f, m)| format!("{k}: file {f:?}, model {m:?}"))
                .collect(),
        );
        s
    }

    /// What would help when the load is not clean.
    pub fn hint(&self) -> Option<String> {
        if self.is_clean() {
            return None;
        }
        if !self.mismatched.is_empty() {
            return Some(
                "hint: a shape differs, so the file holds another architecture: check --arch / \
                 --num-heads / Model.backbone (patch size, width, registers)"
                    .into(),
            );
        }
        if !self.missing.is_empty() {
            return Some(format!(
                "hint: the file lacks tensors the model needs; the backbone's keys are cls_token, \
                 pos_embed, patch_embed.*, blocks.N.*, norm.* (found automatically when no \
                 --select / --strip-prefix is given; otherwise e.g. `--select backbone` for a \
                 PASSL .pdparams, `--select teacher --strip-prefix backbone.` for a training \
                 checkpoint){}",
                if self.matched == 0 {
                    "; none of the model's keys is in the file"
                } else {
                    ""
                }
            ));
        }
        let mut groups: Vec<&str> = self
            .unexpected
            .iter()
            .map(|k| k.split('.').next().unwrap_or(k))
            .collect();
        groups.dedup();
        Some(format!(
            "hint: the unexpected tensors (under {}) look like a head or another model next to \
             the backbone: they are left out automatically when no --select / --strip-prefix is \
             given; with them, choose the backbone alone (e.g. `--select backbone` for a PASSL \
             .pdparams)",
            groups.join(", ")
        ))
    }
}

/// `blocks.<chunk>.<i>.rest` (block_chunks > 0 training checkpoints) -> `blocks.<i>.rest`.
fn unchunk(key: &str) -> Option<String> {
    let rest = key.strip_prefix("blocks.")?;
    let mut parts = rest.splitn(3, '.');
    let (a, b, tail) = (parts.next()?, parts.next()?, parts.next()?);
    (a.parse::<usize>().is_ok() && b.parse::<usize>().is_ok()).then(|| format!("blocks.{b}.{tail}"))
}

/// Copies `tensors` into the variables of `vs` (cast to each variable's dtype and device).
/// With `strict`, any missing, unexpected or mis-shaped key is an error listing them all and
/// nothing is modified; otherwise matching keys are loaded and the rest reported.
pub fn load_state_dict(
    vs: &nn::VarStore,
    tensors: Vec<(String, Tensor)>,
    strict: bool,
    source: &str,
) -> Result<LoadReport> {
    let vars = vs.variables();
    let mut report = LoadReport {
        model_tensors: vars.len(),
        ..LoadReport::default()
    };
    let mut file: HashMap<String, Tensor> = HashMap::new();
    for (k, t) in tensors {
        let key = if vars.contains_key(&k) {
            k
        } else if let Some(u) = unchunk(&k).filter(|u| vars.contains_key(u)) {
            report.unchunked += 1;
            u
        } else {
            k
        };
        file.insert(key, t);
    }
    let mut pairs = Vec::new();
    let sorted: BTreeMap<_, _> = vars.iter().collect();
    for (k, v) in sorted {
        match file.remove(k) {
            None => report.missing.push(k.clone()),
            Some(t) if t.size() != v.size() => {
                report.mismatched.push((k.clone(), t.size(), v.size()))
            }
            Some(t) => pairs.push((v.shallow_clone(), t)),
        }
    }
    report.matched = pairs.len();
    report.unexpected = file.into_keys().collect();
    report.unexpected.sort();
    if strict && !report.is_clean() {
        bail!(
            "{source} does not match the model:\n{}\n{}",
            report.describe(20),
            report.hint().unwrap_or_default()
        );
    }
    tch::no_grad(|| {
        for (mut v, t) in pairs {
            v.copy_(&t.to_kind(v.kind()).to_device(v.device()));
            report.loaded += 1;
        }
    });
    Ok(report)
}

/// Loads a safetensors file strictly into `vs`.
pub fn load_safetensors(vs: &nn::VarStore, path: &Path) -> Result<LoadReport> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading safetensors {}", path.display()))?;
    load_state_dict(vs, tensors, true, &path.display().to_string())
}

/// The variables of `vs` whose names start with `prefix`, with the prefix removed, sorted by
/// name, as contiguous CPU tensors.
pub fn state_dict(vs: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let vars: BTreeMap<_, _> = vs.variables().into_iter().collect();
    vars.into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix).map(|r| {
                (
                    r.to_string(),
                    v.detach().to_device(tch::Device::Cpu).contiguous(),
                )
            })
        })
        .collect()
}

/// Writes tensors to a safetensors file atomically (a temporary name, then rename).
pub fn save_safetensors(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if let Err(e) = Tensor::write_safetensors(tensors, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_keys_map_to_flat_ones() {
        assert_eq!(
            unchunk("blocks.1.3.attn.qkv.weight").as_deref(),
            Some("blocks.3.attn.qkv.weight")
        );
        assert_eq!(unchunk("blocks.3.attn.qkv.weight"), None);
        assert_eq!(unchunk("norm.weight"), None);
    }
}
