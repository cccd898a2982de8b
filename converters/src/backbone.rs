//! Finding the DINOv2 backbone inside any checkpoint PASSL or dinov2 writes: hub files (the
//! backbone alone), PASSL `.pdparams` and dinov2 linear checkpoints (backbone + head),
//! training checkpoints (student / teacher backbones and heads, optimizer state, counters),
//! our own safetensors exports. The backbone is the set of the ViT's top-level modules under
//! the prefix of a `cls_token` (`teacher` preferred over `student`); everything else is left
//! out and reported by group.

use anyhow::{Result, bail};
use std::collections::HashMap;

/// The top-level modules of `model::DinoVisionTransformer` (its `head` has no parameters).
pub const VIT_MODULES: &[&str] = &[
    "cls_token",
    "pos_embed",
    "register_tokens",
    "mask_token",
    "patch_embed",
    "blocks",
    "norm",
];

/// A group of checkpoint entries that are not the backbone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeftOut {
    /// The dotted name the entries share (`linear`, `model.student`, `optimizer`, `iteration`).
    pub group: String,
    /// Tensors in the group.
    pub tensors: usize,
    /// Entries that are not tensors: `(key, type)`.
    pub non_tensors: Vec<(String, String)>,
}

impl LeftOut {
    /// `linear (2 tensors)`, `optimizer (4 tensors, 3 non-tensor entries)`, `iteration (Int(5))`.
    pub fn describe(&self) -> String {
        if self.tensors == 0
            && let [(key, ty)] = self.non_tensors.as_slice()
            && key == &self.group
        {
            return format!("{} (non-tensor: {ty})", self.group);
        }
        let mut parts = Vec::new();
        if self.tensors > 0 {
            parts.push(plural(self.tensors, "tensor"));
        }
        if !self.non_tensors.is_empty() {
            parts.push(plural(self.non_tensors.len(), "non-tensor entry"));
        }
        format!("{} ({})", self.group, parts.join(", "))
    }
}

fn plural(n: usize, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

/// Which prefix of a checkpoint was taken as the backbone and what was left out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackboneChoice {
    /// Removed from the backbone's keys (`""`, `backbone.`, `teacher.backbone.`, ...).
    pub prefix: String,
    /// Backbone tensors kept.
    pub tensors: usize,
    /// Everything else, by group, in the file's order.
    pub left_out: Vec<LeftOut>,
}

impl BackboneChoice {
    /// One line: `backbone: 35 tensors at the top level; left out: linear (2 tensors)`.
    pub fn describe(&self) -> String {
        let at = if self.prefix.is_empty() {
            "at the top level".to_string()
        } else {
            format!("under {:?}", self.prefix)
        };
        let mut s = format!("backbone: {} {at}", plural(self.tensors, "tensor"));
        if self.left_out.is_empty() {
            s.push_str("; nothing left out");
        } else {
            let groups: Vec<String> = self.left_out.iter().map(LeftOut::describe).collect();
            s.push_str(&format!("; left out: {}", groups.join(", ")));
        }
        s
    }
}

/// `name` without `prefix` when it is a backbone key under `prefix`.
pub fn backbone_key<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    let module = rest.split('.').next()?;
    VIT_MODULES.contains(&module).then_some(rest)
}

/// The prefixes of the `cls_token`s among `names`, best first: a `teacher` backbone, then
/// one that is neither teacher nor student, then a `student`; shorter before longer.
fn candidate_prefixes<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let rank = |p: &str| {
        let has = |w: &str| p.split('.').any(|s| s == w);
        if has("teacher") {
            0
        } else if has("student") {
            2
        } else {
            1
        }
    };
    let mut prefixes: Vec<String> = names
        .filter_map(|k| k.strip_suffix("cls_token"))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .map(str::to_string)
        .collect();
    prefixes.sort_by(|a, b| (rank(a), a.len(), a).cmp(&(rank(b), b.len(), b)));
    prefixes.dedup();
    prefixes
}

/// The group a left-out key is reported under: its name up to the first part where it
/// leaves the backbone's prefix (`linear.weight` -> `linear` for the prefix `""`;
/// `model.student.backbone.x` -> `model.student` for `model.teacher.backbone.`).
fn group_of(prefix: &str, name: &str) -> String {
    let p: Vec<&str> = prefix.split('.').filter(|s| !s.is_empty()).collect();
    let parts: Vec<&str> = name.split('.').collect();
    let shared = parts.iter().zip(&p).take_while(|(a, b)| a == b).count();
    parts[..(shared + 1).min(parts.len())].join(".")
}

