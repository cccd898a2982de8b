//! What the loader does with a record it cannot read or decode: end the epoch with an error
//! (`fail`) or put a substitute in its place (`skip`), up to a cap.
//!
//! A skipped record's substitute is drawn from the stream (seed, epoch, sample position,
//! attempt), so a rerun or a resumed run takes the same substitute, and the sample keeps its
//! augmentation stream (seed, epoch, position): the batch is the same bytes whatever the
//! number of workers or their timing. The cap is checked in step order, so a run fails at
//! the same step every time.

use crate::rng::Xoshiro;
use anyhow::{Result, bail};

/// `fail` or `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRecordPolicy {
    /// The first bad record ends the epoch with an error naming it.
    Fail,
    /// A bad record is logged, counted and replaced by another record.
    Skip,
}

/// The policy and its cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadRecords {
    pub policy: BadRecordPolicy,
    /// With `skip`: the most records one epoch may skip, as a fraction of the samples it
    /// draws on this rank (for the infinite sampler: per pass of this rank's share of the
    /// dataset, counted from the run's start or resume); one more is an error.
    pub max_fraction: f64,
}

/// The default cap of `skip`: 0.1 % (1,281 of ImageNet-1k's 1.28 M images).
pub const DEFAULT_MAX_BAD_FRACTION: f64 = 0.001;

/// Substitutes tried for one sample before giving up (every one of them bad).
const MAX_ATTEMPTS: u64 = 16;

impl BadRecords {
    /// Every bad record is an error.
    pub const FAIL: Self = Self {
        policy: BadRecordPolicy::Fail,
        max_fraction: 0.0,
    };

    /// Skip up to `max_fraction` of an epoch's samples.
    pub fn skip(max_fraction: f64) -> Self {
        Self {
            policy: BadRecordPolicy::Skip,
            max_fraction,
        }
    }

    /// The substitute for attempt `attempt` (1, 2, ...) of the sample at global `position`,
    /// or `None` when this policy does not skip or the attempts are used up.
    pub fn substitute(
        &self,
        (seed, epoch, position): (u64, u64, u64),
        attempt: u64,
        len: usize,
    ) -> Option<usize> {
        if self.policy != BadRecordPolicy::Skip || attempt > MAX_ATTEMPTS || len == 0 {
            return None;
        }
        let mut rng = Xoshiro::stream(seed, &[0x5B1D_BAD0, epoch, position, attempt]);
        Some((rng.next_u64() % len as u64) as usize)
    }

    /// Most records an epoch of `samples` samples may skip.
    pub fn cap(&self, samples: u64) -> u64 {
        (self.max_fraction * samples as f64).floor() as u64
    }

    /// An error once `skipped` (this epoch, so far) is over the cap for `samples`.
    pub fn check(&self, skipped: u64, samples: u64, last: Option<&SkippedRecord>) -> Result<()> {
        let cap = self.cap(samples);
        if skipped > cap {
            bail!(
                "{skipped} bad records skipped in this epoch, over the cap of {cap} \
                 (max_bad_fraction {} of {samples} samples){}",
                self.max_fraction,
                last.map(|r| format!("; the last: {r}")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// One record that was skipped, and the one that took its place.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SkippedRecord {
    /// Dataset index of the bad record.
    pub index: usize,
    /// Why: the read or decode error, naming the shard or file.
    pub error: String,
    /// Dataset index of the substitute.
    pub substitute: usize,
}

impl std::fmt::Display for SkippedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} skipped ({}), record {} in its place",
            self.index, self.error, self.substitute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_are_deterministic_and_fail_never_substitutes() {
        let s = BadRecords::skip(0.01);
        let a: Vec<_> = (1..=4).map(|k| s.substitute((7, 2, 99), k, 1000)).collect();
        let b: Vec<_> = (1..=4).map(|k| s.substitute((7, 2, 99), k, 1000)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.is_some_and(|i| i < 1000)));
        assert_ne!(a[0], s.substitute((7, 3, 99), 1, 1000));
        assert_eq!(s.substitute((7, 2, 99), MAX_ATTEMPTS + 1, 1000), None);
        assert_eq!(BadRecords::FAIL.substitute((7, 2, 99), 1, 1000), None);
    }

    #[test]
    fn the_cap_is_a_fraction_of_the_epoch() {
        let s = BadRecords::skip(0.001);
        assert_eq!(s.cap(1_281_167), 1281);
        assert!(s.check(1281, 1_281_167, None).is_ok());
        let e = s.check(1282, 1_281_167, None).unwrap_err().to_string();
        assert!(
            e.contains("1282 bad records") && e.contains("cap of 1281"),
            "{e}"
        );
        assert!(BadRecords::FAIL.check(1, 100, None).is_err());
    }
}
