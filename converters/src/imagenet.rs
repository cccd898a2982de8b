//! The ImageNet (ILSVRC2012) layouts: `train/<synset>/*.JPEG`, and `val/` either in synset
//! subfolders or flat with a labels file (`LOC_val_solution.csv`, or the devkit's
//! `ILSVRC2012_validation_ground_truth.txt` with a synset list in ILSVRC2012_ID order).
//! The Kaggle layout (`ILSVRC/Data/CLS-LOC/{train,val}`) is found as well.

use crate::source::{Ignored, SourceEntry, SourcePlan, SplitSource, add_class_tree};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Which splits to convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    All,
}

/// Where the labels of a flat `val/` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValLabels {
    /// `ImageId,PredictionString` rows; the first token of PredictionString is the synset.
    Csv(PathBuf),
    /// One ILSVRC2012_ID (1-based) per line for `ILSVRC2012_val_%08d.JPEG`, and the synsets in
    /// ILSVRC2012_ID order (first token of each line).
    Devkit {
        ground_truth: PathBuf,
        synsets: PathBuf,
    },
}

/// The directory holding `train/` and `val/`.
fn base_dir(root: &Path) -> Result<PathBuf> {
    for cand in [root.to_path_buf(), root.join("ILSVRC/Data/CLS-LOC")] {
        if cand.join("train").is_dir() || cand.join("val").is_dir() {
            return Ok(cand);
        }
    }
    bail!(
        "{} does not look like ImageNet: no train/ or val/ (nor ILSVRC/Data/CLS-LOC/{{train,val}})",
        root.display()
    )
}

fn has_subdirs(dir: &Path) -> Result<bool> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Plans an ImageNet conversion. Record keys are relative to `root`.
pub fn plan_imagenet(
    root: &Path,
    split: Split,
    val_labels: Option<ValLabels>,
) -> Result<SourcePlan> {
    let base = base_dir(root)?;
    let rel_base = base
        .strip_prefix(root)
        .unwrap_or(Path::new(""))
        .to_string_lossy()
        .to_string();
    let sub = |d: &str| {
        if rel_base.is_empty() {
            d.to_string()
        } else {
            format!("{rel_base}/{d}")
        }
    };
    let mut plan = SourcePlan {
        root: root.to_path_buf(),
        classes: Vec::new(),
        splits: Vec::new(),
        ignored: Vec::new(),
    };
    let want_train = matches!(split, Split::Train | Split::All);
    let want_val = matches!(split, Split::Val | Split::All);
    let val_dir = base.join("val");
    let val_labels = val_labels.or_else(|| {
        [
            root.join("LOC_val_solution.csv"),
            base.join("LOC_val_solution.csv"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .map(ValLabels::Csv)
    });
    let flat_val = want_val && val_dir.is_dir() && !has_subdirs(&val_dir)?;

    // The class list: train's folders when there is a train/, else val's folders or labels.
    if base.join("train").is_dir() {
        let classes = scan_classes(&base.join("train"))?;
        plan.classes = classes;
    }
    if want_train {
        if !base.join("train").is_dir() {
            bail!("{} has no train/ directory", base.display());
        }
        let classes = plan.classes.clone();
        add_class_tree(&mut plan, &sub("train"), "train", Some(&classes))?;
    }
    if want_val {
        if !val_dir.is_dir() {
            bail!("{} has no val/ directory", base.display());
        }
        if flat_val {
            let labels = val_labels.with_context(|| {
                format!(
                    "{} is flat (no class subfolders) and no labels file was found: pass \
                     --val-labels LOC_val_solution.csv, or --val-ground-truth and --val-synsets",
                    val_dir.display()
                )
            })?;
            let by_file = read_val_labels(&labels)?;
            if plan.classes.is_empty() {
                let set: BTreeSet<&String> = by_file.values().collect();
                plan.classes = set.into_iter().cloned().collect();
            }
            add_flat_val(&mut plan, &val_dir, &sub("val"), &by_file)?;
        } else {
            if plan.classes.is_empty() {
                plan.classes = scan_classes(&val_dir)?;
            }
            let classes = plan.classes.clone();
            add_class_tree(&mut plan, &sub("val"), "val", Some(&classes))?;
        }
    }
    Ok(plan)
}

fn scan_classes(dir: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() && !name.starts_with('.') {
            classes.push(name);
        }
    }
    classes.sort();
    if classes.is_empty() {
        bail!("{} has no class subfolders", dir.display());
    }
    Ok(classes)
}

/// File stem (`ILSVRC2012_val_00000001`) -> synset.
fn read_val_labels(labels: &ValLabels) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    match labels {
        ValLabels::Csv(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading val labels {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || (i == 0 && line.starts_with("ImageId")) {
                    continue;
                }
                let parse = || -> Option<(String, String)> {
                    let (id, pred) = line.split_once(',')?;
                    let synset = pred.split_whitespace().next()?;
                    Some((id.trim().to_string(), synset.to_string()))
                };
                let (id, synset) = parse().with_context(|| {
                    format!(
                        "{}:{}: expected `ImageId,synset ...`, got {line:?}",
                        path.display(),
                        i + 1
                    )
                })?;
                out.insert(id, synset);
            }
        }
        ValLabels::Devkit {
            ground_truth,
            synsets,
        } => {
            let syn_text = std::fs::read_to_string(synsets)
                .with_context(|| format!("reading synset list {}", synsets.display()))?;
            let synsets_list: Vec<&str> = syn_text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            let gt = std::fs::read_to_string(ground_truth)
                .with_context(|| format!("reading {}", ground_truth.display()))?;
            for (i, line) in gt.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let id: usize = line.parse().ok().filter(|&id| id >= 1 && id <= synsets_list.len()).with_context(|| {
                    format!(
                        "{}:{}: expected an ILSVRC2012_ID between 1 and {} (the synset list's length), got {line:?}",
                        ground_truth.display(),
                        i + 1,
                        synsets_list.len()
                    )
                })?;
                out.insert(
                    format!("ILSVRC2012_val_{:08}", i + 1),
                    synsets_list[id - 1].to_string(),
                );
            }
        }
    }
    if out.is_empty() {
        bail!("the val labels file holds no labels");
    }
    Ok(out)
}

fn add_flat_val(
    plan: &mut SourcePlan,
    dir: &Path,
    rel: &str,
    by_file: &HashMap<String, String>,
) -> Result<()> {
    let index: HashMap<&str, u32> = plan
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut entries = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names.into_iter().filter(|n| !n.starts_with('.')) {
        let key = format!("{rel}/{name}");
        let is_image = name.rsplit_once('.').is_some_and(|(_, e)| {
            pipeline::dataset::IMAGE_EXTENSIONS
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        });
        if !is_image {
            plan.ignored.push(Ignored {
                key,
                reason: "not an image extension (jpg, jpeg, png)".into(),
            });
            continue;
        }
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        match by_file.get(stem) {
            None => plan.ignored.push(Ignored {
                key,
                reason: "no label in the val labels file".into(),
            }),
            Some(synset) => {
                let label = *index.get(synset.as_str()).with_context(|| {
                    format!(
                        "val label of {name} is {synset}, which is not one of the {} classes",
                        plan.classes.len()
                    )
                })?;
                entries.push(SourceEntry { key, label });
            }
        }
    }
    entries.sort_by(|a, b| (a.label, &a.key).cmp(&(b.label, &b.key)));
    plan.splits.push(SplitSource {
        name: "val".into(),
        entries,
    });
    Ok(())
}
