//! The demo's `summary.md`: its tables, from the results (`summary.json`'s layout).

use serde_json::Value;
use trainer::summary::markdown_table;

use super::f;

pub(super) fn summary_markdown(all: &Value) -> String {
    let empty = Vec::new();
    let list = |k: &str| all[k].as_array().unwrap_or(&empty);
    let (tree, pre) = (&all["tree"], &all["pretraining"]);
    let (conversions, benches, probes) = (list("conversions"), list("data"), list("probes"));
    let n = |v: &Value, d: usize| match v.as_f64() {
        Some(x) => format!("{x:.d$}"),
        None => "–".into(),
    };
    let mut s = String::from("# dinov2 demo\n\n");
    s += &super::headline::headline(all);
    s += "\n";
    s += &format!(
        "Generated tree: {} JPEGs, {:.1} MB (ImageNet-like sizes), 10 classes.\n\n",
        tree["images"],
        f(tree, "bytes") / 1e6
    );
    s += "## Device check\n\n";
    s += &markdown_table(
        &["device", "fp32 matmul", "ms", "GFLOP/s"],
        &list("matmul")
            .iter()
            .map(|m| {
                vec![
                    m["device"].as_str().unwrap_or("?").into(),
                    format!("{0}x{0}", m["size"]),
                    n(&m["median_ms"], 2),
                    n(&m["gflops"], 1),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Conversion\n\n";
    s += &markdown_table(
        &[
            "format",
            "images",
            "shards",
            "seconds",
            "images/s",
            "MB/s read",
        ],
        &conversions
            .iter()
            .map(|c| {
                let secs = f(c, "seconds");
                vec![
                    c["format"].as_str().unwrap_or("?").into(),
                    c["images"].to_string(),
                    c["shards"].to_string(),
                    format!("{secs:.2}"),
                    format!("{:.0}", f(c, "images") / secs),
                    format!("{:.1}", f(c, "bytes_read") / 1e6 / secs),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Data pipeline (Arrow shards)\n\n";
    s += &markdown_table(
        &[
            "preset",
            "workers",
            "batch",
            "images/s",
            "crops/s",
            "MB/s",
            "CPU use",
            "read ms",
            "decode ms",
            "augment ms",
        ],
        &benches
            .iter()
            .map(|b| {
                vec![
                    b["preset"].as_str().unwrap_or("?").into(),
                    b["workers"].to_string(),
                    b["batch"].to_string(),
                    n(&b["images_per_s"], 1),
                    n(&b["crops_per_s"], 0),
                    n(&b["mb_per_s"], 1),
                    n(&b["cpu_utilisation"], 2),
                    n(&b["stages"]["read_ms"], 3),
                    n(&b["stages"]["decode_ms"], 2),
                    n(&b["stages"]["augment_ms"], 2),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Pretraining (tiny ViT, 4 blocks of width 64, patch 8; 2x32 + 2x16 px crops)\n\n";
    s += &markdown_table(
        &[
            "iterations",
            "first loss",
            "last loss",
            "teacher entropy / image",
            "batch-marginal entropy",
            "images/s",
        ],
        &[vec![
            pre["iterations"].to_string(),
            n(&pre["first_loss"], 3),
            n(&pre["last_loss"], 3),
            n(&pre["teacher_entropy"], 3),
            n(&pre["teacher_marginal_entropy"], 3),
            n(&pre["images_per_s"], 1),
        ]],
    );
    s += "\n## Linear probe and k-NN (val split)\n\n";
    s += &markdown_table(
        &["backbone", "linear top-1 (best)", "k-NN k=10", "k-NN k=20"],
        &probes
            .iter()
            .map(|p| {
                let knn = |k: u64| {
                    p["knn"]
                        .as_array()
                        .and_then(|v| v.iter().find(|r| r["k"].as_u64() == Some(k)))
                        .map_or("–".to_string(), |r| {
                            format!("{:.1} %", 100.0 * f(r, "top1"))
                        })
                };
                vec![
                    p["backbone"].as_str().unwrap_or("?").into(),
                    format!("{:.1} %", 100.0 * f(p, "best_top1")),
                    knn(10),
                    knn(20),
                ]
            })
            .collect::<Vec<_>>(),
    );
    s += "\n## Stage times\n\n";
    let mut rows = vec![vec!["tree".to_string(), n(&tree["stage_seconds"], 1)]];
    for c in conversions {
        rows.push(vec![
            format!("convert {}", c["format"].as_str().unwrap_or("?")),
            n(&c["stage_seconds"], 1),
        ]);
    }
    let baselines = &all["baselines"];
    rows.push(vec![
        "baseline: python-lmdb writer".into(),
        n(&baselines["convert"]["stage_seconds"], 1),
    ]);
    for b in benches {
        rows.push(vec![
            format!("bench {}", b["preset"].as_str().unwrap_or("?")),
            n(&b["stage_seconds"], 1),
        ]);
    }
    for b in baselines["loaders"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!(
                "baseline: torchvision DataLoader, {}",
                b["preset"].as_str().unwrap_or("?")
            ),
            n(&b["stage_seconds"], 1),
        ]);
    }
    rows.push(vec!["pretraining".into(), n(&pre["stage_seconds"], 1)]);
    for p in probes {
        rows.push(vec![
            format!("probe {}", p["backbone"].as_str().unwrap_or("?")),
            n(&p["stage_seconds"], 1),
        ]);
    }
    s += &markdown_table(&["stage", "seconds"], &rows);
    s
}
