//! `dinov2 report DIR`: re-renders the summary and plots of a run from what it logged. The
//! three kinds of run folder are told apart by their files:
//! - a `dinov2 demo` folder (`stages/`): its runs' reports, then its own summary and plots;
//! - a pretraining run (`pretrain` records, or a resolved config with a `dino` section);
//! - a linear-probe run (everything else with a `metrics.jsonl`).

use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> Result<ExitCode> {
    if crate::demo::is_demo_dir(dir) {
        return crate::demo::report(dir);
    }
    let (summary_md, plot_png) = if trainer::ssl::report::is_pretraining_run(dir) {
        let r = trainer::ssl::report::render(dir)?;
        (r.summary_md, r.plot_png)
    } else {
        let r = trainer::summary::run_report(dir)?;
        (r.summary_md, r.plot_png)
    };
    if let Ok(md) = std::fs::read_to_string(&summary_md) {
        println!("{md}");
    }
    println!(
        "summary: {}\nplot:    {}",
        summary_md.display(),
        plot_png.display()
    );
    Ok(ExitCode::SUCCESS)
}
