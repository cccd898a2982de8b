//! Gradient all-reduce overlapped with the backward pass, on two real processes (this test
//! binary started again as each rank, Gloo over loopback): the overlapped gradients equal those
//! of `Dist::average_gradients` after the backward pass bit for bit, buckets follow reverse
//! registration order and the first bucket goes out while the backward pass still runs.

use std::process::{Command, Stdio};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};
use trainer::dist::{Dist, registration_order, sorted_variables};

const ROLE: &str = "DINOV2_GRAD_OVERLAP_TEST_RANK";

/// Eight 1024x1024 layers (4 MiB each: two 25 MB buckets) with biases, created under names
/// whose order is not the creation order; an unused parameter; a float64 parameter (a bucket
/// of its own dtype).
fn model(vs: &nn::VarStore) -> Vec<String> {
    let root = vs.root();
    let mut created = Vec::new();
    for l in 0..8 {
        let name = format!("{}layer", (b'h' - l as u8) as char); // hlayer, glayer, ..., alayer
        let init = Init::Uniform {
            lo: -0.05,
            up: 0.05,
        };
        let _ = (&root / name.as_str()).var("w", &[1024, 1024], init);
        let _ = (&root / name.as_str()).var("b", &[1024], init);
        created.extend([format!("{name}.w"), format!("{name}.b")]);
    }
    let _ = root.var("unused", &[7], Init::Const(1.0));
    let d = Tensor::linspace(-1.0, 1.0, 5, (Kind::Double, Device::Cpu));
    let _ = root.add("double", d, true);
    created.extend(["unused".to_string(), "double".to_string()]);
    created
}

fn loss(vs: &nn::VarStore, created: &[String], rank: usize) -> Tensor {
    let v = vs.variables();
    let mut h = (Tensor::arange(8 * 1024, (Kind::Float, Device::Cpu)).view([8, 1024])
        * (0.01 * (rank + 1) as f64))
        .sin();
    for l in created.chunks(2).take(8) {
        h = (h.matmul(&v[&l[0]]) + &v[&l[1]]).tanh();
    }
    let d = &v["double"];
    h.square().sum(Kind::Float)
        + (d * d * (rank as f64 + 0.5))
            .sum(Kind::Double)
            .to_kind(Kind::Float)
}

fn bits(t: &Tensor) -> Tensor {
    match t.kind() {
        Kind::Double => t.view_dtype(Kind::Int64),
        _ => t.view_dtype(Kind::Int),
    }
}

#[test]
fn rank_overlap_vs_average() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    tch::set_num_threads(1);
    let (dist, _) = Dist::from_env(Device::Cpu).unwrap();
    let rank = dist.rank();
    tch::manual_seed(7); // same initial weights on both ranks
    let vs = nn::VarStore::new(Device::Cpu);
    let created = model(&vs);
    let params = sorted_variables(&vs);
    let names: Vec<String> = {
        let mut n: Vec<String> = vs.variables().into_keys().collect();
        n.sort();
        n
    };
    // registration order recovered by data pointer
    let reg = registration_order(&vs, &params);
    for (n, r) in names.iter().zip(&reg) {
        assert_eq!(created[*r], *n);
    }
    // the old path: all-reduce after the backward pass
    let old = Tensor::run_backward(&[loss(&vs, &created, rank)], &params, false, false);
    dist.average_gradients(&old).unwrap();
    // overlapped
    let ov = dist.grad_overlap(&params, &reg).unwrap().unwrap();
    let of = |name: &str| names.iter().position(|n| n == name).unwrap();
    let bucket = ov.reducer().bucket_of();
    // reverse registration order, grouped by dtype in order of first appearance: the float64
    // parameter (created last) has bucket 0; then the float32 ones from "unused" back to
    // glayer.b (~24 MB), and glayer.w, hlayer.b, hlayer.w
    let want = [
        ("double", 0),
        ("unused", 1),
        ("alayer.b", 1),
        ("glayer.b", 1),
    ];
    for (n, b) in want.into_iter().chain([("glayer.w", 2), ("hlayer.w", 2)]) {
        assert_eq!(bucket[of(n)], Some(b), "{n}: {bucket:?}");
    }
    dist.take_comm_time();
    ov.arm().unwrap();
    let mut new = Tensor::run_backward(&[loss(&vs, &created, rank)], &params, false, false);
    // the hooks ran on run_backward's captured gradients, last layer first
    let arrived: Vec<&str> = ov
        .reducer()
        .arrival_order()
        .into_iter()
        .map(|i| names[i].as_str())
        .collect();
    assert_eq!(arrived.len(), 17, "{arrived:?}"); // all but "unused"
    let layers: Vec<&str> = arrived
        .iter()
        .copied()
        .filter(|n| n.ends_with(".w"))
        .collect();
    assert_eq!(
        layers,
        [
            "alayer.w", "blayer.w", "clayer.w", "dlayer.w", "elayer.w", "flayer.w", "glayer.w",
            "hlayer.w"
        ]
    );
    // the float64 bucket went out during the backward pass; bucket 1 waits for "unused"
    // (zero-filled in finish), bucket 2 behind it
    assert_eq!(ov.reducer().launch_order(), vec![0]);
    ov.finish(&mut new).unwrap();
    assert_eq!(ov.reducer().launch_order(), vec![0, 1, 2]);
    assert!(dist.take_comm_time() > std::time::Duration::ZERO);
    assert!(ov.take_exposed_time() > std::time::Duration::ZERO);
    for ((n, a), b) in names.iter().zip(&old).zip(&new) {
        assert_eq!(a.defined(), b.defined(), "{n}");
        if a.defined() {
            assert!(bits(a).equal(&bits(b)), "{n}: overlapped gradient differs");
        }
    }
    assert!(!new[of("unused")].defined());
    println!("rank {rank} overlap ok");
}

#[test]
fn overlapped_gradients_equal_average_gradients_bit_for_bit() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "rank_overlap_vs_average",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE, rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("DINOV2_DIST_TIMEOUT", "60")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "rank {rank} failed:\n{out}");
        assert!(out.contains(&format!("rank {rank} overlap ok")), "{out}");
    }
}
