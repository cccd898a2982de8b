//! `dinov2 bench fuzz`: a mutation campaign over every parser of hostile input the product
//! has (checkpoints, pickles, safetensors, images, shards, manifests, resume files, configs,
//! overrides, metrics). Every input must end in `Ok` or an error: a panic (caught in the
//! worker), an abort or stack overflow (the worker dies), a hang (the worker's watchdog) or an
//! allocation far beyond the input's size (the counting allocator's cap) is a finding, saved
//! under `--out/findings` with its parser and index. Inputs are a deterministic function of
//! (`--seed`, parser, index), so any of them can be regenerated.

pub mod alloc;
mod mutate;
mod supervise;
mod targets;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use supervise::{Chunk, Outcome};

/// Options of `dinov2 bench fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Parsers to run (comma-separated; default all). `--list` names them.
    #[arg(long, value_delimiter = ',')]
    pub parsers: Vec<String>,
    /// Inputs in all, shared among the parsers by weight (cheap parsers get more).
    #[arg(long, conflicts_with = "seconds")]
    pub inputs: Option<u64>,
    /// Run for about this many seconds in all instead, shared among the parsers by weight.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// At least this many inputs per parser with --inputs.
    #[arg(long, default_value_t = 0)]
    pub min_per_parser: u64,
    /// Seed of the mutations (inputs are a function of seed, parser and index).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker processes at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Seeds, findings (inputs that failed) and summary.json go here.
    #[arg(long, default_value = "runs/fuzz")]
    pub out: PathBuf,
    /// Inputs per worker process.
    #[arg(long, default_value_t = 100_000)]
    pub chunk: u64,
    /// An input running longer than this is a hang.
    #[arg(long, default_value_t = 10)]
    pub hang_seconds: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the parsers and their weights.
    #[arg(long)]
    pub list: bool,
    /// Run one saved input (a file under --out/findings) through the --parsers in this
    /// process, unsupervised, and print what each returned.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub worker: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    pub start: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    pub end: u64,
    #[arg(long, hide = true)]
    pub cursor: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub deadline_ms: Option<u64>,
}

/// One failing input.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Finding {
    pub parser: String,
    /// `panic`, `abort`, `hang`, `over-allocation` or `seed-rejected`.
    pub kind: String,
    pub index: u64,
    pub input_bytes: u64,
    pub message: String,
    pub file: String,
}

/// A worker's counts (printed as JSON lines, the last one with `finished`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Stats {
    pub parser: String,
    pub tried: u64,
    pub ok: u64,
    pub errors: u64,
    pub findings: Vec<Finding>,
    /// Largest live Rust allocation above the input's start level, over all inputs.
    pub peak_alloc: u64,
    pub peak_alloc_input_bytes: u64,
    pub max_rss_kb: u64,
    pub input_bytes: u64,
    pub seconds: f64,
    /// The slowest input: its index and seconds.
    pub slowest: (u64, f64),
    pub finished: bool,
}

impl Stats {
    fn new(parser: &str) -> Self {
        Self {
            parser: parser.into(),
            ..Default::default()
        }
    }
}

/// The allocation cap of one input: 64 MiB or 64 times its size, whichever is larger, plus
/// for image decoders 16 bytes per pixel of the harness's pixel bound (a 500-byte GIF may
/// rightly decode to 2000x2000 pixels: RGBA frame, RGB copy, a scaled decode).
pub fn alloc_cap(input_len: usize, decodes_images: bool) -> usize {
    let pixels = if decodes_images {
        16 * targets::MAX_PIXELS
    } else {
        0
    };
    (64usize << 20).max(input_len.saturating_mul(64)) + pixels
}

