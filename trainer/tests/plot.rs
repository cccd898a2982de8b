//! Charts and run reports end to end: PNGs decode at the expected size, summary.md carries the
//! best figures, and bad input is a clear error.

use std::path::{Path, PathBuf};
use trainer::plot::{self, Panel, Series};
use trainer::summary::{self, run_report};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinov2-plot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decode(path: &Path) -> image::RgbImage {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap()
        .to_rgb8()
}

/// Files in `dir` other than the expected ones (temporary files left behind).
fn leftovers(dir: &Path, expected: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

/// Pixels that are neither white nor grey: coloured series were drawn.
fn coloured_pixels(img: &image::RgbImage) -> usize {
    img.pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 60
        })
        .count()
}

#[test]
fn three_panels_render_to_a_png_of_the_grid_size() {
    let dir = temp_dir("grid");
    let path = dir.join("chart.png");
    let line = |name: &str, f: fn(f64) -> f64| Series {
        name: name.into(),
        points: (0..200).map(|i| (i as f64, f(i as f64))).collect(),
    };
    let panels = [
        Panel {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                line("train", |x| 5.0 * (-x / 50.0).exp() + 0.1),
                Series {
                    name: "with gaps".into(),
                    points: vec![
                        (0.0, 1.0),
                        (50.0, f64::NAN),
                        (100.0, f64::INFINITY),
                        (150.0, 2.0),
                    ],
                },
                Series {
                    name: "empty".into(),
                    points: vec![],
                },
            ],
            log_y: true,
        },
        Panel {
            title: "single point".into(),
            x_label: "epoch".into(),
            y_label: "top-1".into(),
            series: vec![Series {
                name: "top-1".into(),
                points: vec![(1.0, 0.5)],
            }],
            log_y: false,
        },
        Panel {
            title: "nothing".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "all NaN".into(),
                points: vec![(f64::NAN, 1.0)],
            }],
            log_y: false,
        },
    ];
    plot::render(&path, "three panels", &panels).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), plot::canvas_size(3));
    assert_eq!(img.dimensions(), (1200, 40 + 800));
    assert!(coloured_pixels(&img) > 500, "no series drawn");
    assert!(leftovers(&dir, &["chart.png"]).is_empty());

    let single = dir.join("single.png");
    plot::render(&single, "one", &panels[1..2]).unwrap();
    assert_eq!(decode(&single).dimensions(), (600, 440));

    let err = plot::render(&dir.join("none.png"), "none", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("none.png"), "{err:#}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bar_chart_renders() {
    let dir = temp_dir("bars");
    let path = dir.join("throughput.png");
    let bars = [
        ("decode".to_string(), 1520.0),
        ("augment".to_string(), 830.5),
        ("collate".to_string(), 12000.0),
        ("bad".to_string(), f64::NAN),
    ];
    plot::bar_chart(&path, "throughput per stage", "images/s", &bars).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (600, 440));
    assert!(coloured_pixels(&img) > 1000, "no bars drawn");
    plot::bar_chart(&dir.join("empty.png"), "empty", "images/s", &[]).unwrap();
    assert!(leftovers(&dir, &["throughput.png", "empty.png"]).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_report_summarises_metrics_with_a_torn_tail_and_unknown_kinds() {
    let dir = temp_dir("report");
    let mut lines = Vec::new();
    for epoch in 1..=3u64 {
        for s in 1..=10u64 {
            let step = (epoch - 1) * 10 + s;
            lines.push(format!(
                r#"{{"kind":"train","epoch":{epoch},"step":{step},"loss":{},"lr":{},"images_per_s":100.0}}"#,
                3.0 / step as f64,
                0.01 * step as f64 / 30.0
            ));
        }
        let top1 = [0.41, 0.62, 0.58][epoch as usize - 1];
        lines.push(format!(
            r#"{{"kind":"eval","epoch":{epoch},"step":{},"top1":{top1},"top5":{},"loss":1.2}}"#,
            epoch * 10,
            top1 + 0.3
        ));
    }
    lines.push(r#"{"kind":"checkpoint","path":"ckpt.safetensors"}"#.into());
    lines.push(r#"{"no_kind":true}"#.into());
    lines.push(r#"{"kind":"eval","epoch":4}"#.into()); // missing fields
    lines.push(r#"{"kind":"knn","k":10,"top1":0.55,"top5":0.8}"#.into());
    lines.push(r#"{"kind":"knn","k":20,"top1":0.57,"top5":0.81}"#.into());
    lines.push(r#"{"kind":"lr_grid","name":"lr=0.001","top1":0.6}"#.into());
    lines.push(r#"{"kind":"lr_grid","name":"lr=0.01","top1":0.63}"#.into());
    let text = lines.join("\n") + "\n{\"kind\":\"train\",\"step\":31,\"lo";
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();

    let report = run_report(&dir).unwrap();
    assert_eq!(report.best_top1, Some((0.62, 2)));
    assert_eq!(report.last_top1, Some(0.58));
    assert_eq!(report.last_step, Some(30));
    assert_eq!(report.train_records, 30);
    assert_eq!(report.eval_records, 4);
    assert_eq!(report.best_knn_top1, Some((0.57, 20)));
    assert_eq!(
        report.best_lr_grid_top1,
        Some((0.63, "lr=0.01".to_string()))
    );
    assert_eq!(report.last_train_loss, Some(0.1));
    assert_eq!(report.summary_md, dir.join(summary::SUMMARY_FILE));
    assert_eq!(report.plot_png, dir.join(summary::CURVES_FILE));

    let md = std::fs::read_to_string(&report.summary_md).unwrap();
    assert!(md.contains("Best top-1: **0.62** at epoch 2."), "{md}");
    assert!(md.contains("| best top-1 "), "{md}");
    assert!(md.contains("## k-NN"), "{md}");
    assert!(md.contains("lr=0.01"), "{md}");
    assert!(md.contains("(2 of other kinds ignored)"), "{md}");
    // The eval table has one row per eval record, the one without values shown with dashes.
    assert!(
        md.contains("|     4 |    - |     - |     - |    - |"),
        "{md}"
    );

    let img = decode(&report.plot_png);
    assert_eq!(img.dimensions(), plot::canvas_size(3));
    assert!(
        leftovers(&dir, &["metrics.jsonl", "summary.md", "curves.png"]).is_empty(),
        "temporary files left in {}",
        dir.display()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_report_without_metrics_names_the_file() {
    let dir = temp_dir("missing");
    let err = run_report(&dir).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&dir.join("metrics.jsonl").display().to_string()),
        "{msg}"
    );
    // An empty metrics file still gives a report (no figures, "no data" panels).
    std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
    let report = run_report(&dir).unwrap();
    assert_eq!(report.best_top1, None);
    assert!(
        std::fs::read_to_string(&report.summary_md)
            .unwrap()
            .contains("No training or evaluation records.")
    );
    decode(&report.plot_png);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pretraining_report_has_key_figures_course_breakdown_and_nine_panels() {
    let dir = temp_dir("pretrain");
    let mut lines = Vec::new();
    for it in (5..=200u64).step_by(5) {
        let x = it as f64;
        lines.push(format!(
            r#"{{"kind":"pretrain","iteration":{it},"epoch":{},"total_loss":{},"dino_local_crops_loss":{},"dino_global_crops_loss":1.5,"koleo_loss":0.01,"ibot_loss":0.9,"lr":{},"last_layer_lr":{},"wd":0.04,"mom":0.996,"teacher_temp":0.04,"teacher_entropy":{},"teacher_marginal_entropy":5.4,"images_per_s":500.0,"world_size":2,"data_wait_s":0.001,"h2d_s":0.004,"fwd_bwd_s":0.2,"allreduce_exposed_s":0.03,"optimizer_s":0.01,"ema_s":0.005,"logging_s":0.0,"breakdown_steps":5,"bound":"compute-bound"}}"#,
            it / 20,
            10.0 - x / 40.0,
            4.0 - x / 100.0,
            1e-3 * (1.0 - x / 200.0),
            1e-3 * (1.0 - x / 200.0),
            3.0 - x / 400.0
        ));
    }
    lines.push(r#"{"kind":"checkpoint","iteration":200}"#.into());
    let text = lines.join("\n") + "\n{\"kind\":\"pretrain\",\"itera";
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "dino:\n  head_n_prototypes: 1024\ntrain:\n  batch_size_per_gpu: 8\n",
    )
    .unwrap();
    assert!(trainer::ssl::report::is_pretraining_run(&dir));

    let report = trainer::ssl::report::render(&dir).unwrap();
    assert_eq!(report.records, 40);
    assert_eq!(report.last_iteration, Some(200));
    let md = std::fs::read_to_string(&report.summary_md).unwrap();
    assert!(md.contains("40 pretraining records"), "{md}");
    assert!(
        md.contains("| last iteration                    |   200 | epoch 10"),
        "{md}"
    );
    assert!(
        md.contains("| first total loss                  | 9.875 | iteration 5 "),
        "{md}"
    );
    assert!(
        md.contains("| lowest total loss                 |     5 | iteration 200"),
        "{md}"
    );
    assert!(md.contains("ln 1024 = 6.931 for uniform targets"), "{md}");
    assert!(md.contains("40 records, 2 process(es)"), "{md}");
    // The course table: a header and 11 evenly spaced rows, the first and the last included.
    let course = md.split("## Course of the run").nth(1).unwrap();
    let course = course.split("## Where").next().unwrap();
    assert_eq!(
        course.lines().filter(|l| l.starts_with("| ")).count(),
        13,
        "{md}"
    );
    assert!(course.contains("|         5 |"), "{md}");
    assert!(course.contains("|       200 |     5 |"), "{md}");
    let img = decode(&report.plot_png);
    assert_eq!(img.dimensions(), plot::canvas_size(9));
    // Where the step's time goes, and what bounded the run.
    let bd = md
        .split("## Where the step's time goes")
        .nth(1)
        .expect("a breakdown");
    assert!(
        bd.contains("| forward + backward |      200.00 | 80.0 % |"),
        "{md}"
    );
    assert!(
        bd.contains("| exposed all-reduce |       30.00 | 12.0 % |"),
        "{md}"
    );
    assert!(
        bd.contains("The run was **compute-bound**: forward + backward took 80 % of each step; the trainer waited 1.00 ms per step for data (mean over 195 measured steps)."),
        "{md}"
    );
    assert!(
        leftovers(
            &dir,
            &["metrics.jsonl", "config.yaml", "summary.md", "curves.png"]
        )
        .is_empty()
    );

    // Before its first record a pretraining run is still told from a probe run by its config.
    std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
    assert!(trainer::ssl::report::is_pretraining_run(&dir));
    let md =
        std::fs::read_to_string(trainer::ssl::report::render(&dir).unwrap().summary_md).unwrap();
    assert!(md.contains("No pretraining records."), "{md}");
    std::fs::write(dir.join("config.yaml"), "Global:\n  epochs: 1\n").unwrap();
    assert!(!trainer::ssl::report::is_pretraining_run(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}
