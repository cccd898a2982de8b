//! Data-parallel training state of one process: its rank in the world and, when it was started
//! by a launcher (or the world has more than one process), its c10d process group (Gloo on CPU,
//! NCCL on CUDA). As with torchrun, a one-process launch joins a group of one and runs every
//! collective (on one GPU: NCCL); a plain `dinov2 train` has no group and no collectives.
//!
//! The environment is torchrun's (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`, as set by `dinov2 launch` or `torchrun`) or SLURM's (`SLURM_PROCID`,
//! `SLURM_LOCALID`, `SLURM_NTASKS`, with `MASTER_ADDR`/`MASTER_PORT` from the job script).
//!
//! Collectives are called through `&self` (the losses' [`AllReduce`] hook takes `&self`); the
//! first failure (a dead peer, a timeout) is kept, later collectives are skipped, and
//! [`Dist::check`] hands it to the training loop, which stops with it.
//!
//! Gradients are averaged while the backward pass runs: [`Dist::grad_overlap`] registers a hook
//! on each parameter that puts its gradient into a bucket and launches the bucket's all-reduce
//! as soon as it is complete (PyTorch DDP's scheme, see [`c10d::GradReducer`]);
//! [`GradOverlap::finish`] after the backward pass waits for what is still in flight.

use anyhow::{Context, Result, bail};
use c10d::{Backend, GradReducer, ProcessGroup, ReduceOp};
use model::loss::AllReduce;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Gradients are all-reduced in buckets of about this many bytes (PyTorch DDP's default).
const BUCKET_BYTES: i64 = 25 << 20;

/// How long a collective (or the rendezvous) may wait before the run fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where this process sits in the world (from the environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldInfo {
    pub rank: usize,
    pub local_rank: usize,
    pub world: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Started by `dinov2 launch` or torchrun (`WORLD_SIZE` set): joins a process group even
    /// when it is the only process.
    pub launched: bool,
}

impl WorldInfo {
    /// torchrun's or SLURM's variables; a single process when neither is set.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let num = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{k}={v:?} is not a non-negative integer"))
                })
                .transpose()
        };
        let (rank, local_rank, world) = if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.context("WORLD_SIZE is set but RANK is not")?;
            (rank, num("LOCAL_RANK")?.unwrap_or(0), world)
        } else if let Some(world) = num("SLURM_NTASKS")? {
            let rank =
                num("SLURM_PROCID")?.context("SLURM_NTASKS is set but SLURM_PROCID is not")?;
            (rank, num("SLURM_LOCALID")?.unwrap_or(0), world)
        } else {
            (0, 0, 1)
        };
        if world == 0 || rank >= world {
            bail!("rank {rank} is not in a world of {world} processes");
        }
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match get("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse()
                .with_context(|| format!("MASTER_PORT={p:?} is not a port number"))?,
            None => 29500,
        };
        if world > 1 && get("MASTER_ADDR").is_none() && get("WORLD_SIZE").is_none() {
            bail!(
                "a SLURM job of {world} tasks needs MASTER_ADDR (and MASTER_PORT) set to the first node"
            );
        }
        Ok(Self {
            rank,
            local_rank,
            world,
            master_addr,
            master_port,
            launched: get("WORLD_SIZE").is_some(),
        })
    }

    /// The device a process of this rank trains on when the config says `auto`/`cuda`: the
    /// GPU of its local rank.
    pub fn device_for(&self, configured: Device) -> Device {
        match configured {
            Device::Cuda(0) if self.world > 1 => Device::Cuda(self.local_rank),
            d => d,
        }
    }
}

/// One process of a data-parallel run (or the only one).
pub struct Dist {
    pub info: WorldInfo,
    pg: Option<RefCell<ProcessGroup>>,
    failure: RefCell<Option<anyhow::Error>>,
    /// Nanoseconds spent in collectives since the last [`Dist::take_comm_time`] (shared with
    /// the [`GradOverlap`]s, whose waits count too).
    comm: Arc<AtomicU64>,
}

