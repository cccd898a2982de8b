//! `dinov2 convert` / `dinov2 shards` end to end on a generated ImageNet-like tree with every
//! kind of bad file, checked record by record against the source files.

mod common;
use common::*;
use converters::synth::{BAD_FILES, SynthSpec, ValLayout, generate};
use pipeline::dataset::open_dataset;
use pipeline::shards::Manifest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn spec(val_layout: ValLayout) -> SynthSpec {
    SynthSpec {
        classes: 4,
        train_per_class: 6,
        val_per_class: 3,
        mean_width: 120,
        mean_height: 100,
        val_layout,
        bad_files: true,
        ..SynthSpec::default()
    }
}

fn tree(name: &str, layout: ValLayout) -> PathBuf {
    let dir = scratch(name).join("imagenet");
    generate(&dir, &spec(layout)).unwrap();
    dir
}

fn convert(root: &Path, out: &Path, format: &str, extra: &[&str]) -> serde_json::Value {
    let mut a: Vec<&std::ffi::OsStr> = args![
        "convert",
        "imagenet",
        "--root",
        root,
        "--out",
        out,
        "--format",
        format,
        "--shard-size",
        "7",
        "--json"
    ]
    .to_vec();
    a.extend(extra.iter().map(std::ffi::OsStr::new));
    serde_json::from_str(&dinov2_ok(&a)).unwrap()
}

/// label of every train/val source, from the folders and from LOC_val_solution.csv.
fn expected_labels(root: &Path, classes: &[String]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for (label, c) in classes.iter().enumerate() {
        for f in std::fs::read_dir(root.join("train").join(c)).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().to_string();
            out.insert(format!("train/{c}/{name}"), label as u32);
        }
    }
    let csv = std::fs::read_to_string(root.join("LOC_val_solution.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let (id, pred) = line.split_once(',').unwrap();
        let synset = pred.split_whitespace().next().unwrap();
        let label = classes.iter().position(|c| c == synset).unwrap() as u32;
        out.insert(format!("val/{id}.JPEG"), label);
    }
    out
}

fn check_against_source(root: &Path, out: &Path) -> Manifest {
    let m = Manifest::load(out).unwrap();
    let labels = expected_labels(root, &m.classes);
    let converted: BTreeMap<&str, &str> = BAD_FILES
        .iter()
        .filter_map(|(f, what)| what.strip_prefix("convert:").map(|k| (*f, k)))
        .collect();
    let mut seen = 0;
    for split in ["train", "val"] {
        let ds = open_dataset(out, split).unwrap();
        for i in 0..ds.len() {
            let r = ds.get(i).unwrap();
            assert!(r.key.starts_with(split), "{}", r.key);
            assert_eq!(r.label, labels[&r.key], "label of {}", r.key);
            let src = std::fs::read(root.join(&r.key)).unwrap();
            let file = r.key.rsplit('/').next().unwrap();
            let (w, h) = pipeline::image_kind::dimensions(&src).unwrap();
            assert_eq!((r.width as usize, r.height as usize), (w, h), "{}", r.key);
            let header = pipeline::image_kind::jpeg_header(&r.bytes).unwrap();
            assert_eq!(
                header.color,
                pipeline::image_kind::JpegColor::Rgb,
                "{}",
                r.key
            );
            if converted.contains_key(file) {
                assert_ne!(
                    &r.bytes[..],
                    &src[..],
                    "{} should have been converted",
                    r.key
                );
            } else {
                assert_eq!(
                    &r.bytes[..],
                    &src[..],
                    "{} should be passed through untouched",
                    r.key
                );
            }
            seen += 1;
        }
    }
    let good = 4 * 6 + 4 * 3 + converted.len();
    assert_eq!(seen, good);
    m
}

