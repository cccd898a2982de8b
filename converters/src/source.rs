//! What a conversion reads: the source files of each split, in their fixed order.

use anyhow::Result;
use pipeline::dataset::scan_class_tree;
use std::path::{Path, PathBuf};

/// One source image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path relative to the conversion root, `/`-separated; the record key.
    pub key: String,
    pub label: u32,
}

/// The images of one split, in record order.
#[derive(Debug, Clone)]
pub struct SplitSource {
    pub name: String,
    pub entries: Vec<SourceEntry>,
}

/// A file of the tree that is not converted, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ignored {
    pub key: String,
    pub reason: String,
}

/// Everything a conversion reads.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// Record keys are relative to this directory.
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub splits: Vec<SplitSource>,
    pub ignored: Vec<Ignored>,
}

impl SourcePlan {
    pub fn path(&self, entry: &SourceEntry) -> PathBuf {
        self.root.join(&entry.key)
    }
}

/// Adds the class-per-subfolder tree at `root/dir` as split `name`; `classes` fixes the label
/// order (else the tree's sorted folders). Returns the class list used.
pub fn add_class_tree(
    plan: &mut SourcePlan,
    dir: &str,
    name: &str,
    classes: Option<&[String]>,
) -> Result<Vec<String>> {
    let tree = scan_class_tree(&plan.root.join(dir), classes)?;
    let prefix = |rel: &str| {
        if dir.is_empty() {
            rel.to_string()
        } else {
            format!("{dir}/{rel}")
        }
    };
    plan.ignored.extend(tree.ignored.iter().map(|rel| Ignored {
        key: prefix(rel),
        reason: "not an image extension (jpg, jpeg, png)".into(),
    }));
    plan.splits.push(SplitSource {
        name: name.to_string(),
        entries: tree
            .entries
            .iter()
            .map(|e| SourceEntry {
                key: prefix(&e.rel),
                label: e.label,
            })
            .collect(),
    });
    Ok(tree.classes)
}

/// A generic class-per-subfolder tree as one split.
pub fn plan_folder(root: &Path, split_name: &str) -> Result<SourcePlan> {
    let mut plan = SourcePlan {
        root: root.to_path_buf(),
        classes: Vec::new(),
        splits: Vec::new(),
        ignored: Vec::new(),
    };
    plan.classes = add_class_tree(&mut plan, "", split_name, None)?;
    Ok(plan)
}