fn add_time(comm: &AtomicU64, d: Duration) {
    comm.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

impl Dist {
    /// A run of one process: every collective is the identity.
    pub fn single() -> Self {
        Self {
            info: WorldInfo {
                rank: 0,
                local_rank: 0,
                world: 1,
                master_addr: String::new(),
                master_port: 0,
                launched: false,
            },
            pg: None,
            failure: RefCell::new(None),
            comm: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Joins the world described by `info` for tensors on `device` (NCCL for CUDA when this
    /// build has it, Gloo otherwise).
    pub fn join(info: WorldInfo, device: Device, timeout: Duration) -> Result<Self> {
        if info.world == 1 && !info.launched {
            return Ok(Self {
                info,
                ..Self::single()
            });
        }
        let backend = if device.is_cuda() && c10d::has_nccl() {
            Backend::Nccl
        } else {
            Backend::Gloo
        };
        let pg = ProcessGroup::new(
            &info.master_addr,
            info.master_port,
            info.rank,
            info.world,
            backend,
            timeout,
        )?;
        Ok(Self {
            info,
            pg: Some(RefCell::new(pg)),
            ..Self::single()
        })
    }

    /// Joins the world the environment describes (see the module docs), with the timeout of
    /// `DINOV2_DIST_TIMEOUT` (seconds, set by `dinov2 launch --timeout`; default 10 minutes).
    /// Returns the process group and the device this rank trains on, given the configured one.
    pub fn from_env(configured: Device) -> Result<(Self, Device)> {
        let info = WorldInfo::from_env()?;
        let device = info.device_for(configured);
        let timeout = match std::env::var("DINOV2_DIST_TIMEOUT") {
            Ok(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .with_context(|| {
                    format!("DINOV2_DIST_TIMEOUT={v:?} is not a positive number of seconds")
                })?,
            Err(_) => DEFAULT_TIMEOUT,
        };
        Ok((Self::join(info, device, timeout)?, device))
    }

    pub fn rank(&self) -> usize {
        self.info.rank
    }

    pub fn world(&self) -> usize {
        self.info.world
    }

    /// Whether this process is in a process group (collectives run, even in a world of one).
    pub fn is_distributed(&self) -> bool {
        self.pg.is_some()
    }

    /// The process group's backend (`gloo`, `nccl`), if any.
    pub fn backend(&self) -> Option<&'static str> {
        self.pg.as_ref().map(|pg| match pg.borrow().backend() {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        })
    }

    /// Rank 0 writes logs, metrics and checkpoints.
    pub fn is_main(&self) -> bool {
        self.info.rank == 0
    }

    /// The first collective failure, if any (later collectives were skipped).
    pub fn check(&self) -> Result<()> {
        match self.failure.borrow_mut().take() {
            Some(e) => Err(e.context(format!("rank {} of {}", self.info.rank, self.info.world))),
            None => Ok(()),
        }
    }

    fn with_pg(&self, f: impl FnOnce(&mut ProcessGroup) -> Result<()>) {
        let Some(pg) = &self.pg else { return };
        if self.failure.borrow().is_some() {
            return;
        }
        let t = Instant::now();
        if let Err(e) = f(&mut pg.borrow_mut()) {
            *self.failure.borrow_mut() = Some(e);
        }
        add_time(&self.comm, t.elapsed());
    }

    /// Time this thread spent in collectives (waiting for peers included) since the last call:
    /// the synchronous ones, and for the gradients the wait in [`GradOverlap::finish`] (the
    /// all-reduce the backward pass did not hide).
    pub fn take_comm_time(&self) -> Duration {
        Duration::from_nanos(self.comm.swap(0, Ordering::Relaxed))
    }

    fn run(&self, f: impl FnOnce(&mut ProcessGroup) -> Result<()>) -> Result<()> {
        self.with_pg(f);
        self.check()
    }

    /// Every rank gets rank 0's values of `tensors` (flattened into one buffer per dtype).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        self.run(|pg| {
            for group in by_kind(tensors) {
                let flat = flatten(&group);
                pg.broadcast(&[&flat], 0)?;
                unflatten_into(&flat, &group);
            }
            Ok(())
        })
    }

    /// Gradients become their mean over the ranks, in ~25 MB buckets of one dtype.
    pub fn average_gradients(&self, grads: &[Tensor]) -> Result<()> {
        if !self.is_distributed() {
            return Ok(());
        }
        let w = self.world() as f64;
        self.run(|pg| {
            for group in by_kind(grads) {
                for bucket in buckets(&group) {
                    let mut flat = flatten(&bucket);
                    pg.all_reduce(&[&flat], ReduceOp::Sum)?;
                    let _ = flat.g_div_scalar_(w);
                    unflatten_into(&flat, &bucket);
                }
            }
            Ok(())
        })
    }

    /// Gradient averaging overlapped with the backward pass for `params` (None when this
    /// process is in no group). `registration_order[i]` is the registration (creation) index of
    /// `params[i]` (see [`registration_order`]): buckets take the parameters in reverse
    /// registration order, as PyTorch DDP, about `BUCKET_BYTES` each per (dtype, device).
    /// Each step: [`GradOverlap::arm`] before the backward pass, [`GradOverlap::finish`] after.
    pub fn grad_overlap(
        &self,
        params: &[Tensor],
        registration_order: &[usize],
    ) -> Result<Option<GradOverlap>> {
        self.grad_overlap_with_buckets(params, registration_order, BUCKET_BYTES)
    }

    /// [`Dist::grad_overlap`] with buckets of about `bucket_bytes` (tests).
    pub fn grad_overlap_with_buckets(
        &self,
        params: &[Tensor],
        registration_order: &[usize],
        bucket_bytes: i64,
    ) -> Result<Option<GradOverlap>> {
        let Some(pg) = &self.pg else { return Ok(None) };
        if registration_order.len() != params.len() {
            bail!(
                "{} registration indices for {} parameters",
                registration_order.len(),
                params.len()
            );
        }
        let mut order: Vec<usize> = (0..params.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(registration_order[i]));
        let refs: Vec<&Tensor> = params.iter().collect();
        let reducer = pg.borrow().grad_reducer(&refs, &order, bucket_bytes)?;
        Ok(Some(GradOverlap {
            reducer,
            comm: self.comm.clone(),
            exposed: Cell::new(Duration::ZERO),
        }))
    }

    /// The mean of scalars over the ranks (for logging).
    pub fn mean_scalars(&self, values: &[f64]) -> Result<Vec<f64>> {
        if !self.is_distributed() || values.is_empty() {
            return Ok(values.to_vec());
        }
        let t = Tensor::from_slice(values);
        self.run(|pg| pg.all_reduce(&[&t], ReduceOp::Sum))?;
        let sum: Vec<f64> = Vec::<f64>::try_from(&t)?;
        Ok(sum.iter().map(|s| s / self.world() as f64).collect())
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        self.run(|pg| pg.barrier())
    }

    /// Whether every tensor holds the same values on every rank (bit for bit): a check for
    /// tests and for a run's start.
    pub fn identical_across_ranks(&self, tensors: &[Tensor]) -> Result<bool> {
        if !self.is_distributed() {
            return Ok(true);
        }
        let mut same = true;
        self.run(|pg| {
            for group in by_kind(tensors) {
                let flat = flatten(&group).to_kind(Kind::Double);
                let (lo, hi) = (flat.copy(), flat.copy());
                pg.all_reduce(&[&lo], ReduceOp::Min)?;
                pg.all_reduce(&[&hi], ReduceOp::Max)?;
                same &= bool::try_from(lo.eq_tensor(&hi).all())?;
            }
            Ok(())
        })?;
        Ok(same)
    }
}

impl AllReduce for Dist {
    fn world_size(&self) -> i64 {
        self.world() as i64
    }
    fn all_reduce_sum(&self, t: &mut Tensor) {
        self.with_pg(|pg| pg.all_reduce(&[t], ReduceOp::Sum));
    }
    fn all_reduce_max(&self, t: &mut Tensor) {
        self.with_pg(|pg| pg.all_reduce(&[t], ReduceOp::Max));
    }
}

/// Gradients averaged over the ranks while the backward pass runs (see [`Dist::grad_overlap`]):
/// the bucket all-reduces start from autograd hooks; [`GradOverlap::finish`] waits for them.
pub struct GradOverlap {
    reducer: GradReducer,
    comm: Arc<AtomicU64>,
    /// Time in [`GradOverlap::finish`] since the last [`GradOverlap::take_exposed_time`].
    exposed: Cell<Duration>,
}

impl GradOverlap {
    /// Before the backward pass: its gradients of the parameters go into fresh buckets.
    pub fn arm(&self) -> Result<()> {
        self.reducer.arm()
    }

    /// After the backward pass (`grads`: what it returned for the parameters, in their order):
    /// launches the buckets still incomplete, waits for every all-reduce and leaves each
    /// defined gradient holding its mean over the ranks: the sum divided by the world size, as
    /// [`Dist::average_gradients`] computes it. A gradient this rank did not get stays
    /// undefined here and counts as zeros in the other ranks' means. The time spent here is
    /// the exposed communication.
    pub fn finish(&self, grads: &mut [Tensor]) -> Result<()> {
        let t = Instant::now();
        let r = self.reducer.finish(grads);
        let d = t.elapsed();
        self.exposed.set(self.exposed.get() + d);
        add_time(&self.comm, d);
        r
    }

    /// Time spent in [`GradOverlap::finish`] since the last call.
    pub fn take_exposed_time(&self) -> Duration {
        self.exposed.replace(Duration::ZERO)
    }

    /// The reducer (bucket layout, launch and arrival order of the last step).
    pub fn reducer(&self) -> &GradReducer {
        &self.reducer
    }
}

/// The registration (creation) index of each of `params` among `vs`'s trainable variables,
/// matched by data pointer (tch's `trainable_variables` keeps creation order, `variables` is a
/// map). Parameters it does not hold come after all of its own, in the given order.
pub fn registration_order(vs: &tch::nn::VarStore, params: &[Tensor]) -> Vec<usize> {
    let trainable = vs.trainable_variables();
    let index: HashMap<usize, usize> = trainable
        .iter()
        .enumerate()
        .filter(|(_, t)| t.numel() > 0)
        .map(|(i, t)| (t.data_ptr() as usize, i))
        .collect();
    params
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let found = (p.numel() > 0)
                .then(|| index.get(&(p.data_ptr() as usize)))
                .flatten();
            found.copied().unwrap_or(trainable.len() + k)
        })
        .collect()
}

