//! The probe's optimizer step, learning-rate schedules and k-NN against the references:
//! torch.optim.SGD (momentum, weight decay) on the same head, features and labels; timm's
//! CosineLRScheduler (PASSL's TimmCosine) and torch's CosineAnnealingLR; dinov2's KnnModule.

mod common;
use common::*;
use std::collections::HashMap;
use std::sync::OnceLock;
use tch::{Kind, Tensor, nn};
use trainer::knn::knn_scores;
use trainer::optim::Sgd;
use trainer::schedule::Cosine;

/// The reference file, made once per test binary; each test reads its own tensors (tch
/// tensors cannot be shared between test threads).
fn reference_path() -> &'static std::path::Path {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = scratch("probe_parity");
        run_python_with(
            include_str!("reference/probe_reference.py"),
            &[dir.as_os_str()],
        );
        dir.join("probe.safetensors")
    })
}

fn r(k: &str) -> Tensor {
    thread_local! {
        static M: HashMap<String, Tensor> =
            Tensor::read_safetensors(reference_path()).unwrap().into_iter().collect();
    }
    M.with(|m| m[k].shallow_clone())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn sgd_momentum_steps_match_torch() {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let head = model::heads::LinearHead::new(vs.root(), 96, 10);
    tch::no_grad(|| {
        head.linear.ws.shallow_clone().copy_(&r("sgd_w0"));
        head.linear
            .bs
            .as_ref()
            .unwrap()
            .shallow_clone()
            .copy_(&r("sgd_b0"));
    });
    let mut params = vec![
        head.linear.ws.shallow_clone(),
        head.linear.bs.as_ref().unwrap().shallow_clone(),
    ];
    let mut sgd = Sgd::new(&params, 0.9, 1e-4);
    let (x, y) = (r("sgd_features"), r("sgd_labels"));
    for (step, lr) in [(1, 0.1), (2, 0.1), (3, 0.05)] {
        let loss = head.forward(&x).cross_entropy_for_logits(&y);
        assert!(
            (loss.double_value(&[]) - r(&format!("sgd_loss{step}")).double_value(&[0])).abs()
                < 1e-6
        );
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        sgd.step(&mut params, &grads, &[lr, lr]).unwrap();
        let dw = max_diff(&params[0], &r(&format!("sgd_w{step}")));
        let db = max_diff(&params[1], &r(&format!("sgd_b{step}")));
        eprintln!("SGD step {step}: weight {dw:.2e}, bias {db:.2e}");
        assert!(dw <= 1e-6 && db <= 1e-6, "step {step}: {dw} {db}");
    }
}

#[test]
fn schedules_match_timm_and_torch() {
    let check = |name: &str, s: Cosine, n: usize| {
        let want: Vec<f64> = Vec::try_from(r(name)).unwrap();
        assert_eq!(want.len(), n);
        for (t, w) in want.iter().enumerate() {
            let got = s.at(t as u64);
            assert!(
                (got - w).abs() <= 1e-12 * w.abs().max(1e-3),
                "{name} at {t}: {got} vs {w}"
            );
        }
    };
    check("timm_cosine", Cosine::new(0.01, 10), 12);
    check(
        "timm_cosine_warmup",
        Cosine {
            warmup: 3,
            warmup_start: 1e-4,
            eta_min: 1e-5,
            ..Cosine::new(0.01, 10)
        },
        12,
    );
    check("annealing", Cosine::new(0.02, 50), 50);
    // PASSL's per-epoch values from the reference doc: 0.01, 0.00976, ..., 0.000245.
    let s = Cosine::new(0.01, 10);
    assert!((s.at(1) - 0.009755).abs() < 1e-6 && (s.at(9) - 0.000245).abs() < 1e-6);
}

#[test]
fn knn_matches_the_dinov2_module() {
    let ks = [1, 3, 10];
    let scores = knn_scores(
        &r("knn_train"),
        &r("knn_train_labels"),
        &r("knn_query"),
        &ks,
        0.07,
        7,
    );
    for (k, s) in ks.iter().zip(&scores) {
        let d = max_diff(&s.to_kind(Kind::Float), &r(&format!("knn_probs_{k}")));
        eprintln!("k-NN k={k}: max |diff| {d:.2e}");
        assert!(d <= 1e-6, "k={k}: {d}");
    }
}
