//! libtorch's multi-tensor (`_foreach_*`) and fused kernels, through `csrc/foreach.cpp` (tch has
//! no call for operators on tensor lists). Each function runs the ATen operators of the PyTorch
//! code it names, in the same order with the same scalars: the same numbers as PyTorch, with one
//! dispatch per list instead of one per tensor (on CUDA, a few kernel launches per list; on the
//! CPU libtorch loops over the tensors in C++).
//!
//! An empty list is a no-op. Tensors of one call
//! must share device and dtype (PyTorch groups them the same way first).

use anyhow::{Result, bail, ensure};
use std::ffi::{CStr, c_char, c_int, c_void};
use tch::Tensor;

unsafe extern "C" {
    fn dinov2_foreach_ema(
        teacher: *mut *mut c_void,
        student: *mut *mut c_void,
        n: c_int,
        m: f64,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
    fn dinov2_foreach_adamw(
        params: *mut *mut c_void,
        grads: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        steps: *const f64,
        n: c_int,
        lr: f64,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
    fn dinov2_fused_adamw(
        params: *mut *mut c_void,
        grads: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        state_steps: *mut *mut c_void,
        n: c_int,
        lr: f64,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
    fn dinov2_foreach_norm(
        tensors: *mut *mut c_void,
        n: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
    fn dinov2_foreach_mul_tensor(
        tensors: *mut *mut c_void,
        n: c_int,
        factor: *mut c_void,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
    fn dinov2_amp_unscale(
        grads: *mut *mut c_void,
        n: c_int,
        found_inf: *mut c_void,
        inv_scale: *mut c_void,
        err: *mut c_char,
        en: usize,
    ) -> c_int;
}

fn ptrs(ts: &[&Tensor]) -> Vec<*mut c_void> {
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

/// Runs one shim call with an error buffer; the message names `what`.
fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = [0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) != 0 {
        // SAFETY: the shim wrote a NUL-terminated message (snprintf).
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        let msg = msg.lines().next().unwrap_or_default().to_string();
        bail!("{what}: {msg}");
    }
    Ok(())
}

fn same_len(what: &str, n: usize, others: &[usize]) -> Result<c_int> {
    ensure!(
        others.iter().all(|&k| k == n),
        "{what}: lists of different lengths ({n} and {others:?})"
    );
    c_int::try_from(n).map_err(|_| anyhow::anyhow!("{what}: {n} tensors"))
}

/// dinov2's teacher EMA (`SSLMetaArch.update_teacher`): `_foreach_mul_(teacher, m)` then
/// `_foreach_add_(teacher, student, alpha=1 - m)`.
pub fn ema_(teacher: &[&Tensor], student: &[&Tensor], m: f64) -> Result<()> {
    let n = same_len("EMA", teacher.len(), &[student.len()])?;
    if n == 0 {
        return Ok(());
    }
    let (mut t, mut s) = (ptrs(teacher), ptrs(student));
    // SAFETY: every pointer is a live tensor of this call's slices; lengths match `n`.
    call("teacher EMA", |e, en| unsafe {
        dinov2_foreach_ema(t.as_mut_ptr(), s.as_mut_ptr(), n, m, e, en)
    })
}

/// The hyper-parameters of one AdamW call (one parameter group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWArgs {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// The tensors of one AdamW call: parameters, their gradients and moments.
pub struct AdamWLists<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
}

impl AdamWLists<'_> {
    fn check(&self, what: &str) -> Result<c_int> {
        same_len(
            what,
            self.params.len(),
            &[
                self.grads.len(),
                self.exp_avgs.len(),
                self.exp_avg_sqs.len(),
            ],
        )
    }
}

/// `torch.optim.adam._multi_tensor_adam` (AdamW, `foreach=True`, `capturable=False`) for one
/// group: `steps[i]` is parameter `i`'s step count including this step.
pub fn adamw_foreach(l: &AdamWLists, steps: &[f64], a: AdamWArgs) -> Result<()> {
    let n = l.check("AdamW")?;
    if n == 0 {
        return Ok(());
    }
    ensure!(
        steps.len() == l.params.len(),
        "AdamW: one step count per parameter"
    );
    let (mut p, mut g, mut m, mut v) = (
        ptrs(l.params),
        ptrs(l.grads),
        ptrs(l.exp_avgs),
        ptrs(l.exp_avg_sqs),
    );
    // SAFETY: live tensors; `steps` has `n` entries.
    call("AdamW (foreach)", |e, en| unsafe {
        dinov2_foreach_adamw(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            steps.as_ptr(),
            n,
            a.lr,
            a.weight_decay,
            a.beta1,
            a.beta2,
            a.eps,
            e,
            en,
        )
    })
}

/// `torch.optim.adam._fused_adam` (AdamW, `fused=True`): one kernel per tensor. `state_steps`
/// are float32 0-dim tensors on the parameters' device with the count before this step; they
/// are incremented.
pub fn adamw_fused(l: &AdamWLists, state_steps: &[&Tensor], a: AdamWArgs) -> Result<()> {
    let n = l.check("fused AdamW")?;
    if n == 0 {
        return Ok(());
    }
    ensure!(
        state_steps.len() == l.params.len(),
        "fused AdamW: one step tensor per parameter"
    );
    let (mut p, mut g, mut m, mut v, mut s) = (
        ptrs(l.params),
        ptrs(l.grads),
        ptrs(l.exp_avgs),
        ptrs(l.exp_avg_sqs),
        ptrs(state_steps),
    );
    // SAFETY: live tensors, `n` of each.
    call("AdamW (fused)", |e, en| unsafe {
        dinov2_fused_adamw(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            s.as_mut_ptr(),
            n,
            a.lr,
            a.weight_decay,
            a.beta1,
            a.beta2,
            a.eps,
            e,
            en,
        )
    })
}

/// `torch._foreach_norm(tensors, 2)`: the 2-norm of each tensor (0-dim, in its dtype).
pub fn norms(tensors: &[&Tensor]) -> Result<Vec<Tensor>> {
    let n = same_len("norms", tensors.len(), &[])?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut t = ptrs(tensors);
    let mut out: Vec<*mut c_void> = vec![std::ptr::null_mut(); tensors.len()];
    // SAFETY: live tensors; `out` has room for `n` pointers, which the shim fills with new
    // tensors on success only.
    call("gradient norms", |e, en| unsafe {
        dinov2_foreach_norm(t.as_mut_ptr(), n, out.as_mut_ptr(), e, en)
    })?;
    // SAFETY: each pointer is a heap `at::Tensor` the shim allocated for us to own (tch frees
    // it on drop).
    Ok(out
        .into_iter()
        .map(|p| unsafe { Tensor::from_ptr(p as *mut torch_sys::C_tensor) })
        .collect())
}

/// `torch._foreach_mul_(tensors, factor)` with a 0-dim tensor factor.
pub fn mul_tensor_(tensors: &[&Tensor], factor: &Tensor) -> Result<()> {
    let n = same_len("mul", tensors.len(), &[])?;
    if n == 0 {
        return Ok(());
    }
    let mut t = ptrs(tensors);
    // SAFETY: live tensors.
    call("scaling gradients", |e, en| unsafe {
        dinov2_foreach_mul_tensor(t.as_mut_ptr(), n, factor.as_ptr() as *mut c_void, e, en)
    })
}

/// `torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)`: every
/// gradient multiplied by `inv_scale` (float32, 1 element); `found_inf` (float32, 1 element)
/// set to 1 when any gradient holds an inf or NaN, left alone otherwise.
pub fn amp_unscale_(grads: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let n = same_len("unscale", grads.len(), &[])?;
    if n == 0 {
        return Ok(());
    }
    let mut g = ptrs(grads);
    // SAFETY: live tensors.
    call("unscaling gradients", |e, en| unsafe {
        dinov2_amp_unscale(
            g.as_mut_ptr(),
            n,
            found_inf.as_ptr() as *mut c_void,
            inv_scale.as_ptr() as *mut c_void,
            e,
            en,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn ema_and_norms_equal_the_per_tensor_operators() {
        let t = [
            Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu)),
            Tensor::randn([7], (Kind::Float, tch::Device::Cpu)),
        ];
        let s = [
            Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu)),
            Tensor::randn([7], (Kind::Float, tch::Device::Cpu)),
        ];
        let expect: Vec<Tensor> = t
            .iter()
            .zip(&s)
            .map(|(t, s)| (t * 0.9).g_add_(&s.g_mul_scalar(1.0 - 0.9)))
            .collect();
        let tr: Vec<&Tensor> = t.iter().collect();
        ema_(&tr, &s.iter().collect::<Vec<_>>(), 0.9).unwrap();
        for (a, b) in t.iter().zip(&expect) {
            assert!(a.allclose(b, 1e-6, 1e-7, false));
        }
        let n = norms(&tr).unwrap();
        for (x, t) in n.iter().zip(&t) {
            assert_eq!(x.double_value(&[]), t.norm().double_value(&[]));
        }
        assert!(norms(&[]).unwrap().is_empty());
        let bad = ema_(&tr, &[&s[1], &s[0]], 0.5).unwrap_err().to_string();
        assert!(bad.contains("teacher EMA"), "{bad}");
    }
}