#[test]
fn imagenet_to_lmdb_and_arrow_record_by_record() {
    let root = tree("convert-both", ValLayout::Flat);
    let mut manifests = Vec::new();
    for format in ["lmdb", "arrow"] {
        let out = root.parent().unwrap().join(format);
        let summary = convert(&root, &out, format, &["--workers", "2"]);
        assert_eq!(summary["already_complete"], false);
        let m = check_against_source(&root, &out);
        let c = &m.counts;
        let skipped: BTreeMap<String, u64> = [
            ("empty file", 1),
            ("truncated or corrupt", 1),
            ("not an image", 1),
            ("unreadable", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(c.skipped, skipped);
        let converted: BTreeMap<String, u64> = [("cmyk", 1), ("grayscale", 1), ("png", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(c.converted, converted);
        assert_eq!((c.misnamed, c.ignored, c.resized), (1, 1, 0));
        assert_eq!(m.splits["train"].sources, 4 * 6 + 7);
        assert_eq!(m.splits["train"].records, 4 * 6 + 3);
        assert_eq!(m.splits["train"].shards.len(), 5); // 31 sources / 7
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let text = report.to_string();
        for (file, _) in BAD_FILES {
            assert!(text.contains(file), "report.json does not mention {file}");
        }
        // A rerun on a finished conversion does nothing.
        assert_eq!(convert(&root, &out, format, &[])["already_complete"], true);
        let info = dinov2_ok(args!["shards", "info", out]);
        assert!(
            info.contains("27 records from 31 sources in 5 shards"),
            "{info}"
        );
        let verify = dinov2_ok(args!["shards", "verify", out]);
        assert!(
            verify.contains("all shards and records are intact"),
            "{verify}"
        );
        manifests.push(m);
    }
    assert_eq!(manifests[0].counts, manifests[1].counts);
    assert_eq!(manifests[0].classes, manifests[1].classes);
}

#[test]
fn output_does_not_depend_on_the_worker_count() {
    let root = tree("convert-workers", ValLayout::Folders);
    let a = root.parent().unwrap().join("w1");
    let b = root.parent().unwrap().join("w3");
    convert(&root, &a, "lmdb", &["--workers", "1"]);
    convert(&root, &b, "lmdb", &["--workers", "3"]);
    assert_eq!(Manifest::load(&a).unwrap(), Manifest::load(&b).unwrap());
    check_against_source_folders(&root, &a);
}

fn check_against_source_folders(root: &Path, out: &Path) {
    let m = Manifest::load(out).unwrap();
    let ds = open_dataset(out, "val").unwrap();
    assert_eq!(ds.len(), 4 * 3);
    for i in 0..ds.len() {
        let r = ds.get(i).unwrap();
        let folder = r.key.split('/').nth(1).unwrap();
        assert_eq!(m.classes[r.label as usize], folder);
        assert_eq!(&r.bytes[..], &std::fs::read(root.join(&r.key)).unwrap()[..]);
    }
}

#[test]
fn devkit_ground_truth_gives_the_same_labels_as_the_csv() {
    let root = tree("convert-devkit", ValLayout::Flat);
    let csv = root.parent().unwrap().join("csv");
    let devkit = root.parent().unwrap().join("devkit");
    convert(&root, &csv, "arrow", &["--split", "val"]);
    let gt = root.join("ILSVRC2012_validation_ground_truth.txt");
    let syn = root.join("ILSVRC2012_synsets.txt");
    let mut a: Vec<&std::ffi::OsStr> = args![
        "convert", "imagenet", "--root", root, "--out", devkit, "--format", "arrow", "--split",
        "val"
    ]
    .to_vec();
    a.extend(args!["--val-ground-truth", gt, "--val-synsets", syn]);
    dinov2_ok(&a);
    let (x, y) = (
        open_dataset(&csv, "val").unwrap(),
        open_dataset(&devkit, "val").unwrap(),
    );
    assert_eq!(x.len(), 12);
    for i in 0..x.len() {
        let (p, q) = (x.get(i).unwrap(), y.get(i).unwrap());
        assert_eq!((p.key, p.label), (q.key, q.label));
    }
}

#[test]
fn on_error_fail_stops_naming_the_file_and_leaves_no_manifest() {
    let root = tree("convert-fail", ValLayout::Folders);
    let out = root.parent().unwrap().join("out");
    let o = output(dinov2().args(args![
        "convert",
        "imagenet",
        "--root",
        root,
        "--out",
        out,
        "--format",
        "lmdb",
        "--on-error",
        "fail"
    ]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--on-error fail") && err.contains(".JPEG"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("manifest.json").exists());
    assert!(std::fs::read_dir(&out).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    }));
}

#[test]
fn bad_paths_and_options_are_clear_errors() {
    let dir = scratch("convert-bad-paths");
    let o = output(dinov2().args(args![
        "convert",
        "imagenet",
        "--root",
        dir.join("nope"),
        "--out",
        dir.join("o"),
        "--format",
        "lmdb"
    ]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not look like ImageNet") && err.contains("nope"),
        "{err}"
    );

    let o = output(dinov2().args(args!["shards", "info", dir]));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a shard directory"));

    // An output directory inside the source tree would be read back as a class.
    let tree_root = dir.join("inside");
    generate(&tree_root, &spec(ValLayout::Folders)).unwrap();
    let o = output(dinov2().args(args![
        "convert",
        "folder",
        "--root",
        tree_root.join("train"),
        "--out",
        tree_root.join("train/shards"),
        "--format",
        "lmdb"
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lies inside --root"));
    assert!(
        !tree_root.join("train/shards").exists(),
        "nothing is created in the source tree"
    );

    // A flat val/ without any labels file.
    let root = dir.join("flat");
    generate(&root, &spec(ValLayout::Flat)).unwrap();
    std::fs::remove_file(root.join("LOC_val_solution.csv")).unwrap();
    let o = output(dinov2().args(args![
        "convert",
        "imagenet",
        "--root",
        root,
        "--out",
        dir.join("o2"),
        "--format",
        "arrow"
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--val-labels"));
}

/// Flips one byte inside the image data of the middle shard.
fn corrupt_middle(out: &Path) -> String {
    let m = Manifest::load(out).unwrap();
    let shard = &m.splits["train"].shards[2];
    let path = out.join(&shard.file);
    let mut bytes = std::fs::read(&path).unwrap();
    // The first record's image bytes sit well inside the file: find a JPEG start and go past it.
    let at = bytes
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .unwrap()
        + 400;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    shard.file.clone()
}

#[test]
fn corruption_is_found_and_named() {
    let root = tree("convert-corrupt", ValLayout::Folders);
    for format in ["lmdb", "arrow"] {
        let out = root.parent().unwrap().join(format);
        convert(&root, &out, format, &[]);
        let file = corrupt_middle(&out);
        let o = output(dinov2().args(args!["shards", "verify", out]));
        assert_eq!(o.status.code(), Some(1));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(&format!("{file}: checksum")), "{text}");
        assert!(text.contains(&format!("{file} record 0")), "{text}");
        let ds = open_dataset(&out, "train").unwrap();
        let errors: Vec<String> = (0..ds.len())
            .filter_map(|i| ds.get(i).err())
            .map(|e| format!("{e:#}"))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&file) && errors[0].contains("corrupt"),
            "{errors:?}"
        );
        drop(ds); // shards are memory-mapped: never truncate a file a live reader maps

        // A truncated shard is an error naming it, at open.
        let path = out.join(&file);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let err = format!("{:#}", open_dataset(&out, "train").err().unwrap());
        assert!(err.contains(&file), "{err}");
        let o = output(dinov2().args(args!["shards", "verify", out]));
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stdout).contains("truncated or replaced"));
    }
}
