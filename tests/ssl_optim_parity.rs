//! The SSL optimizer pieces against the references (reference §2.5): AdamW steps vs
//! torch.optim.AdamW with per-parameter lr / weight decay changing every step; dinov2's
//! parameter groups (`get_params_groups_with_decay`) on a small student built with our model
//! crate vs the dinov2 package's modules of the same sizes; clip_grad_norm_ per submodule vs
//! torch; the five schedules of `build_schedulers` and the sqrt_wrt_1024 lr vs dinov2's code.

mod common;
use common::*;
use std::collections::HashMap;
use std::sync::OnceLock;
use tch::{Kind, Tensor, nn};
use trainer::optim::{
    AdamW, ParamGroup, apply_schedules, clip_grad_norm, clip_grad_norm_by_submodule,
    student_param_groups, submodule_param_groups,
};
use trainer::ssl::schedules::{CosineScheduler, SslScheduleParams, SslSchedules, sqrt_wrt_1024};

/// The reference directory, made once per test binary; each test reads its own tensors (tch
/// tensors cannot be shared between test threads).
fn reference_dir() -> &'static std::path::Path {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = scratch("ssl_optim_parity");
        run_python_with(
            include_str!("reference/ssl_optim_reference.py"),
            &[dir.as_os_str()],
        );
        dir
    })
}

