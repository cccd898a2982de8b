//! The opening of the demo's summary: in words and numbers, the three things the product does
//! better than what a user has today, each measured in this run side by side with the
//! baseline — conversion against the python-lmdb writer, the data pipeline against
//! torchvision's DataLoader, and pretraining against random initialisation.

use serde_json::Value;

use super::{Compute, accuracy, f};

/// `x / y` as a ratio ("9.1x"), or `None` when either is missing.
fn ratio(x: f64, y: f64) -> Option<String> {
    (x.is_finite() && y.is_finite() && y > 0.0).then(|| format!("{:.1}x", x / y))
}

/// Why a baseline has no figure: its error's first line.
fn why(b: &Value) -> String {
    b["error"]
        .as_str()
        .and_then(|e| e.lines().next())
        .unwrap_or("not run")
        .to_string()
}

/// The numbered comparisons, then where they ran.
pub(super) fn headline(all: &Value) -> String {
    let mut s = String::from("## What this run shows\n\n");
    // where the pretraining ran, as its stage recorded it (a resumed demo may have trained on
    // another machine than the one it finishes on)
    let device = serde_json::from_value::<Compute>(all["pretraining"]["compute"].clone())
        .map_or_else(|_| "an unrecorded device".to_string(), |d| d.describe());
    s += &format!(
        "Each figure was measured in this run, side by side with its baseline on the same \
         images. Training ran on {device}.\n\n"
    );
    s += &conversion(all);
    s += &pipeline(all);
    s += &pretraining(all);
    s
}

fn conversion(all: &Value) -> String {
    let lmdb = all["conversions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["format"] == "lmdb"))
        .cloned()
        .unwrap_or_default();
    let ours = f(&lmdb, "images") / f(&lmdb, "seconds");
    let base = &all["baselines"]["convert"];
    match ratio(ours, f(base, "images_per_s")) {
        Some(x) => format!(
            "1. **Conversion: {x} the usual Python script.** The JPEG tree became LMDB shards at \
             {ours:.0} images/s; the python-lmdb writer (one Python process, PIL) stored the train split at \
             {:.0} images/s. Both decode every image to keep corrupt ones out.\n",
            f(base, "images_per_s")
        ),
        None => format!(
            "1. **Conversion:** the JPEG tree became LMDB shards at {ours:.0} images/s (each \
             image decoded to keep corrupt ones out); the python-lmdb writer was not measured: {}.\n",
            why(base)
        ),
    }
}

fn pipeline(all: &Value) -> String {
    let empty = Vec::new();
    let benches = all["data"].as_array().unwrap_or(&empty);
    let bases = all["baselines"]["loaders"].as_array().unwrap_or(&empty);
    let pair = |preset: &str| {
        let ours = benches
            .iter()
            .find(|b| b["preset"] == preset)
            .cloned()
            .unwrap_or_default();
        let base = bases
            .iter()
            .find(|b| b["preset"] == preset)
            .cloned()
            .unwrap_or_default();
        (ours, base)
    };
    let (ours, base) = pair("dinov2");
    let (lt, lt_base) = pair("linear-train");
    let (r, b) = (f(&ours, "images_per_s"), f(&base, "images_per_s"));
    let setting = format!(
        "{} workers, batch {}",
        ours["workers"].as_u64().unwrap_or(0),
        ours["batch"].as_u64().unwrap_or(0)
    );
    let linear = match ratio(f(&lt, "images_per_s"), f(&lt_base, "images_per_s")) {
        Some(x) => format!(
            " For a linear probe's crops (`linear-train`): {:.0} against {:.0} images/s, {x}.",
            f(&lt, "images_per_s"),
            f(&lt_base, "images_per_s")
        ),
        None => String::new(),
    };
    match ratio(r, b) {
        Some(x) => format!(
            "2. **Data pipeline: {x} torchvision's DataLoader.** DINOv2's augmentation (2 global \
             224 px + 8 local 98 px crops, iBOT masks) ran at {r:.0} images/s ({:.0} crops/s) \
             from the Arrow shards; torchvision's DataLoader with dinov2's own \
             `DataAugmentationDINO` and collate on the JPEG files ran at {b:.0} images/s, with the \
             same {setting}.{linear}\n",
            f(&ours, "crops_per_s")
        ),
        None => format!(
            "2. **Data pipeline:** DINOv2's augmentation (2 global 224 px + 8 local 98 px crops, \
             iBOT masks) ran at {r:.0} images/s from the Arrow shards ({setting}); torchvision's \
             DataLoader was not measured: {}.\n",
            why(&base)
        ),
    }
}

fn pretraining(all: &Value) -> String {
    let empty = Vec::new();
    let probes = all["probes"].as_array().unwrap_or(&empty);
    let find = |name: &str| {
        probes
            .iter()
            .find(|p| p["backbone"] == name)
            .map(accuracy::metrics)
            .unwrap_or_default()
    };
    let (pre, rnd) = (find("pretrained"), find("random"));
    let get =
        |v: &[(String, f64)], m: &str| v.iter().find(|(k, _)| k == m).map_or(f64::NAN, |(_, x)| *x);
    let knn = pre
        .iter()
        .map(|(m, _)| m.clone())
        .rfind(|m| m.starts_with("k-NN"))
        .unwrap_or_else(|| "k-NN".into());
    let (lp, lr) = (get(&pre, "linear probe"), get(&rnd, "linear probe"));
    let (kp, kr) = (get(&pre, &knn), get(&rnd, &knn));
    let p = &all["pretraining"];
    let (h, hm) = (f(p, "teacher_entropy"), f(p, "teacher_marginal_entropy"));
    // the learning check's criterion: each image's target carries at least 0.5 nats about it
    let targets = if hm - h >= 0.5 {
        format!(
            "The teacher's targets did not collapse: {h:.2} nats per image against {hm:.2} for the \
             batch mean (both reach ln 256 = 5.55 when collapsed to uniform)."
        )
    } else {
        format!(
            "The teacher's targets collapsed: {h:.2} nats per image against {hm:.2} for the batch \
             mean (less than 0.5 nats apart)."
        )
    };
    format!(
        "3. **Pretraining: {:+.1} points over random initialisation.** A linear probe on the \
         pretrained teacher reaches {lp:.1} % top-1 on the val split, against {lr:.1} % for the \
         same ViT at random initialisation; {knn}: {kp:.1} % against {kr:.1} % ({:+.1} points). \
         The 10 classes differ only in structure (stripes, lattices, rings, shapes) under random \
         colours, lightness, position and scale, so chance is 10 % and colour is no shortcut. \
         {targets}\n",
        lp - lr,
        kp - kr,
    )
}