/// Groups the left-out tensor names and non-tensor entries, in order of first appearance.
fn left_out_groups<'a>(
    prefix: &str,
    tensors: impl Iterator<Item = &'a str>,
    skipped: &[(String, String)],
) -> Vec<LeftOut> {
    let mut groups: Vec<LeftOut> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut slot = |name: &str, groups: &mut Vec<LeftOut>| {
        let g = group_of(prefix, name);
        *index.entry(g.clone()).or_insert_with(|| {
            groups.push(LeftOut {
                group: g,
                tensors: 0,
                non_tensors: Vec::new(),
            });
            groups.len() - 1
        })
    };
    for name in tensors {
        let i = slot(name, &mut groups);
        groups[i].tensors += 1;
    }
    for (name, ty) in skipped {
        let i = slot(name, &mut groups);
        groups[i].non_tensors.push((name.clone(), ty.clone()));
    }
    groups
}

/// The backbone among `tensors` (keys without its prefix) and the report of the choice;
/// `skipped` are the checkpoint's non-tensor entries `(key, type)`, reported as left out.
/// An error when no `cls_token` is there.
pub fn split_backbone<T>(
    tensors: Vec<(String, T)>,
    skipped: &[(String, String)],
) -> Result<(BackboneChoice, Vec<(String, T)>)> {
    let Some(prefix) = candidate_prefixes(tensors.iter().map(|(k, _)| k.as_str()))
        .into_iter()
        .next()
    else {
        bail!(
            "no backbone in the checkpoint: no `cls_token` among its {} tensors",
            tensors.len()
        );
    };
    let (mut kept, mut rest) = (Vec::new(), Vec::new());
    for (k, t) in tensors {
        match backbone_key(&prefix, &k) {
            Some(r) => kept.push((r.to_string(), t)),
            None => rest.push(k),
        }
    }
    let left_out = left_out_groups(&prefix, rest.iter().map(String::as_str), skipped);
    let choice = BackboneChoice {
        prefix,
        tensors: kept.len(),
        left_out,
    };
    Ok((choice, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(keys: &[&str], skipped: &[(&str, &str)]) -> (BackboneChoice, Vec<String>) {
        let t = keys.iter().map(|k| (k.to_string(), ())).collect();
        let s: Vec<(String, String)> = skipped
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (c, kept) = split_backbone(t, &s).unwrap();
        (c, kept.into_iter().map(|(k, _)| k).collect())
    }

    #[test]
    fn a_head_next_to_the_backbone_is_left_out() {
        let (c, kept) = split(
            &[
                "cls_token",
                "blocks.0.attn.qkv.weight",
                "linear.weight",
                "linear.bias",
            ],
            &[],
        );
        assert_eq!(kept, ["cls_token", "blocks.0.attn.qkv.weight"]);
        assert_eq!(
            c.describe(),
            "backbone: 2 tensors at the top level; left out: linear (2 tensors)"
        );
    }

    #[test]
    fn the_teacher_is_preferred_and_the_rest_grouped() {
        let (c, kept) = split(
            &[
                "model.student.backbone.cls_token",
                "model.student.backbone.norm.weight",
                "model.teacher.backbone.cls_token",
                "model.teacher.backbone.norm.weight",
                "model.teacher.dino_head.last_layer.weight",
                "optimizer.state.0.exp_avg",
            ],
            &[
                ("optimizer.param_groups.0.lr", "Float(0.1)"),
                ("iteration", "Int(5)"),
            ],
        );
        assert_eq!(c.prefix, "model.teacher.backbone.");
        assert_eq!(kept, ["cls_token", "norm.weight"]);
        assert_eq!(
            c.describe(),
            "backbone: 2 tensors under \"model.teacher.backbone.\"; left out: model.student \
             (2 tensors), model.teacher.dino_head (1 tensor), optimizer (1 tensor, 1 non-tensor \
             entry), iteration (non-tensor: Int(5))"
        );
    }

    #[test]
    fn a_student_alone_is_used_and_no_cls_token_is_an_error() {
        let (c, _) = split(&["student.backbone.cls_token", "student.dino_head.w"], &[]);
        assert_eq!(c.prefix, "student.backbone.");
        assert_eq!(c.left_out[0].group, "student.dino_head");
        let e = split_backbone(vec![("linear.weight".to_string(), ())], &[]).unwrap_err();
        assert!(e.to_string().contains("no `cls_token`"), "{e}");
    }
}
