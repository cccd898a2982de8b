//! Two real processes on localhost (this test binary started again as each rank) run the
//! Gloo collectives; a rank that dies makes its peer's collective fail instead of hanging.

use c10d::{Backend, ProcessGroup, ReduceOp};
use std::process::Command;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs test `name` of this binary as `world` ranks; returns each rank's exit status + output.
fn spawn(name: &str, world: usize) -> Vec<(bool, String)> {
    let port = free_port();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env("C10D_TEST_RANK", rank.to_string())
                .env("C10D_TEST_WORLD", world.to_string())
                .env("C10D_TEST_PORT", port.to_string())
                .output_async()
        })
        .collect();
    children.into_iter().map(|c| c.wait()).collect()
}

trait Async {
    fn output_async(&mut self) -> Child;
}
struct Child(std::process::Child);
impl Async for Command {
    fn output_async(&mut self) -> Child {
        Child(
            self.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }
}
impl Child {
    fn wait(self) -> (bool, String) {
        let o = self.0.wait_with_output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

/// (rank, world, port) when this process is a spawned rank.
fn role() -> Option<(usize, usize, u16)> {
    let get = |k: &str| std::env::var(k).ok()?.parse().ok();
    Some((
        get("C10D_TEST_RANK")?,
        get("C10D_TEST_WORLD")?,
        get("C10D_TEST_PORT")? as u16,
    ))
}

fn join(timeout: Duration) -> Option<ProcessGroup> {
    let (rank, world, port) = role()?;
    Some(ProcessGroup::new("127.0.0.1", port, rank, world, Backend::Gloo, timeout).unwrap())
}

#[test]
fn rank_collectives() {
    let Some(mut pg) = join(Duration::from_secs(30)) else {
        return;
    };
    let (r, w) = (pg.rank() as f64, pg.world() as f64);
    // single and coalesced all-reduce
    let a = Tensor::full([3], r + 1.0, (Kind::Float, tch::Device::Cpu));
    let b = Tensor::full([2, 2], 10.0 * (r + 1.0), (Kind::Float, tch::Device::Cpu));
    pg.all_reduce(&[&a], ReduceOp::Sum).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(&a).unwrap(),
        vec![(w * (w + 1.0) / 2.0) as f32; 3]
    );
    let c = Tensor::full([5], r, (Kind::Float, tch::Device::Cpu));
    pg.all_reduce(&[&b, &c], ReduceOp::Sum).unwrap();
    assert_eq!(
        f64::try_from(b.sum(Kind::Double)).unwrap(),
        4.0 * 10.0 * w * (w + 1.0) / 2.0
    );
    assert_eq!(
        f64::try_from(c.sum(Kind::Double)).unwrap(),
        5.0 * w * (w - 1.0) / 2.0
    );
    let m = Tensor::from_slice(&[r as f32]);
    pg.all_reduce(&[&m], ReduceOp::Max).unwrap();
    assert_eq!(f64::try_from(&m).unwrap(), w - 1.0);
    // broadcast from the last rank
    let t = Tensor::full([4], r, (Kind::Float, tch::Device::Cpu));
    pg.broadcast(&[&t], pg.world() - 1).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![(w - 1.0) as f32; 4]);
    // all-gather
    let g = pg.all_gather(&Tensor::from_slice(&[r as i64, 7])).unwrap();
    for (i, t) in g.iter().enumerate() {
        assert_eq!(Vec::<i64>::try_from(t).unwrap(), vec![i as i64, 7]);
    }
    pg.barrier().unwrap();
    println!("rank {} ok", pg.rank());
}

#[test]
fn peer_death() {
    let Some(mut pg) = join(Duration::from_secs(20)) else {
        return;
    };
    pg.barrier().unwrap();
    if pg.rank() == 1 {
        std::process::exit(3); // dies without a word; rank 0 must not hang
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let err = pg
        .all_reduce(
            &[&Tensor::ones([8], (Kind::Float, tch::Device::Cpu))],
            ReduceOp::Sum,
        )
        .expect_err("all-reduce with a dead peer must fail");
    println!(
        "rank 0 error after {:.1}s: {err:#}",
        t0.elapsed().as_secs_f64()
    );
    assert!(t0.elapsed() < Duration::from_secs(25));
    assert!(format!("{err:#}").contains("all-reduce"));
    std::process::exit(0);
}

#[test]
fn two_processes_reduce_broadcast_gather() {
    if role().is_some() {
        return;
    }
    for (rank, (ok, out)) in spawn("rank_collectives", 2).into_iter().enumerate() {
        assert!(ok, "rank {rank} failed:\n{out}");
        assert!(out.contains(&format!("rank {rank} ok")), "{out}");
    }
}

#[test]
fn a_dead_peer_is_an_error_not_a_hang() {
    if role().is_some() {
        return;
    }
    let t0 = Instant::now();
    let res = spawn("peer_death", 2);
    assert!(
        res[0].0,
        "rank 0 should see an error and exit cleanly:\n{}",
        res[0].1
    );
    let line = res[0].1.lines().find(|l| l.contains("rank 0 error after"));
    println!(
        "{}",
        line.unwrap_or_else(|| panic!("no error line:\n{}", res[0].1))
    );
    assert!(!res[1].0);
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_rank_outside_the_world_is_refused() {
    if role().is_some() {
        return;
    }
    let err = ProcessGroup::new(
        "127.0.0.1",
        free_port(),
        2,
        2,
        Backend::Gloo,
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("rank 2 is not in a world of 2"),
        "{err}"
    );
}

#[test]
fn nobody_at_the_store_times_out() {
    if role().is_some() {
        return;
    }
    // rank 1 of 2 with no rank 0 serving the store: a clear error after the timeout
    let t0 = Instant::now();
    let err = ProcessGroup::new(
        "127.0.0.1",
        free_port(),
        1,
        2,
        Backend::Gloo,
        Duration::from_secs(2),
    )
    .err()
    .unwrap();
    println!("{err:#}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(
        format!("{err:#}").contains("joining the Gloo group"),
        "{err:#}"
    );
}

#[test]
fn nccl_without_a_gpu_is_a_clear_error() {
    if role().is_some() || tch::Cuda::is_available() {
        return;
    }
    // a world of one: rank 0 serves the store itself, then the backend is created
    let r = ProcessGroup::new(
        "127.0.0.1",
        free_port(),
        0,
        1,
        Backend::Nccl,
        Duration::from_secs(5),
    );
    let err = format!("{:#}", r.err().expect("NCCL needs a GPU"));
    println!("has_nccl={}: {err}", c10d::has_nccl());
    assert!(err.contains("joining the Nccl group"), "{err}");
    if !c10d::has_nccl() {
        assert!(err.contains("no NCCL support"), "{err}");
    }
}

/// A chain of layers `h = tanh(h @ p_i)` over 6 registered parameters (16x16), parameter 3
/// unused; the input depends on the rank. Returns the loss.
fn chain_loss(params: &[Tensor], rank: usize, step: i64) -> Tensor {
    let x = Tensor::arange(4 * 16, (Kind::Float, tch::Device::Cpu))
        .view([4, 16])
        .sin()
        * (1.0 + rank as f64 + step as f64);
    let mut h = x;
    for (i, p) in params.iter().enumerate() {
        if i != 3 {
            h = h.matmul(p).tanh();
        }
    }
    h.square().sum(Kind::Float)
}

fn chain_params() -> Vec<Tensor> {
    (0..6)
        .map(|i| {
            (Tensor::arange(256, (Kind::Float, tch::Device::Cpu)).view([16, 16])
                * (0.37 + i as f64))
                .cos()
                .g_div_scalar(4.0)
                .set_requires_grad(true)
        })
        .collect()
}

#[test]
fn rank_reducer() {
    let Some(mut pg) = join(Duration::from_secs(30)) else {
        return;
    };
    let (rank, w) = (pg.rank(), pg.world() as f64);
    let params = chain_params();
    let refs: Vec<&Tensor> = params.iter().collect();
    let n = params.len();
    // reverse registration order, two 16x16 f32 parameters (2 KiB) per bucket
    let order: Vec<usize> = (0..n).rev().collect();
    let red = pg.grad_reducer(&refs, &order, 2048).unwrap();
    assert_eq!(
        red.bucket_of(),
        vec![Some(2), Some(2), Some(1), Some(1), Some(0), Some(0)]
    );
    for step in 0..2 {
        // not armed: the hooks leave gradients alone (local gradients, no arrivals)
        let local = Tensor::run_backward(&[chain_loss(&params, rank, step)], &params, false, false);
        assert!(!local[3].defined());
        // the old way: sum of the flattened gradients, then divided by the world size
        let defined: Vec<&Tensor> = local.iter().filter(|g| g.defined()).collect();
        let flat = Tensor::cat(
            &defined.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
            0,
        );
        pg.all_reduce(&[&flat], ReduceOp::Sum).unwrap();
        let flat = flat.g_div_scalar(w);
        // overlapped: hooks on the captured gradients of run_backward with inputs
        red.arm().unwrap();
        let grads = Tensor::run_backward(&[chain_loss(&params, rank, step)], &params, false, false);
        // autograd produces them in reverse registration order; the unused one never comes
        assert_eq!(red.arrival_order(), vec![5, 4, 2, 1, 0]);
        // bucket 0 (parameters 5, 4) went out during the backward pass; bucket 1 waits for
        // parameter 3, and bucket 2, complete, waits behind it (launches keep bucket order)
        assert_eq!(red.launch_order(), vec![0]);
        red.finish(&grads).unwrap();
        assert_eq!(red.launch_order(), vec![0, 1, 2]);
        assert!(!grads[3].defined());
        let mut off = 0;
        for (i, g) in grads.iter().enumerate() {
            if i == 3 {
                continue;
            }
            let want = flat.narrow(0, off, 256).view([16, 16]);
            off += 256;
            assert!(g.equal(&want), "step {step} parameter {i} differs");
            assert!(!g.equal(&local[i]) || w == 1.0);
        }
        println!("rank {rank} step {step} ok");
    }
    // an unarmed backward after the steps: identity again
    let local = Tensor::run_backward(&[chain_loss(&params, rank, 0)], &params, false, false);
    let again = Tensor::run_backward(&[chain_loss(&params, rank, 0)], &params, false, false);
    assert!(local[0].equal(&again[0]));
    // a gradient that bypassed the hooks is refused, not silently left out of the sum
    red.arm().unwrap();
    let grads = Tensor::run_backward(&[chain_loss(&params, rank, 0)], &params, false, false);
    let mut forged: Vec<Tensor> = grads.iter().map(|g| g.shallow_clone()).collect();
    forged[0] = forged[0].copy();
    let err = red
        .finish(&forged)
        .expect_err("a copied gradient must be refused");
    assert!(
        format!("{err:#}").contains("did not pass through"),
        "{err:#}"
    );
    drop(red);
    // freed: the hooks are gone
    let after = Tensor::run_backward(&[chain_loss(&params, rank, 0)], &params, false, false);
    assert!(after[0].equal(&local[0]));
    pg.barrier().unwrap();
    println!("rank {rank} reducer ok");
}

#[test]
fn overlapped_gradients_equal_the_summed_then_divided_ones_and_arrive_in_reverse_order() {
    if role().is_some() {
        return;
    }
    for world in [1, 2] {
        for (rank, (ok, out)) in spawn("rank_reducer", world).into_iter().enumerate() {
            assert!(ok, "world {world} rank {rank} failed:\n{out}");
            assert!(out.contains(&format!("rank {rank} reducer ok")), "{out}");
        }
    }
}