fn r(k: &str) -> Tensor {
    thread_local! {
        static M: HashMap<String, Tensor> =
            Tensor::read_safetensors(reference_dir().join("ssl_optim.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
    }
    M.with(|m| {
        m.get(k)
            .unwrap_or_else(|| panic!("no reference tensor {k}"))
            .shallow_clone()
    })
}

fn json() -> &'static serde_json::Value {
    static J: OnceLock<serde_json::Value> = OnceLock::new();
    J.get_or_init(|| {
        let s = std::fs::read_to_string(reference_dir().join("ssl_optim.json")).unwrap();
        serde_json::from_str(&s).unwrap()
    })
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

const NAMES: [&str; 6] = ["g", "w1", "b1", "w2", "b2", "e"];

/// The reference MLP: `x * g -> Linear(w1, b1) -> GELU -> Linear(w2, b2) (+ e)`, cross-entropy.
fn mlp_loss(p: &[Tensor], x: &Tensor, y: &Tensor, use_e: bool) -> Tensor {
    let h = (x * &p[0])
        .linear(&p[1], Some(&p[2]))
        .gelu("none")
        .linear(&p[3], Some(&p[4]));
    let logits = if use_e { h + &p[5] } else { h };
    logits.cross_entropy_for_logits(y)
}

fn init_params() -> Vec<Tensor> {
    NAMES
        .iter()
        .map(|k| r(&format!("adamw_init_{k}")).set_requires_grad(true))
        .collect()
}

#[test]
fn adamw_steps_match_torch() {
    let (worst, worst_state) = adamw_against("adamw_", false);
    eprintln!(
        "AdamW vs torch foreach=False: params max |diff| {worst:.2e}, moments {worst_state:.2e}"
    );
}

/// Our multi-tensor step is torch's `_multi_tensor_adam`, operator for operator: on the CPU it
/// equals torch's `foreach=True` (and its single-tensor path) bit for bit.
#[test]
fn adamw_multi_tensor_step_equals_torch_foreach_exactly() {
    let (worst, worst_state) = adamw_against("adamw_foreach_", false);
    assert_eq!((worst, worst_state), (0.0, 0.0));
}

/// `AdamW::fused` runs torch's fused kernel (`fused=True`): the same numbers as torch's.
#[test]
fn adamw_fused_step_equals_torch_fused_exactly() {
    let (worst, worst_state) = adamw_against("adamw_fused_", true);
    assert_eq!((worst, worst_state), (0.0, 0.0));
}

/// Five steps with changing per-parameter lr / wd, a resume after the third, against the
/// reference run stored under `prefix`; returns the worst parameter and moment differences.
fn adamw_against(prefix: &str, fused: bool) -> (f64, f64) {
    let (x, y) = (r("adamw_x"), r("adamw_y"));
    let lr: Vec<Vec<f64>> = Vec::try_from(r("adamw_lr")).unwrap();
    let wd: Vec<Vec<f64>> = Vec::try_from(r("adamw_wd")).unwrap();
    let uses_e: Vec<bool> = Vec::try_from(r("adamw_uses_e")).unwrap();
    let params = init_params();
    let new = |params: &[Tensor]| {
        let mut o = AdamW::new(params);
        o.fused = fused;
        o
    };
    let mut opt = new(&params);
    let mut worst = 0f64;
    for step in 0..lr.len() {
        // A resume in the middle: the state goes out as named tensors and into a new optimizer.
        if step == 3 {
            let state = opt.state_tensors(&NAMES).unwrap();
            let mut fresh = new(&params);
            fresh.load_state_tensors(&NAMES, &state).unwrap();
            opt = fresh;
        }
        let loss = mlp_loss(&params, &x, &y, uses_e[step]);
        let want_loss = r(&format!("{prefix}loss{}", step + 1)).double_value(&[0]);
        assert!(
            (loss.double_value(&[]) - want_loss).abs() < 1e-6,
            "step {}: loss {} vs {want_loss}",
            step + 1,
            loss.double_value(&[])
        );
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        assert_eq!(
            grads[5].defined(),
            uses_e[step],
            "grad of e on step {}",
            step + 1
        );
        opt.step(&params, &grads, &lr[step], &wd[step]).unwrap();
        for (k, p) in NAMES.iter().zip(&params) {
            let d = max_diff(p, &r(&format!("{prefix}{k}_{}", step + 1)));
            worst = worst.max(d);
            assert!(d <= 1e-6, "step {} {k}: max |diff| {d}", step + 1);
        }
    }
    let mut worst_state = 0f64;
    for (i, k) in NAMES.iter().enumerate() {
        let da = max_diff(&opt.exp_avg[i], &r(&format!("{prefix}exp_avg_{k}")));
        let dq = max_diff(&opt.exp_avg_sq[i], &r(&format!("{prefix}exp_avg_sq_{k}")));
        worst_state = worst_state.max(da).max(dq);
        assert!(
            da <= 1e-6 && dq <= 1e-6,
            "{k}: exp_avg {da}, exp_avg_sq {dq}"
        );
        let steps = r(&format!("{prefix}step_{k}")).double_value(&[0]);
        assert_eq!(opt.steps[i] as f64, steps, "{k}: step count");
    }
    assert_eq!(
        opt.steps[5], 4,
        "e skipped the step where it had no gradient"
    );
    (worst, worst_state)
}

/// The teacher EMA is dinov2's `update_teacher` operator for operator: bit for bit.
#[test]
fn teacher_ema_equals_dinov2s_foreach_update_exactly() {
    let m = r("ema_m").double_value(&[0]);
    let n = 4; // the reference's four shapes
    let teacher: Vec<Tensor> = (0..n)
        .map(|i| r(&format!("ema_teacher_{i}")).copy())
        .collect();
    let student: Vec<Tensor> = (0..n).map(|i| r(&format!("ema_student_{i}"))).collect();
    model::foreach::ema_(
        &teacher.iter().collect::<Vec<_>>(),
        &student.iter().collect::<Vec<_>>(),
        m,
    )
    .unwrap();
    for (i, t) in teacher.iter().enumerate() {
        assert_eq!(max_diff(t, &r(&format!("ema_out_{i}"))), 0.0, "tensor {i}");
    }
}

#[test]
fn adamw_state_round_trips_through_safetensors() {
    let (x, y) = (r("adamw_x"), r("adamw_y"));
    let params = init_params();
    let mut opt = AdamW::new(&params);
    let loss = mlp_loss(&params, &x, &y, true);
    let grads = Tensor::run_backward(&[&loss], &params, false, false);
    opt.step(&params, &grads, &[1e-3; 6], &[0.04; 6]).unwrap();
    let path = scratch("ssl_optim_state").join("adamw.safetensors");
    Tensor::write_safetensors(&opt.state_tensors(&NAMES).unwrap(), &path).unwrap();
    let back = Tensor::read_safetensors(&path).unwrap();
    let mut fresh = AdamW::new(&params);
    fresh.load_state_tensors(&NAMES, &back).unwrap();
    assert_eq!(fresh.steps, opt.steps);
    for i in 0..NAMES.len() {
        assert!(fresh.exp_avg[i].equal(&opt.exp_avg[i]));
        assert!(fresh.exp_avg_sq[i].equal(&opt.exp_avg_sq[i]));
    }
    // torch's layout: the step as a float32 scalar.
    let mut torch_like: Vec<(String, Tensor)> = back
        .into_iter()
        .map(|(k, v)| {
            let v = if k.ends_with(".step") {
                v.to_kind(Kind::Float)
            } else {
                v
            };
            (k, v)
        })
        .collect();
    fresh.load_state_tensors(&NAMES, &torch_like).unwrap();
    assert_eq!(fresh.steps, opt.steps);
    torch_like.retain(|(k, _)| k != "w1.exp_avg");
    let err = fresh.load_state_tensors(&NAMES, &torch_like).unwrap_err();
    assert!(err.to_string().contains("w1.exp_avg"), "{err}");
}

fn reference_groups(key: &str, prefix: Option<&str>) -> Vec<ParamGroup> {
    json()[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}"))
        .iter()
        .map(|d| {
            let name = d["name"].as_str().unwrap();
            let name = match prefix {
                Some(p) => format!("{p}.{}", name.split_once('.').unwrap().1),
                None => name.to_string(),
            };
            ParamGroup {
                name,
                lr_multiplier: d["lr_multiplier"].as_f64().unwrap(),
                wd_multiplier: d["wd_multiplier"].as_f64().unwrap(),
                is_last_layer: d["is_last_layer"].as_bool().unwrap(),
            }
        })
        .collect()
}

fn same_groups(got: &[ParamGroup], want: &[ParamGroup], what: &str) {
    let got: HashMap<&str, &ParamGroup> = got.iter().map(|g| (g.name.as_str(), g)).collect();
    let want_map: HashMap<&str, &ParamGroup> = want.iter().map(|g| (g.name.as_str(), g)).collect();
    let mut missing: Vec<_> = want_map.keys().filter(|k| !got.contains_key(*k)).collect();
    let mut extra: Vec<_> = got.keys().filter(|k| !want_map.contains_key(*k)).collect();
    missing.sort();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: names differ; missing {missing:?}, extra {extra:?}"
    );
    for w in want {
        // Exact: the multipliers are computed with the same f64 operations (pow, one product).
        assert_eq!(got[w.name.as_str()], w, "{what}");
    }
}

#[test]
fn param_groups_match_dinov2() {
    let mut cfg = model::VitConfig::arch("vit_small").unwrap();
    cfg.img_size = 32;
    cfg.patch_size = 8;
    cfg.embed_dim = 48;
    cfg.depth = 4;
    cfg.num_heads = 3;
    cfg.init_values = Some(1e-5);
    cfg.num_register_tokens = 2;
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _backbone = model::DinoVisionTransformer::new(vs.root() / "backbone", &cfg).unwrap();
    let head_cfg = model::heads::DinoHeadConfig {
        nlayers: 3,
        hidden_dim: 32,
        bottleneck_dim: 16,
        ..model::heads::DinoHeadConfig::new(48, 64)
    };
    let _dino = model::heads::DinoHead::new(vs.root() / "dino_head", &head_cfg);
    let _ibot = model::heads::DinoHead::new(vs.root() / "ibot_head", &head_cfg);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    let in_module = |m: &str| -> Vec<String> {
        names
            .iter()
            .filter(|n| n.starts_with(&format!("{m}.")))
            .cloned()
            .collect()
    };
    let mut checked = 0;
    for (decay, pe) in [(0.9, 0.2), (0.75, 0.5)] {
        let key = |case: &str| format!("groups_{case}_{decay}_{pe}");
        // One submodule at a time, as SSLMetaArch.get_params_groups calls the reference.
        let backbone = in_module("backbone");
        let got = submodule_param_groups(&backbone, 4, false, decay, pe).unwrap();
        same_groups(&got, &reference_groups(&key("flat"), None), "backbone");
        let head = in_module("dino_head");
        let got = submodule_param_groups(&head, 0, false, decay, pe).unwrap();
        same_groups(&got, &reference_groups(&key("head"), None), "dino_head");
        // The whole student at once: the same values.
        let got = student_param_groups(&names, 4, false, decay, pe).unwrap();
        let mut want = reference_groups(&key("flat"), None);
        want.extend(reference_groups(&key("head"), None));
        want.extend(reference_groups(&key("head"), Some("ibot_head")));
        same_groups(&got, &want, "student");
        checked += got.len();
        // Chunked FSDP naming (blocks.<chunk>.<block>.), from the reference's own names.
        let want = reference_groups(&key("chunked"), None);
        let chunked: Vec<&str> = want.iter().map(|g| g.name.as_str()).collect();
        assert!(
            chunked
                .iter()
                .any(|n| n.starts_with("backbone.blocks.1.3."))
        );
        let got = submodule_param_groups(&chunked, 4, true, decay, pe).unwrap();
        same_groups(&got, &want, "chunked backbone");
        checked += got.len();
    }
    // The per-step values (apply_optim_scheduler).
    let groups = student_param_groups(&names, 4, false, 0.9, 0.2).unwrap();
    let (lr, wd) = apply_schedules(&groups, 1e-3, 0.04, 0.0);
    for ((g, lr), wd) in groups.iter().zip(&lr).zip(&wd) {
        let want_lr = if g.is_last_layer {
            0.0
        } else {
            1e-3 * g.lr_multiplier
        };
        assert_eq!(*lr, want_lr, "{}", g.name);
        assert_eq!(*wd, 0.04 * g.wd_multiplier, "{}", g.name);
    }
    eprintln!("param groups: {checked} parameters, all exact");
}

#[test]
fn clip_grad_norm_matches_torch_per_submodule() {
    let mut names = Vec::new();
    let mut grads = Vec::new();
    for (m, n) in [("backbone", 3), ("dino_head", 2), ("ibot_head", 1)] {
        for j in 0..n {
            names.push(format!("{m}.p{j}"));
            grads.push(r(&format!("clip_{m}_{j}")).copy());
        }
    }
    assert_eq!(grads.len(), 6);
    // An undefined gradient (a parameter backward did not reach) is left out.
    names.insert(1, "dino_head.unused".into());
    grads.insert(1, Tensor::new());
    let totals = clip_grad_norm_by_submodule(&names, &mut grads, 3.0).unwrap();
    assert_eq!(totals.len(), 3);
    let mut worst = 0f64;
    for (m, total) in &totals {
        let want = r(&format!("clip_{m}_total")).double_value(&[0]);
        let d = (total.double_value(&[]) - want).abs() / want;
        worst = worst.max(d);
        assert!(
            d <= 1e-6,
            "{m}: total norm {} vs {want}",
            total.double_value(&[])
        );
    }
    assert!(!grads[1].defined());
    for (n, g) in names.iter().zip(&grads) {
        if !g.defined() {
            continue;
        }
        let (m, j) = n.split_once(".p").unwrap();
        let d = max_diff(g, &r(&format!("clip_{m}_{j}_clipped")));
        worst = worst.max(d);
        assert!(d <= 1e-6, "{n}: clipped gradient max |diff| {d}");
    }
    // No gradients at all: total 0, nothing to do.
    let total = clip_grad_norm(&mut [Tensor::new()], 3.0).unwrap();
    assert_eq!(total.double_value(&[]), 0.0);
    eprintln!("clip_grad_norm: worst difference {worst:.2e}");
}

fn rel(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs().max(1e-300)
    }
}

