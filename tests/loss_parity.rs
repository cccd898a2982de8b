//! The training losses (`model::loss`) against the `dinov2` package's own `DINOLoss`,
//! `iBOTPatchLoss` and `KoLeoLoss` on the same random prototype scores: teacher
//! distributions, the one-step-delayed centres over three consecutive steps, Sinkhorn-Knopp,
//! loss values and the student gradients (tests/reference/loss_reference.py); plus the
//! reduce hook with a simulated second process and KoLeo on fp16 tokens.

mod common;
use common::*;
use model::loss::{AllReduce, DinoLoss, IbotPatchLoss, KoLeoLoss};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

const SCRIPT: &str = include_str!("reference/loss_reference.py");
const K: i64 = 300;
const B: i64 = 6;
const NL: i64 = 3;
/// Tensors (probabilities, centres, gradients): max |diff|.
const TOL: f64 = 1e-5;

/// Runs the reference script once for all tests of this file; returns its output file.
fn reference_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = scratch("loss_parity");
        run_python_with(SCRIPT, &[dir.as_os_str()]);
        dir.join("loss.safetensors")
    })
}

thread_local! {
    /// The reference outputs (tensors are not `Sync`: one copy per test thread).
    static REFERENCE: HashMap<String, Tensor> = Tensor::read_safetensors(reference_file())
        .unwrap()
        .into_iter()
        .collect();
}

/// A fresh copy of the reference entry `key`.
fn r(key: &str) -> Tensor {
    REFERENCE.with(|m| {
        m.get(key)
            .unwrap_or_else(|| panic!("{key} missing from the reference output"))
            .copy()
    })
}