pub fn run(a: FuzzArgs) -> Result<ExitCode> {
    if let Some(p) = a.worker.clone() {
        return worker(&a, &p).map(|_| ExitCode::SUCCESS);
    }
    let all = targets::all();
    if a.list {
        for t in &all {
            println!("{:14} weight {}", t.name, t.weight);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chosen: Vec<&targets::Target> = if a.parsers.is_empty() {
        all.iter().collect()
    } else {
        a.parsers
            .iter()
            .map(|p| {
                all.iter()
                    .find(|t| t.name == p)
                    .with_context(|| format!("unknown parser {p:?} (see --list)"))
            })
            .collect::<Result<_>>()?
    };
    if let Some(file) = &a.replay {
        let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let tmp = std::env::temp_dir().join(format!("dinov2-fuzz-replay-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(a.out.join("work"))?;
        for t in &chosen {
            let mut run = (t.runner)(&a.out.join("work"), &tmp)?;
            let t0 = Instant::now();
            let r = run(&input);
            println!(
                "{}: {:?} in {:.3} s",
                t.name,
                r.map_err(|e| format!("{e:#}")),
                t0.elapsed().as_secs_f64()
            );
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(ExitCode::SUCCESS);
    }
    if a.jobs == 0 || a.chunk == 0 {
        bail!("--jobs and --chunk must be at least 1");
    }
    std::fs::create_dir_all(a.out.join("findings"))?;
    let work = a.out.join("work");
    std::fs::create_dir_all(&work)?;
    let t0 = Instant::now();
    let weight: u64 = chosen.iter().map(|t| t.weight).sum();
    let mut queue = VecDeque::new();
    let mut budgets: BTreeMap<String, f64> = BTreeMap::new();
    for t in &chosen {
        let seeds = (t.seeds)(&work).with_context(|| format!("making the {} seeds", t.name))?;
        let dir = a.out.join("seeds").join(t.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:03}.bin")), s)?;
        }
        let n = match (a.inputs, a.seconds) {
            (_, Some(s)) => {
                budgets.insert(t.name.into(), s * t.weight as f64 / weight as f64);
                u64::MAX / 2
            }
            (n, None) => (n.unwrap_or(20_000) * t.weight / weight)
                .max(a.min_per_parser)
                .max(seeds.len() as u64),
        };
        let mut s = 0;
        while s < n {
            let e = (s + a.chunk).min(n);
            queue.push_back(Chunk {
                parser: t.name.into(),
                start: s,
                end: e,
            });
            s = e;
        }
    }
    let mut deadlines: BTreeMap<String, u64> = BTreeMap::new();
    let mut totals: BTreeMap<String, Total> = chosen
        .iter()
        .map(|t| (t.name.to_string(), Total::default()))
        .collect();
    let mut running: Vec<supervise::Running> = Vec::new();
    loop {
        while running.len() < a.jobs
            && let Some(c) = queue.pop_front()
        {
            let deadline = budgets.get(&c.parser).map(|b| {
                *deadlines
                    .entry(c.parser.clone())
                    .or_insert_with(|| unix_ms() + (b * 1000.0) as u64)
            });
            running.push(supervise::spawn(
                c,
                a.seed,
                &a.out,
                a.hang_seconds,
                deadline,
            )?);
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        while i < running.len() {
            let Some(outcome) = running[i].poll()? else {
                i += 1;
                continue;
            };
            let r = running.swap_remove(i);
            let total = totals.get_mut(&r.chunk.parser).unwrap();
            // Wall time of the worker process, start-up included (a dead one's too).
            total.worker_seconds += r.started.elapsed().as_secs_f64();
            match outcome {
                Outcome::Done(s) => total.add(&s, s.tried),
                Outcome::Died {
                    stats,
                    index,
                    kind,
                    message,
                } => {
                    let input = regenerate(&a.out, &r.chunk.parser, a.seed, index)?;
                    let file = a
                        .out
                        .join("findings")
                        .join(format!("{}-{kind}-{index}.bin", r.chunk.parser));
                    std::fs::write(&file, &input)?;
                    eprintln!(
                        "{}: {kind} on input {index} ({} bytes), saved to {}: {message}",
                        r.chunk.parser,
                        input.len(),
                        file.display()
                    );
                    total.add(&stats, index + 1 - r.chunk.start);
                    total.findings.push(Finding {
                        parser: r.chunk.parser.clone(),
                        kind: kind.into(),
                        index,
                        input_bytes: input.len() as u64,
                        message,
                        file: file.display().to_string(),
                    });
                    if index + 1 < r.chunk.end {
                        queue.push_front(Chunk {
                            start: index + 1,
                            ..r.chunk
                        });
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t0.elapsed().as_secs_f64();
    report(&a, &totals, wall)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Per-parser totals over its chunks.
#[derive(Serialize, Default, Debug)]
struct Total {
    tried: u64,
    ok: u64,
    errors: u64,
    panics: u64,
    aborts: u64,
    hangs: u64,
    over_allocations: u64,
    seeds_rejected: u64,
    peak_alloc: u64,
    peak_alloc_input_bytes: u64,
    max_rss_kb: u64,
    input_bytes: u64,
    worker_seconds: f64,
    slowest: (u64, f64),
    findings: Vec<Finding>,
}

impl Total {
    fn add(&mut self, s: &Stats, tried: u64) {
        self.tried += tried;
        self.ok += s.ok;
        self.errors += s.errors;
        self.input_bytes += s.input_bytes;
        if s.peak_alloc > self.peak_alloc {
            self.peak_alloc = s.peak_alloc;
            self.peak_alloc_input_bytes = s.peak_alloc_input_bytes;
        }
        self.max_rss_kb = self.max_rss_kb.max(s.max_rss_kb);
        if s.slowest.1 > self.slowest.1 {
            self.slowest = s.slowest;
        }
        self.findings.extend(s.findings.iter().cloned());
    }

    fn count(&mut self) {
        for f in &self.findings {
            match f.kind.as_str() {
                "panic" => self.panics += 1,
                "hang" => self.hangs += 1,
                "over-allocation" => self.over_allocations += 1,
                "seed-rejected" => self.seeds_rejected += 1,
                _ => self.aborts += 1,
            }
        }
    }
}

fn report(a: &FuzzArgs, totals: &BTreeMap<String, Total>, wall: f64) -> Result<ExitCode> {
    let mut totals: Vec<(&String, Total)> = totals
        .iter()
        .map(|(k, t)| {
            let mut t2 = Total {
                findings: t.findings.clone(),
                ..Default::default()
            };
            t2.tried = t.tried;
            t2.ok = t.ok;
            t2.errors = t.errors;
            t2.peak_alloc = t.peak_alloc;
            t2.peak_alloc_input_bytes = t.peak_alloc_input_bytes;
            t2.max_rss_kb = t.max_rss_kb;
            t2.input_bytes = t.input_bytes;
            t2.worker_seconds = t.worker_seconds;
            t2.slowest = t.slowest;
            t2.count();
            (k, t2)
        })
        .collect();
    totals.sort_by_key(|x| std::cmp::Reverse(x.1.tried));
    let bad: usize = totals.iter().map(|(_, t)| t.findings.len()).sum();
    let summary = serde_json::json!({
        "seed": a.seed, "wall_seconds": wall, "findings": bad,
        "parsers": totals.iter().map(|(k, t)| ((*k).clone(), t)).collect::<BTreeMap<_, _>>(),
    });
    std::fs::write(
        a.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "| parser | inputs | Ok | errors | panics | aborts | hangs | over-alloc | peak alloc (MiB) | peak RSS (MiB) | slowest (s) | inputs/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut sum = Total::default();
        for (k, t) in &totals {
            println!(
                "| {k} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.0} |",
                t.tried,
                t.ok,
                t.errors,
                t.panics,
                t.aborts,
                t.hangs,
                t.over_allocations,
                t.peak_alloc as f64 / 1048576.0,
                t.max_rss_kb as f64 / 1024.0,
                t.slowest.1,
                t.tried as f64 / t.worker_seconds.max(1e-9)
            );
            sum.tried += t.tried;
            sum.ok += t.ok;
            sum.errors += t.errors;
            sum.panics += t.panics;
            sum.aborts += t.aborts;
            sum.hangs += t.hangs;
            sum.over_allocations += t.over_allocations;
            sum.worker_seconds += t.worker_seconds;
        }
        println!(
            "| **all** | {} | {} | {} | {} | {} | {} | {} | | | | {:.0} |",
            sum.tried,
            sum.ok,
            sum.errors,
            sum.panics,
            sum.aborts,
            sum.hangs,
            sum.over_allocations,
            sum.tried as f64 / sum.worker_seconds.max(1e-9)
        );
        println!(
            "wall {wall:.1} s, seed {}, {} finding(s); summary in {}",
            a.seed,
            bad,
            a.out.join("summary.json").display()
        );
        for (_, t) in &totals {
            for f in &t.findings {
                println!(
                    "  {} {} #{} ({} bytes): {} [{}]",
                    f.parser, f.kind, f.index, f.input_bytes, f.message, f.file
                );
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_seeds(out: &Path, parser: &str) -> Result<Vec<Vec<u8>>> {
    let dir = out.join("seeds").join(parser);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<_>>()?;
    if seeds.is_empty() {
        bail!("no seeds in {}", dir.display());
    }
    Ok(seeds)
}

fn dict(parser: &str) -> &'static [&'static [u8]] {
    targets::all()
        .into_iter()
        .find(|t| t.name == parser)
        .map_or(&[], |t| t.dict)
}

/// Input `index` of `parser`, as a worker made it.
fn regenerate(out: &Path, parser: &str, seed: u64, index: u64) -> Result<Vec<u8>> {
    Ok(mutate::input(
        seed,
        parser,
        index,
        &load_seeds(out, parser)?,
        dict(parser),
    ))
}

static PANIC_MSG: Mutex<String> = Mutex::new(String::new());
/// The input being run and when it started (ms since the worker started; `u64::MAX`: none).
static CUR_INDEX: AtomicU64 = AtomicU64::new(0);
static CUR_START: AtomicU64 = AtomicU64::new(u64::MAX);

fn max_rss_kb() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss as u64
    }
}

fn worker(a: &FuzzArgs, parser: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let target = targets::all()
        .into_iter()
        .find(|t| t.name == parser)
        .with_context(|| format!("unknown parser {parser}"))?;
    let seeds = Arc::new(load_seeds(&a.out, parser)?);
    let cursor = std::fs::OpenOptions::new()
        .write(true)
        .open(a.cursor.as_ref().context("--cursor")?)?;
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let tmp = base.join(format!("dinov2-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut run = (target.runner)(&a.out.join("work"), &tmp)?;
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = PANIC_MSG.lock() {
            *m = info.to_string();
        }
    }));
    let t0 = Instant::now();
    {
        let (seeds, out, parser, seed, hang_ms) = (
            seeds.clone(),
            a.out.clone(),
            parser.to_string(),
            a.seed,
            a.hang_seconds * 1000,
        );
        let dict = target.dict;
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let start = CUR_START.load(Relaxed);
                let now = t0.elapsed().as_millis() as u64;
                if start != u64::MAX && now.saturating_sub(start) > hang_ms {
                    let i = CUR_INDEX.load(Relaxed);
                    let input = mutate::input(seed, &parser, i, &seeds, dict);
                    let _ = std::fs::write(
                        out.join("findings").join(format!("{parser}-hang-{i}.bin")),
                        input,
                    );
                    eprintln!("input {i} ran for over {} s", hang_ms / 1000);
                    // SAFETY: ends the process at once; the main thread is stuck in the parser.
                    unsafe { libc::_exit(supervise::HANG_EXIT) };
                }
            }
        });
    }
    alloc::enable();
    let mut stats = Stats::new(parser);
    let mut last_print = Instant::now();
    let stdout = std::io::stdout();
    let mut i = a.start;
    while i < a.end {
        if a.deadline_ms.is_some_and(|d| unix_ms() >= d) {
            break;
        }
        cursor.write_at(&i.to_le_bytes(), 0)?;
        let input = mutate::input(a.seed, parser, i, &seeds, target.dict);
        CUR_INDEX.store(i, Relaxed);
        CUR_START.store(t0.elapsed().as_millis() as u64, Relaxed);
        let started = Instant::now();
        let base_level = alloc::begin(alloc_cap(input.len(), matches!(parser, "jpeg" | "image")));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&input)));
        let peak = alloc::end(base_level) as u64;
        let dt = started.elapsed().as_secs_f64();
        if dt > stats.slowest.1 {
            stats.slowest = (i, dt);
        }
        CUR_START.store(u64::MAX, Relaxed);
        stats.tried += 1;
        stats.input_bytes += input.len() as u64;
        if peak > stats.peak_alloc {
            stats.peak_alloc = peak;
            stats.peak_alloc_input_bytes = input.len() as u64;
        }
        let mut finding = |kind: &str, message: String| -> Result<()> {
            let file = a
                .out
                .join("findings")
                .join(format!("{parser}-{kind}-{i}.bin"));
            std::fs::write(&file, &input)?;
            stats.findings.push(Finding {
                parser: parser.into(),
                kind: kind.into(),
                index: i,
                input_bytes: input.len() as u64,
                message,
                file: file.display().to_string(),
            });
            Ok(())
        };
        match r {
            Ok(Ok(())) => stats.ok += 1,
            Ok(Err(e)) => {
                stats.errors += 1;
                // The first inputs are the seeds themselves: they must be accepted, or the
                // campaign would only exercise error paths.
                if (i as usize) < seeds.len() {
                    finding("seed-rejected", format!("{e:#}"))?;
                }
            }
            Err(_) => {
                let msg = PANIC_MSG.lock().map(|m| m.clone()).unwrap_or_default();
                finding("panic", msg)?;
            }
        }
        i += 1;
        if last_print.elapsed() > Duration::from_secs(1) {
            stats.seconds = t0.elapsed().as_secs_f64();
            stats.max_rss_kb = max_rss_kb();
            writeln!(stdout.lock(), "{}", serde_json::to_string(&stats)?)?;
            last_print = Instant::now();
        }
    }
    drop(run);
    let _ = std::fs::remove_dir_all(&tmp);
    stats.seconds = t0.elapsed().as_secs_f64();
    stats.max_rss_kb = max_rss_kb();
    stats.finished = true;
    writeln!(stdout.lock(), "{}", serde_json::to_string(&stats)?)?;
    Ok(())
}
