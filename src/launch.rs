//! `dinov2 launch --nproc-per-node N [--nnodes M --node-rank R --master host:port] -- train ...`:
//! one process per GPU (or per CPU group) with torchrun's environment (RANK, LOCAL_RANK,
//! WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). When one process fails, the
//! launcher stops the others and exits non-zero naming the failing rank; a peer blocked in a
//! collective is not waited for past the collective timeout.

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct LaunchArgs {
    /// Processes on this node (one per GPU; on CPU, each gets cores / N threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub nproc_per_node: u32,
    /// Nodes in the job.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub nnodes: u32,
    /// This node's index (0 hosts the rendezvous store).
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// host:port of node 0's rendezvous store (default on one node: 127.0.0.1 and a free port).
    #[arg(long)]
    pub master: Option<String>,
    /// Seconds a collective (or the rendezvous) may wait before the run fails.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// The dinov2 command every process runs, after `--` (e.g. `-- train -c configs/x.yaml`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}{}", signal_name(s)),
        _ => "ended".into(),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGBUS => " (SIGBUS)",
        _ => "",
    }
}

fn parse_master(a: &LaunchArgs) -> Result<(String, u16)> {
    match &a.master {
        Some(m) => {
            let (host, port) = m
                .rsplit_once(':')
                .with_context(|| format!("--master {m:?} is not host:port"))?;
            let port = port
                .parse()
                .with_context(|| format!("--master {m:?}: {port:?} is not a port"))?;
            Ok((host.to_string(), port))
        }
        None if a.nnodes > 1 => bail!(
            "--nnodes {} needs --master host:port (node 0's address)",
            a.nnodes
        ),
        None => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            Ok(("127.0.0.1".into(), l.local_addr()?.port()))
        }
    }
}

/// Copies a child's output to ours, each line prefixed with its rank.
fn forward(rank: usize, out: impl std::io::Read + Send + 'static, to_stderr: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "[rank {rank}] {line}");
            } else {
                let _ = writeln!(std::io::stdout(), "[rank {rank}] {line}");
            }
        }
    });
}

pub fn run(a: LaunchArgs) -> Result<ExitCode> {
    ensure!(
        a.node_rank < a.nnodes,
        "--node-rank {} is not below --nnodes {}",
        a.node_rank,
        a.nnodes
    );
    ensure!(a.timeout > 0.0, "--timeout must be positive");
    ensure!(
        a.command.first().is_some_and(|c| c == "train"),
        "launch runs `dinov2 train ...` in each process (got {:?})",
        a.command.first()
    );
    let (host, port) = parse_master(&a)?;
    let n = a.nproc_per_node as usize;
    let world = n * a.nnodes as usize;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads =
        std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| (cores / n).max(1).to_string());
    let exe = std::env::current_exe().context("finding the dinov2 executable")?;
    eprintln!(
        "launch: {n} process(es) on node {} of {} (world {world}), rendezvous {host}:{port}, {threads} thread(s) each",
        a.node_rank, a.nnodes
    );
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(n);
    for local in 0..n {
        let rank = a.node_rank as usize * n + local;
        let mut cmd = Command::new(&exe);
        cmd.args(&a.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("GROUP_RANK", a.node_rank.to_string())
            .env("MASTER_ADDR", &host)
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .env("DINOV2_DIST_TIMEOUT", a.timeout.to_string());
        // rank 0 keeps the terminal (progress bars); the others' lines carry their rank
        if rank != 0 {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop(&mut children, Duration::from_secs(5));
                return Err(e).with_context(|| format!("starting rank {rank} ({})", exe.display()));
            }
        };
        if rank != 0 {
            forward(rank, child.stdout.take().unwrap(), false);
            forward(rank, child.stderr.take().unwrap(), true);
        }
        children.push((rank, child));
    }
    let mut done = vec![false; children.len()];
    loop {
        let sig = SIGNALLED.load(Ordering::SeqCst);
        if sig != 0 {
            eprintln!(
                "launch: received signal {sig}{}; stopping all ranks",
                signal_name(sig)
            );
            stop(&mut children, Duration::from_secs(10));
            return Ok(ExitCode::from(128u8.wrapping_add(sig as u8)));
        }
        for (i, (rank, child)) in children.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                done[i] = true;
                if !status.success() {
                    let rank = *rank;
                    let pid = child.id();
                    eprintln!(
                        "launch: rank {rank} (pid {pid}) {}; stopping the other ranks",
                        describe(status)
                    );
                    let t = Instant::now();
                    stop(&mut children, Duration::from_secs(10));
                    eprintln!(
                        "launch: all ranks stopped ({:.1}s)",
                        t.elapsed().as_secs_f64()
                    );
                    bail!("rank {rank} {}", describe(status));
                }
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to every live child, SIGKILL after `grace`, then reaps them.
fn stop(children: &mut [(usize, Child)], grace: Duration) {
    for (_, c) in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }
    let t = Instant::now();
    while t.elapsed() < grace
        && children
            .iter_mut()
            .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, c) in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}