#[test]
fn schedules_match_build_schedulers() {
    let j = json();
    let mut worst = 0f64;
    let mut count = 0usize;
    for case in ["default", "small", "edge"] {
        let c = &j[format!("sched_{case}")];
        let u = |k: &str| c[k].as_u64().unwrap();
        let f = |k: &str| c[k].as_f64().unwrap();
        let lr = sqrt_wrt_1024(f("base_lr"), u("batch"), u("world"));
        let want_lr = j[format!("lr_{case}")].as_f64().unwrap();
        assert!(rel(lr, want_lr) <= 1e-15, "{case}: lr {lr} vs {want_lr}");
        let s = SslSchedules::new(&SslScheduleParams {
            epochs: u("epochs"),
            official_epoch_length: u("epoch_len"),
            lr,
            min_lr: f("min_lr"),
            warmup_epochs: u("warmup_epochs"),
            weight_decay: f("weight_decay"),
            weight_decay_end: f("weight_decay_end"),
            momentum_teacher: f("momentum_teacher"),
            final_momentum_teacher: f("final_momentum_teacher"),
            warmup_teacher_temp: f("warmup_teacher_temp"),
            teacher_temp: f("teacher_temp"),
            warmup_teacher_temp_epochs: u("warmup_teacher_temp_epochs"),
            freeze_last_layer_epochs: u("freeze_last_layer_epochs"),
        })
        .unwrap();
        let mut case_worst = 0f64;
        for name in ["lr", "wd", "momentum", "teacher_temp", "last_layer_lr"] {
            let want: Vec<f64> = Vec::try_from(r(&format!("sched_{case}_{name}"))).unwrap();
            for (it, w) in want.iter().enumerate() {
                let v = s.at(it as u64);
                let got = match name {
                    "lr" => v.lr,
                    "wd" => v.wd,
                    "momentum" => v.momentum,
                    "teacher_temp" => v.teacher_temp,
                    _ => v.last_layer_lr,
                };
                let d = rel(got, *w);
                case_worst = case_worst.max(d);
                assert!(d <= 1e-12, "{case} {name} at {it}: {got} vs {w}");
            }
            count += want.len();
        }
        eprintln!("schedules {case}: worst relative difference {case_worst:.2e}");
        worst = worst.max(case_worst);
    }
    for case in ["wf", "w1"] {
        let c = &j[format!("cos_{case}")];
        let s = CosineScheduler::new(
            c["base_value"].as_f64().unwrap(),
            c["final_value"].as_f64().unwrap(),
            c["total_iters"].as_u64().unwrap(),
            c["warmup_iters"].as_u64().unwrap(),
            c["start_warmup_value"].as_f64().unwrap(),
            c["freeze_iters"].as_u64().unwrap_or(0),
        )
        .unwrap();
        let want: Vec<f64> = Vec::try_from(r(&format!("cos_{case}"))).unwrap();
        for (it, w) in want.iter().enumerate() {
            let d = rel(s.at(it as u64), *w);
            worst = worst.max(d);
            assert!(d <= 1e-12, "cos {case} at {it}: {} vs {w}", s.at(it as u64));
        }
        count += want.len();
    }
    eprintln!("schedules: {count} values, worst relative difference {worst:.2e}");
}
