//! Data-parallel collectives on the engine PyTorch itself uses: libtorch's c10d
//! (`TCPStore` rendezvous, `ProcessGroupGloo` on CPU, `ProcessGroupNCCL` on CUDA when built
//! with the NCCL headers), through a small C++ shim (`csrc/c10d_shim.cpp`). Every C++
//! exception comes back as an [`anyhow::Error`]; every collective has the group's timeout.

use anyhow::{Result, anyhow, bail};
use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::time::Duration;
use tch::Tensor;

unsafe extern "C" {
    fn dv2_c10d_free_str(s: *mut c_char);
    fn dv2_c10d_has_nccl() -> c_int;
    fn dv2_c10d_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        backend: c_int,
        timeout_ms: c_long,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_free(g: *mut c_void);
    fn dv2_c10d_allreduce(
        g: *mut c_void,
        ts: *mut *mut c_void,
        n: c_int,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_broadcast(
        g: *mut c_void,
        ts: *mut *mut c_void,
        n: c_int,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_allgather(
        g: *mut c_void,
        outs: *mut *mut c_void,
        world: c_int,
        input: *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_barrier(g: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn dv2_c10d_reducer_new(
        g: *mut c_void,
        ps: *mut *mut c_void,
        n: c_int,
        order: *const c_int,
        bucket_bytes: c_long,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_reducer_free(r: *mut c_void);
    fn dv2_c10d_reducer_arm(r: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn dv2_c10d_reducer_finish(
        r: *mut c_void,
        grads: *mut *mut c_void,
        n: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dv2_c10d_reducer_log(r: *mut c_void, what: c_int, out: *mut c_int, cap: c_int) -> c_int;
}

/// Which c10d backend carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors.
    Gloo,
    /// `ProcessGroupNCCL`: CUDA tensors (needs a build with NCCL headers).
    Nccl,
}

/// Whether this build has `ProcessGroupNCCL`.
pub fn has_nccl() -> bool {
    unsafe { dv2_c10d_has_nccl() != 0 }
}

/// The reduction of [`ProcessGroup::all_reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

/// One process's membership of a group of `world` processes.
pub struct ProcessGroup {
    raw: *mut c_void,
    rank: usize,
    world: usize,
    backend: Backend,
}

// SAFETY: c10d's process groups are used from one thread at a time here (`&mut self` on
// every collective); the handle itself may move between threads.
unsafe impl Send for ProcessGroup {}

fn check(rc: c_int, err: *mut c_char, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let msg = if err.is_null() {
        "unknown error".to_string()
    } else {
        let s = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { dv2_c10d_free_str(err) };
        s
    };
    // c10d messages carry a C++ backtrace after the first line or two; keep the message.
    let short: String = msg
        .lines()
        .take_while(|l| !l.starts_with("Exception raised from"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(anyhow!("{what}: {}", short.trim()))
}

fn ptrs(ts: &[&Tensor]) -> Vec<*mut c_void> {
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

impl ProcessGroup {
    /// Joins the group: rank 0 serves the `TCPStore` at `host:port`, the others connect to
    /// it; returns when all `world` processes are there (or fails after `timeout`).
    pub fn new(
        host: &str,
        port: u16,
        rank: usize,
        world: usize,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self> {
        if world == 0 || rank >= world {
            bail!("rank {rank} is not in a world of {world}");
        }
        let h =
            CString::new(host).map_err(|_| anyhow!("host name {host:?} contains a NUL byte"))?;
        let mut raw = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            dv2_c10d_new(
                h.as_ptr(),
                port as c_int,
                rank as c_int,
                world as c_int,
                match backend {
                    Backend::Gloo => 0,
                    Backend::Nccl => 1,
                },
                timeout.as_millis().min(c_long::MAX as u128) as c_long,
                &mut raw,
                &mut err,
            )
        };
        check(
            rc,
            err,
            &format!("joining the {backend:?} group at {host}:{port} as rank {rank} of {world}"),
        )?;
        Ok(Self {
            raw,
            rank,
            world,
            backend,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// In-place all-reduce of `tensors` (one coalesced collective when there are several;
    /// they must share dtype and device).
    pub fn all_reduce(&mut self, tensors: &[&Tensor], op: ReduceOp) -> Result<()> {
        if tensors.is_empty() {
            return Ok(());
        }
        let mut p = ptrs(tensors);
        let mut err = std::ptr::null_mut();
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        };
        let rc =
            unsafe { dv2_c10d_allreduce(self.raw, p.as_mut_ptr(), p.len() as c_int, op, &mut err) };
        check(
            rc,
            err,
            &format!(
                "all-reduce of {} tensors on rank {}",
                tensors.len(),
                self.rank
            ),
        )
    }

    /// In-place broadcast of each of `tensors` from `root`.
    pub fn broadcast(&mut self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let mut p = ptrs(tensors);
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            dv2_c10d_broadcast(
                self.raw,
                p.as_mut_ptr(),
                p.len() as c_int,
                root as c_int,
                &mut err,
            )
        };
        check(
            rc,
            err,
            &format!("broadcast from rank {root} on rank {}", self.rank),
        )
    }

    /// Every rank's `input`, in rank order.
    pub fn all_gather(&mut self, input: &Tensor) -> Result<Vec<Tensor>> {
        let outs: Vec<Tensor> = (0..self.world).map(|_| input.empty_like()).collect();
        let refs: Vec<&Tensor> = outs.iter().collect();
        let mut p = ptrs(&refs);
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            dv2_c10d_allgather(
                self.raw,
                p.as_mut_ptr(),
                self.world as c_int,
                input.as_ptr() as *mut c_void,
                &mut err,
            )
        };
        check(rc, err, &format!("all-gather on rank {}", self.rank))?;
        Ok(outs)
    }

    /// Waits until every rank has reached the barrier.
    pub fn barrier(&mut self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { dv2_c10d_barrier(self.raw, &mut err) };
        check(rc, err, &format!("barrier on rank {}", self.rank))
    }

    /// A [`GradReducer`] for `params` (registered on this group's backend; it keeps the backend
    /// alive and may outlive `self`). `order` is the bucket order, a permutation of the
    /// parameter indices (PyTorch DDP buckets parameters in reverse registration order, the
    /// order autograd roughly produces their gradients in). Parameters are grouped by (dtype,
    /// device) in order of first appearance and cut into buckets of about `bucket_bytes`.
    /// Parameters that need no gradient or have no elements are left out.
    pub fn grad_reducer(
        &self,
        params: &[&Tensor],
        order: &[usize],
        bucket_bytes: i64,
    ) -> Result<GradReducer> {
        let n = params.len();
        let mut seen = vec![false; n];
        for &i in order {
            if i >= n || std::mem::replace(&mut seen[i], true) {
                bail!("bucket order {order:?} is not a permutation of 0..{n}");
            }
        }
        if order.len() != n {
            bail!(
                "bucket order has {} entries for {n} parameters",
                order.len()
            );
        }
        let mut p = ptrs(params);
        let order: Vec<c_int> = order.iter().map(|&i| i as c_int).collect();
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe {
            dv2_c10d_reducer_new(
                self.raw,
                p.as_mut_ptr(),
                n as c_int,
                order.as_ptr(),
                c_long::try_from(bucket_bytes.max(1)).unwrap_or(c_long::MAX),
                &mut raw,
                &mut err,
            )
        };
        check(
            rc,
            err,
            &format!("gradient reducer for {n} parameters on rank {}", self.rank),
        )?;
        Ok(GradReducer {
            raw,
            n,
            rank: self.rank,
        })
    }
}

/// All-reduces (mean over the ranks) the gradients of a fixed list of parameters while the
/// backward pass runs, as PyTorch DDP's Reducer: a hook on each parameter copies its gradient
/// into the parameter's slot of a bucket (a flat buffer of one dtype and device) and hands
/// autograd a view of that slot instead, so the gradient the backward pass returns IS the
/// slot; a complete bucket is launched as an asynchronous SUM all-reduce (buckets are launched
/// in bucket order on every rank). The hooks also run on gradients captured by
/// `Tensor::run_backward` with inputs (a leaf's hooks run on its captured gradient).
///
/// Per step: [`GradReducer::arm`] before the backward pass, [`GradReducer::finish`] after
/// it. Unarmed (another backward pass), the hooks leave gradients alone.
pub struct GradReducer {
    raw: *mut c_void,
    n: usize,
    rank: usize,
}

// SAFETY: the reducer's state sits behind a mutex in C++ (its hooks run on autograd's threads).
unsafe impl Send for GradReducer {}

impl GradReducer {
    /// Starts a step: fresh bucket buffers; the hooks now capture gradients.
    pub fn arm(&self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { dv2_c10d_reducer_arm(self.raw, &mut err) };
        check(
            rc,
            err,
            &format!("arming the gradient reducer on rank {}", self.rank),
        )
    }

    /// Ends a step: launches the buckets the backward pass left incomplete (the slots of
    /// parameters that got no gradient are zeros; their gradients stay undefined), waits for
    /// every all-reduce in launch order (the group's timeout) and divides each bucket by the
    /// world size. `grads[i]` is what the backward pass returned for parameter `i`: every
    /// defined one must be its bucket slot (it is checked), and holds the mean afterwards.
    pub fn finish(&self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.n {
            bail!(
                "the gradient reducer has {} parameters, finish got {} gradients",
                self.n,
                grads.len()
            );
        }
        let mut p: Vec<*mut c_void> = grads
            .iter()
            .map(|g| {
                if g.defined() {
                    g.as_ptr() as *mut c_void
                } else {
                    std::ptr::null_mut()
                }
            })
            .collect();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            dv2_c10d_reducer_finish(self.raw, p.as_mut_ptr(), p.len() as c_int, &mut err)
        };
        check(
            rc,
            err,
            &format!("all-reduce of the gradient buckets on rank {}", self.rank),
        )
    }

    fn raw_log(&self, what: c_int) -> Vec<c_int> {
        // the log may grow between the two calls (hooks on another thread): read what fits
        let n = unsafe { dv2_c10d_reducer_log(self.raw, what, std::ptr::null_mut(), 0) };
        let mut v = vec![0 as c_int; n.max(0) as usize];
        let m = unsafe { dv2_c10d_reducer_log(self.raw, what, v.as_mut_ptr(), n) };
        v.truncate(m.clamp(0, n) as usize);
        v
    }

    fn log(&self, what: c_int) -> Vec<usize> {
        self.raw_log(what).into_iter().map(|i| i as usize).collect()
    }

    /// Each parameter's bucket (`None`: left out).
    pub fn bucket_of(&self) -> Vec<Option<usize>> {
        self.raw_log(0)
            .into_iter()
            .map(|b| usize::try_from(b).ok())
            .collect()
    }

    /// The buckets in the order the last (or current) step launched them.
    pub fn launch_order(&self) -> Vec<usize> {
        self.log(1)
    }

    /// The parameters in the order their hooks received a gradient in the last (or current)
    /// step.
    pub fn arrival_order(&self) -> Vec<usize> {
        self.log(2)
    }
}

impl Drop for GradReducer {
    fn drop(&mut self) {
        unsafe { dv2_c10d_reducer_free(self.raw) }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { dv2_c10d_free(self.raw) }
    }
}
