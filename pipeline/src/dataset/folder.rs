//! A class-per-subfolder image tree (torchvision `ImageFolder` layout), scanned in a fixed
//! order: classes = sorted subfolder names, files sorted by their path inside the class folder.

use super::interface::Dataset;
use crate::image_kind;
use crate::shards::record::Record;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// File extensions taken as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One image file of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the scanned root, `/`-separated.
    pub rel: String,
    pub label: u32,
}

/// The result of scanning a tree.
#[derive(Debug, Clone, Default)]
pub struct ClassTree {
    pub classes: Vec<String>,
    /// Image files, ordered by label, then path.
    pub entries: Vec<TreeEntry>,
    /// Files left out because their extension is not an image one (relative paths).
    pub ignored: Vec<String>,
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn has_image_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

fn sorted_dir(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            bail!("{}: file name is not UTF-8", entry.path().display());
        };
        if is_hidden(&name) {
            continue;
        }
        // Follow symlinks, like torchvision's ImageFolder.
        let is_dir = entry.path().is_dir();
        out.push((name, entry.path(), is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, label: u32, tree: &mut ClassTree) -> Result<()> {
    for (name, path, is_dir) in sorted_dir(dir)? {
        let rel = format!("{prefix}/{name}");
        if is_dir {
            walk(&path, &rel, label, tree)?;
        } else if has_image_extension(&name) {
            tree.entries.push(TreeEntry { rel, label });
        } else {
            tree.ignored.push(rel);
        }
    }
    Ok(())
}

/// Scans `root`. With `classes`, the subfolders must be among them (a validation split uses
/// the training split's class list) and labels index that list; without, the sorted
/// subfolder names are the classes.
pub fn scan_class_tree(root: &Path, classes: Option<&[String]>) -> Result<ClassTree> {
    let mut tree = ClassTree::default();
    let listing = sorted_dir(root)?;
    let folders: Vec<_> = listing
        .iter()
        .filter(|e| e.2)
        .map(|e| e.0.clone())
        .collect();
    for (name, _, is_dir) in &listing {
        if !is_dir {
            tree.ignored.push(name.clone());
        }
    }
    tree.classes = match classes {
        Some(list) => list.to_vec(),
        None => folders.clone(),
    };
    if tree.classes.is_empty() {
        bail!("{} has no class subfolders", root.display());
    }
    for name in &folders {
        let Some(label) = tree.classes.iter().position(|c| c == name) else {
            bail!(
                "{}: folder {name:?} is not one of the {} known classes",
                root.display(),
                tree.classes.len()
            );
        };
        walk(&root.join(name), name, label as u32, &mut tree)?;
    }
    tree.entries
        .sort_by(|a, b| (a.label, &a.rel).cmp(&(b.label, &b.rel)));
    Ok(tree)
}

/// Images read straight from a class-per-subfolder tree.
pub struct FolderDataset {
    root: PathBuf,
    tree: ClassTree,
}

impl FolderDataset {
    pub fn open(root: &Path) -> Result<Self> {
        let tree = scan_class_tree(root, None)
            .with_context(|| format!("opening image folder {}", root.display()))?;
        Ok(Self {
            root: root.to_path_buf(),
            tree,
        })
    }

    pub fn entries(&self) -> &[TreeEntry] {
        &self.tree.entries
    }
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.tree.entries.len()
    }

    fn get(&self, index: usize) -> Result<Record> {
        let entry = self.tree.entries.get(index).with_context(|| {
            format!(
                "record {index} is out of range: {} has {}",
                self.root.display(),
                self.len()
            )
        })?;
        let path = self.root.join(&entry.rel);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (w, h) = image_kind::dimensions(&bytes).with_context(|| path.display().to_string())?;
        Ok(Record {
            key: entry.rel.clone(),
            label: entry.label,
            width: w as u32,
            height: h as u32,
            bytes: bytes.into(),
        })
    }

    fn classes(&self) -> &[String] {
        &self.tree.classes
    }

    fn describe(&self) -> String {
        format!(
            "image folder {} ({} classes, {} images)",
            self.root.display(),
            self.tree.classes.len(),
            self.len()
        )
    }
}