fn scalar(key: &str) -> f64 {
    r(key).double_value(&[0])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Checks a tensor against the reference entry `key`; returns the max |diff|.
fn check(what: &str, ours: &Tensor, key: &str) -> f64 {
    let d = max_diff(ours, &r(key));
    assert!(d <= TOL, "{what}: max |diff| {d:e} against {key}");
    d
}

/// Checks a scalar loss against the reference entry `key` within 1e-5 relative (1e-5 absolute
/// below 1; these losses reach ~100, where one fp32 ulp is 7.6e-6); returns |diff|.
fn check_loss(what: &str, ours: &Tensor, key: &str) -> f64 {
    let (a, b) = (ours.double_value(&[]), scalar(key));
    let d = (a - b).abs();
    assert!(
        d <= TOL * b.abs().max(1.0),
        "{what}: {a} vs reference {b} (|diff| {d:e})"
    );
    d
}

fn student(key: &str) -> Tensor {
    r(key).set_requires_grad(true)
}

fn grad(t: &Tensor) -> Tensor {
    t.grad()
}

/// The DINO local and global losses as SSLMetaArch computes them from a teacher `[2, B, K]`.
fn dino_losses(loss: &DinoLoss, p: &Tensor, s_g: &Tensor, s_l: &Tensor) -> (Tensor, Tensor) {
    let local = loss.forward(&s_l.chunk(NL, 0), &p.unbind(0));
    let global = loss.forward(std::slice::from_ref(s_g), &[p.flatten(0, 1)]);
    (local, global)
}

#[test]
fn dino_loss_with_centering_over_three_steps_matches_reference() {
    let mut loss = DinoLoss::new(K, Device::Cpu);
    let mut worst = [0f64; 4];
    for k in 1..=3 {
        let temp = scalar(&format!("dino_c{k}_temp"));
        let teacher = r(&format!("dino_c{k}_teacher"));
        let p = loss.softmax_center_teacher(&teacher, temp).view([2, -1, K]);
        worst[0] = worst[0].max(check("centre", loss.center(), &format!("dino_c{k}_center")));
        loss.update_center(&teacher, None);
        worst[1] = worst[1].max(check("teacher softmax", &p, &format!("dino_c{k}_p")));
        let s_g = student(&format!("dino_c{k}_s_g"));
        let s_l = student(&format!("dino_c{k}_s_l"));
        let (local, global) = dino_losses(&loss, &p, &s_g, &s_l);
        (&local + &global).backward();
        worst[2] = worst[2]
            .max(check_loss("local", &local, &format!("dino_c{k}_local")))
            .max(check_loss("global", &global, &format!("dino_c{k}_global")));
        worst[3] = worst[3]
            .max(check(
                "grad global",
                &grad(&s_g),
                &format!("dino_c{k}_grad_g"),
            ))
            .max(check(
                "grad local",
                &grad(&s_l),
                &format!("dino_c{k}_grad_l"),
            ));
    }
    loss.apply_center_update();
    worst[0] = worst[0].max(check("final centre", loss.center(), "dino_center_final"));
    eprintln!(
        "DINO centering (3 steps): centre {:.1e}, softmax {:.1e}, losses {:.1e}, grads {:.1e}",
        worst[0], worst[1], worst[2], worst[3]
    );
    // The second step's centre is 0.1 · mean of the first teacher batch (the delayed update).
    let first_mean = r("dino_c1_teacher").mean_dim(0, true, Kind::Float) * 0.1;
    assert!(max_diff(&first_mean, &r("dino_c2_center")) < 1e-6);
}

#[test]
fn dino_loss_with_sinkhorn_knopp_matches_reference() {
    let loss = DinoLoss::new(K, Device::Cpu);
    let p = loss
        .sinkhorn_knopp_teacher(&r("dino_sk_teacher"), 0.06, 3, None)
        .view([2, -1, K]);
    let dp = check("SK assignments", &p, "dino_sk_p");
    let s_g = student("dino_sk_s_g");
    let s_l = student("dino_sk_s_l");
    let (local, global) = dino_losses(&loss, &p, &s_g, &s_l);
    (&local + &global).backward();
    let dl = check_loss("local", &local, "dino_sk_local").max(check_loss(
        "global",
        &global,
        "dino_sk_global",
    ));
    let dg = check("grad global", &grad(&s_g), "dino_sk_grad_g").max(check(
        "grad local",
        &grad(&s_l),
        "dino_sk_grad_l",
    ));
    eprintln!("DINO Sinkhorn-Knopp: assignments {dp:.1e}, losses {dl:.1e}, grads {dg:.1e}");
}

fn masks(key: &str) -> Tensor {
    r(key).to_kind(Kind::Bool)
}

#[test]
fn ibot_loss_with_centering_over_three_steps_matches_reference() {
    let mut loss = IbotPatchLoss::new(K, Device::Cpu);
    let mut worst = [0f64; 4];
    for k in 1..=3 {
        let temp = scalar(&format!("ibot_c{k}_temp"));
        let teacher = r(&format!("ibot_c{k}_teacher"));
        let m = masks(&format!("ibot_c{k}_masks"));
        let n = teacher.size()[0];
        assert_eq!(n, m.sum(Kind::Int64).int64_value(&[]));
        // As SSLMetaArch: the masked scores as [1, n, K].
        let p = loss
            .softmax_center_teacher(&teacher.unsqueeze(0), temp)
            .squeeze_dim(0);
        worst[0] = worst[0].max(check("centre", loss.center(), &format!("ibot_c{k}_center")));
        loss.update_center(&teacher.unsqueeze(0), None);
        worst[1] = worst[1].max(check("teacher softmax", &p, &format!("ibot_c{k}_p")));
        let s = student(&format!("ibot_c{k}_s"));
        let w = r(&format!("ibot_c{k}_weight"));
        let l = loss.forward_masked(&s, &p, &m, Some(n), Some(&w));
        l.backward();
        let default = loss.forward_masked(&s, &p, &m, None, None);
        worst[2] = worst[2]
            .max(check_loss("loss", &l, &format!("ibot_c{k}_loss")))
            .max(check_loss(
                "loss (default weights)",
                &default,
                &format!("ibot_c{k}_default"),
            ));
        worst[3] = worst[3].max(check("grad", &grad(&s), &format!("ibot_c{k}_grad")));
    }
    loss.apply_center_update();
    worst[0] = worst[0].max(check("final centre", loss.center(), "ibot_center_final"));
    eprintln!(
        "iBOT centering (3 steps): centre {:.1e}, softmax {:.1e}, losses {:.1e}, grads {:.1e}",
        worst[0], worst[1], worst[2], worst[3]
    );
}

#[test]
fn ibot_loss_with_sinkhorn_knopp_matches_reference() {
    let loss = IbotPatchLoss::new(K, Device::Cpu);
    let teacher = r("ibot_sk_teacher");
    let n = teacher.size()[0];
    let p = loss.sinkhorn_knopp_teacher(&teacher, 0.06, n, 3, None);
    let dp = check("SK assignments", &p, "ibot_sk_p");
    let s = student("ibot_sk_s");
    let l = loss.forward_masked(
        &s,
        &p,
        &masks("ibot_sk_masks"),
        Some(n),
        Some(&r("ibot_sk_weight")),
    );
    l.backward();
    let dl = check_loss("loss", &l, "ibot_sk_loss");
    let dg = check("grad", &grad(&s), "ibot_sk_grad");
    eprintln!("iBOT Sinkhorn-Knopp: assignments {dp:.1e}, loss {dl:.1e}, grad {dg:.1e}");
}

#[test]
fn koleo_loss_matches_reference() {
    let koleo = KoLeoLoss::new();
    let x = student("koleo_x");
    let l = koleo.forward(&x);
    l.backward();
    let dl = check_loss("loss", &l, "koleo_loss");
    let dg = check("grad", &grad(&x), "koleo_grad");
    let dup = r("koleo_dup_x");
    let ld = koleo.forward(&dup);
    let dd = check_loss("loss with a duplicated row", &ld, "koleo_dup_loss");
    assert!(ld.double_value(&[]).is_finite());
    eprintln!(
        "KoLeo: loss {dl:.1e}, grad {dg:.1e}; duplicated row {:.4} ({dd:.1e}); reference in fp16: {}",
        ld.double_value(&[]),
        REFERENCE.with(|m| m
            .get("koleo_dup_fp16")
            .map_or("n/a".into(), |t| t.double_value(&[0]).to_string())),
    );
}

#[test]
fn koleo_on_fp16_tokens_stays_finite() {
    let koleo = KoLeoLoss::new();
    tch::manual_seed(3);
    let x = Tensor::randn([8, 64], (Kind::Float, Device::Cpu));
    // Two identical tokens: the reference's fp16 path gives log(0) = -inf here.
    let x = Tensor::cat(&[x.narrow(0, 0, 7), x.narrow(0, 2, 1)], 0);
    let half = x.to_kind(Kind::Half).set_requires_grad(true);
    let l = koleo.forward(&half);
    assert_eq!(l.kind(), Kind::Float);
    let v = l.double_value(&[]);
    assert!(v.is_finite(), "KoLeo on fp16 tokens: {v}");
    // The same as fp32 on the fp16-rounded tokens: the loss upcasts first.
    let f32_value = koleo.forward(&half.to_kind(Kind::Float)).double_value(&[]);
    assert_eq!(v, f32_value);
    l.backward();
    let g = half.grad();
    assert_eq!(g.kind(), Kind::Half);
    assert!(g.to_kind(Kind::Float).isfinite().all().int64_value(&[]) == 1);
    // A fp16 teacher/student through the other losses gives fp32 results as well.
    let mut dino = DinoLoss::new(K, Device::Cpu);
    let t = Tensor::randn([2 * B, K], (Kind::Half, Device::Cpu));
    let p = dino.softmax_center_teacher(&t, 0.04);
    assert_eq!(p.kind(), Kind::Float);
    dino.update_center(&t, None);
    dino.apply_center_update();
    assert_eq!(dino.center().kind(), Kind::Float);
    let l = dino.forward(&[t.shallow_clone()], &[p]);
    assert_eq!(l.kind(), Kind::Float);
    assert!(l.double_value(&[]).is_finite());
}

/// A stand-in for a two-process group in which the other process holds exactly the same
/// tensors: every sum doubles, every max is unchanged.
struct MirroredPair;

impl AllReduce for MirroredPair {
    fn world_size(&self) -> i64 {
        2
    }
    fn all_reduce_sum(&self, t: &mut Tensor) {
        *t = &*t * 2;
    }
    fn all_reduce_max(&self, _t: &mut Tensor) {}
}

#[test]
fn reduce_hook_behaves_as_the_concatenated_batch() {
    tch::manual_seed(11);
    let t = Tensor::randn([2 * B, K], (Kind::Float, Device::Cpu)) * 0.7;
    let both = Tensor::cat(&[&t, &t], 0);
    let first_half = |q: Tensor| q.narrow(0, 0, 2 * B);

    // Sinkhorn-Knopp: this process's rows of SK over both processes' samples.
    let dino = DinoLoss::new(K, Device::Cpu);
    let d = max_diff(
        &dino.sinkhorn_knopp_teacher(&t, 0.05, 3, Some(&MirroredPair)),
        &first_half(dino.sinkhorn_knopp_teacher(&both, 0.05, 3, None)),
    );
    assert!(d <= 1e-6, "DINO SK with a mirrored process: {d:e}");
    let ibot = IbotPatchLoss::new(K, Device::Cpu);
    let d = max_diff(
        &ibot.sinkhorn_knopp_teacher(&t, 0.05, 2 * B, 3, Some(&MirroredPair)),
        &first_half(ibot.sinkhorn_knopp_teacher(&both, 0.05, 4 * B, 3, None)),
    );
    assert!(d <= 1e-6, "iBOT SK with a mirrored process: {d:e}");

    // Centres: the global mean equals the local one when both processes agree.
    let (mut a, mut b) = (DinoLoss::new(K, Device::Cpu), DinoLoss::new(K, Device::Cpu));
    a.update_center(&t, Some(&MirroredPair));
    b.update_center(&both, None);
    assert_eq!(a.pending_center_update().unwrap().1, 4 * B);
    a.apply_center_update();
    b.apply_center_update();
    assert!(max_diff(a.center(), b.center()) <= 1e-7);
    let (mut a, mut b) = (
        IbotPatchLoss::new(K, Device::Cpu),
        IbotPatchLoss::new(K, Device::Cpu),
    );
    a.update_center(&t, Some(&MirroredPair));
    b.update_center(&t, None);
    assert_eq!(a.pending_center_update().unwrap().1, 2);
    a.apply_center_update();
    b.apply_center_update();
    assert!(max_diff(a.center(), b.center()) <= 1e-7);
}

#[test]
fn center_round_trips_through_a_checkpoint() {
    tch::manual_seed(5);
    let t1 = Tensor::randn([2 * B, K], (Kind::Float, Device::Cpu));
    let t2 = Tensor::randn([2 * B, K], (Kind::Float, Device::Cpu));
    let mut a = DinoLoss::new(K, Device::Cpu);
    let _ = a.softmax_center_teacher(&t1, 0.04);
    a.update_center(&t1, None);
    let _ = a.softmax_center_teacher(&t2, 0.04);
    a.update_center(&t2, None);
    // "Save" the centre and the pending batch, "resume" in a fresh loss.
    let mut b = DinoLoss::new(K, Device::Cpu);
    b.set_center(&a.center().reshape([K]));
    let (sum, count) = a.pending_center_update().unwrap();
    b.set_pending_center_update(Some((sum.copy(), count)));
    assert_eq!(b.center().size(), [1, K]);
    let pa = a.softmax_center_teacher(&t1, 0.05);
    let pb = b.softmax_center_teacher(&t1, 0.05);
    assert_eq!(max_diff(&pa, &pb), 0.0);
    assert_eq!(max_diff(a.center(), b.center()), 0.0);
    assert!(a.pending_center_update().is_none());
}
