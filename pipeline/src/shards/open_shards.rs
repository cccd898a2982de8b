//! The shards a process has open, within its limits: each open shard is a memory map of the
//! whole file (and, for LMDB, an open file), so a split of thousands of shards (ImageNet-22k)
//! cannot all be open under `ulimit -v` or `ulimit -n`. Shards open on first use and the least
//! recently used ones close when the maps would pass a quarter of the address-space limit or
//! the open shards a quarter of the open-files limit. A reader holding a shard keeps it
//! alive until it is done, closed or not.

use anyhow::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Limits on what is open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBudget {
    /// Bytes of memory maps.
    pub mapped_bytes: u64,
    /// Shards.
    pub shards: usize,
}

/// `getrlimit`'s soft limit, `None` when unlimited.
fn soft_limit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    // SAFETY: getrlimit fills the struct we own.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

impl OpenBudget {
    /// A quarter of this process's address-space and open-files limits (the rest is for
    /// libtorch, the loader's threads and the trainer).
    pub fn from_limits() -> Self {
        Self {
            mapped_bytes: soft_limit(libc::RLIMIT_AS).map_or(u64::MAX, |l| l / 4),
            shards: soft_limit(libc::RLIMIT_NOFILE).map_or(usize::MAX, |l| (l / 4).max(4) as usize),
        }
    }
}

struct Slot<S> {
    shard: Arc<S>,
    bytes: u64,
    last_use: u64,
}

struct State<S> {
    open: HashMap<usize, Slot<S>>,
    mapped: u64,
    clock: u64,
    /// Shards opened so far (re-openings included), for reports.
    openings: u64,
}

/// Shards by number, opened on demand within an [`OpenBudget`].
pub struct OpenShards<S> {
    budget: OpenBudget,
    state: Mutex<State<S>>,
}

impl<S> OpenShards<S> {
    pub fn new(budget: OpenBudget) -> Self {
        Self {
            budget,
            state: Mutex::new(State {
                open: HashMap::new(),
                mapped: 0,
                clock: 0,
                openings: 0,
            }),
        }
    }

    /// Shard `k`, opened with `open` (which returns it and its mapped size) when it is not
    /// open; others close first when the budget needs room.
    pub fn get(&self, k: usize, open: impl FnOnce() -> Result<(S, u64)>) -> Result<Arc<S>> {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.clock += 1;
            let now = st.clock;
            if let Some(slot) = st.open.get_mut(&k) {
                slot.last_use = now;
                return Ok(slot.shard.clone());
            }
        }
        // Opened outside the lock: other shards stay readable meanwhile. Two threads may
        // open the same shard at once; one copy is kept.
        let (shard, bytes) = open()?;
        let shard = Arc::new(shard);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = st.open.get(&k) {
            return Ok(slot.shard.clone());
        }
        while !st.open.is_empty()
            && (st.mapped.saturating_add(bytes) > self.budget.mapped_bytes
                || st.open.len() >= self.budget.shards)
        {
            let oldest = *st
                .open
                .iter()
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k)
                .expect("not empty");
            let gone = st.open.remove(&oldest).expect("present");
            st.mapped -= gone.bytes;
        }
        st.clock += 1;
        let last_use = st.clock;
        st.mapped += bytes;
        st.openings += 1;
        st.open.insert(
            k,
            Slot {
                shard: shard.clone(),
                bytes,
                last_use,
            },
        );
        Ok(shard)
    }

    /// (shards open now, bytes they map, openings so far).
    pub fn stats(&self) -> (usize, u64, u64) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.open.len(), st.mapped, st.openings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_shards_close_to_stay_in_budget() {
        let cache = OpenShards::new(OpenBudget {
            mapped_bytes: 250,
            shards: 3,
        });
        let open = |k: usize| move || Ok((k, 100u64));
        for k in [0, 1, 0, 2, 3] {
            assert_eq!(*cache.get(k, open(k)).unwrap(), k);
        }
        // 0 and 1 were open (200 bytes); 2 needed room: 1 (least recent) closed; 3 closed 0.
        assert_eq!(cache.stats(), (2, 200, 4));
        let held = cache.get(2, open(2)).unwrap();
        for k in 4..10 {
            cache.get(k, open(k)).unwrap();
        }
        assert_eq!(*held, 2, "a closed shard stays usable by its holder");
        let (n, bytes, _) = cache.stats();
        assert!(n <= 3 && bytes <= 250);
        assert!(cache.get(11, || anyhow::bail!("no such shard")).is_err());
    }
}