/// The defined, non-empty `tensors` grouped by (device, dtype), each group in the given order.
fn by_kind(tensors: &[Tensor]) -> Vec<Vec<Tensor>> {
    let nonempty: Vec<&Tensor> = tensors
        .iter()
        .filter(|t| t.defined() && t.numel() > 0)
        .collect();
    crate::tensor_groups::by_device_and_kind(&nonempty)
        .into_iter()
        .map(|g| g.into_iter().map(Tensor::shallow_clone).collect())
        .collect()
}

fn buckets(group: &[Tensor]) -> Vec<Vec<Tensor>> {
    let mut out: Vec<Vec<Tensor>> = vec![Vec::new()];
    let mut bytes = 0i64;
    for t in group {
        let b = t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        if bytes > 0 && bytes + b > BUCKET_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        out.last_mut().unwrap().push(t.shallow_clone());
        bytes += b;
    }
    out
}

fn flatten(group: &[Tensor]) -> Tensor {
    let views: Vec<Tensor> = group.iter().map(|t| t.detach().reshape([-1])).collect();
    Tensor::cat(&views, 0)
}

fn unflatten_into(flat: &Tensor, group: &[Tensor]) {
    let mut offset = 0i64;
    tch::no_grad(|| {
        for t in group {
            let n = t.numel() as i64;
            let mut dst = t.shallow_clone();
            dst.copy_(&flat.narrow(0, offset, n).view_as(t));
            offset += n;
        }
    });
}

/// A var store's tensors in name order (the same order on every rank).
pub fn sorted_variables(vs: &tch::nn::VarStore) -> Vec<Tensor> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, t)| t).collect()
}
