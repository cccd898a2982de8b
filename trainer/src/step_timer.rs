//! Where a training step's time goes: data wait (the trainer blocked on the loader), host-to-device
//! copy, forward + backward, exposed all-reduce (communication the backward pass did not hide),
//! optimizer (unscale, clip, AdamW), teacher EMA and logging.
//!
//! On the CPU every ATen call returns when its work is done, so host clocks measure each phase
//! exactly and every step is measured. On CUDA kernels run asynchronously: a phase is measured by
//! synchronising the device at its end, which would stall the pipeline, so only one step in
//! `sample_every` is measured that way (a profiled step) and the others run undisturbed. The data
//! wait is host time in every mode: the time the loop spent blocked on the loader.

use serde::Serialize;
use std::time::Instant;
use tch::Device;

/// The phases of one training step, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    DataWait,
    HostToDevice,
    ForwardBackward,
    AllReduce,
    Optimizer,
    Ema,
    Logging,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::DataWait,
        Phase::HostToDevice,
        Phase::ForwardBackward,
        Phase::AllReduce,
        Phase::Optimizer,
        Phase::Ema,
        Phase::Logging,
    ];

    /// The metrics key of the phase's seconds per step.
    pub fn key(self) -> &'static str {
        match self {
            Phase::DataWait => "data_wait_s",
            Phase::HostToDevice => "h2d_s",
            Phase::ForwardBackward => "fwd_bwd_s",
            Phase::AllReduce => "allreduce_exposed_s",
            Phase::Optimizer => "optimizer_s",
            Phase::Ema => "ema_s",
            Phase::Logging => "logging_s",
        }
    }

    /// In words, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Phase::DataWait => "data wait",
            Phase::HostToDevice => "host to device",
            Phase::ForwardBackward => "forward + backward",
            Phase::AllReduce => "exposed all-reduce",
            Phase::Optimizer => "optimizer",
            Phase::Ema => "teacher EMA",
            Phase::Logging => "logging",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Mean seconds per step of each phase over the measured steps of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// Seconds per step, in [`Phase::ALL`] order.
    pub seconds: [f64; 7],
    /// Steps measured (all of them on the CPU; the profiled ones on CUDA).
    pub steps: u64,
}

impl Breakdown {
    pub fn get(&self, p: Phase) -> f64 {
        self.seconds[p.index()]
    }

    /// The sum of the phases: the measured step time.
    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }

    /// What bounds the step: `data` (the loader), `communication` (exposed all-reduce) or
    /// `compute` (everything the device does), whichever takes the largest share.
    pub fn bound(&self) -> &'static str {
        let data = self.get(Phase::DataWait) + self.get(Phase::HostToDevice);
        let comm = self.get(Phase::AllReduce);
        let compute = self.total() - data - comm;
        if data >= comm && data >= compute {
            "data-bound"
        } else if comm >= compute {
            "communication-bound"
        } else {
            "compute-bound"
        }
    }

    /// The phases as metrics fields (`data_wait_s`, ...).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        Phase::ALL
            .iter()
            .map(|p| (p.key().to_string(), serde_json::json!(self.get(*p))))
            .collect()
    }

    /// The mean of several windows' breakdowns, weighted by their measured steps.
    pub fn mean(parts: &[Breakdown]) -> Breakdown {
        let steps: u64 = parts.iter().map(|b| b.steps).sum();
        let mut seconds = [0.0; 7];
        if steps > 0 {
            for b in parts {
                for (s, x) in seconds.iter_mut().zip(b.seconds) {
                    *s += x * b.steps as f64 / steps as f64;
                }
            }
        }
        Breakdown { seconds, steps }
    }

    /// Reads a breakdown back from a metrics record (missing keys are 0).
    pub fn from_record(r: &serde_json::Value) -> Option<Breakdown> {
        r.get(Phase::ForwardBackward.key())?.as_f64()?;
        let mut seconds = [0.0; 7];
        for p in Phase::ALL {
            seconds[p.index()] = r[p.key()].as_f64().unwrap_or(0.0);
        }
        Some(Breakdown {
            seconds,
            steps: r["breakdown_steps"].as_u64().unwrap_or(1),
        })
    }
}

/// Times the phases of consecutive steps: [`StepTimer::begin`] at the top of the loop, then
/// [`StepTimer::lap`] at the end of each phase.
pub struct StepTimer {
    device: Device,
    sample_every: u64,
    measuring: bool,
    mark: Instant,
    sums: [f64; 7],
    steps: u64,
}

impl StepTimer {
    /// On CUDA, one step in `sample_every` is measured (with a device synchronisation after
    /// each phase); on the CPU every step.
    pub fn new(device: Device, sample_every: u64) -> Self {
        Self {
            device,
            sample_every: sample_every.max(1),
            measuring: true,
            mark: Instant::now(),
            sums: [0.0; 7],
            steps: 0,
        }
    }

    /// Whether phases are measured with device synchronisations (CUDA).
    pub fn synchronises(&self) -> bool {
        self.device.is_cuda()
    }

    /// Starts step `it`, before the loader is asked for its batch.
    pub fn begin(&mut self, it: u64) {
        self.measuring = !self.synchronises() || it.is_multiple_of(self.sample_every);
        self.sync();
        self.mark = Instant::now();
    }

    fn sync(&self) {
        if self.measuring
            && let Device::Cuda(i) = self.device
        {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Ends phase `p` (it began at the previous lap or at `begin`).
    pub fn lap(&mut self, p: Phase) {
        if p == Phase::DataWait {
            // host time, whatever the device: no synchronisation
            if self.measuring {
                self.sums[p.index()] += self.mark.elapsed().as_secs_f64();
            }
            self.mark = Instant::now();
            return;
        }
        if self.measuring {
            self.sync();
            self.sums[p.index()] += self.mark.elapsed().as_secs_f64();
        }
        self.mark = Instant::now();
    }

    /// Ends step (after its last lap).
    pub fn end(&mut self) {
        if self.measuring {
            self.steps += 1;
        }
    }

    /// The breakdown of the steps since the last call.
    pub fn take(&mut self) -> Breakdown {
        let steps = std::mem::take(&mut self.steps);
        let sums = std::mem::take(&mut self.sums);
        Breakdown {
            seconds: sums.map(|s| if steps > 0 { s / steps as f64 } else { 0.0 }),
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_the_bound_is_the_largest_share() {
        let mut t = StepTimer::new(Device::Cpu, 10);
        for it in 0..3 {
            t.begin(it);
            std::thread::sleep(std::time::Duration::from_millis(2));
            t.lap(Phase::DataWait);
            std::thread::sleep(std::time::Duration::from_millis(6));
            t.lap(Phase::ForwardBackward);
            t.lap(Phase::Optimizer);
            t.end();
        }
        let b = t.take();
        assert_eq!(b.steps, 3);
        assert!(b.get(Phase::DataWait) >= 0.002 && b.get(Phase::ForwardBackward) >= 0.006);
        assert_eq!(b.bound(), "compute-bound");
        let j = serde_json::Value::Object(b.to_json());
        assert_eq!(Breakdown::from_record(&j).unwrap().seconds, b.seconds);
        assert_eq!(t.take().steps, 0);
        let mut d = Breakdown::default();
        d.seconds[Phase::DataWait.index()] = 1.0;
        d.seconds[Phase::ForwardBackward.index()] = 0.5;
        assert_eq!(d.bound(), "data-bound");
        d.seconds[Phase::AllReduce.index()] = 2.0;
        assert_eq!(d.bound(), "communication-bound");
    }
}
