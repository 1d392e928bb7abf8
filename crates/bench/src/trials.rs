//! Interleaved trials: floor, subject, floor, subject … so that both see the
//! same machine. Each trial gives a set of samples and so a trial median; a
//! figure is the median of its trial medians, its spread is the min–max of
//! the trial medians, and its ratio to the floor is computed per trial pair
//! (then the median of those ratios is reported).

use crate::{stats, Figure, Floor, Unit};

/// Trials of each side in a full run (the issue asks for at least 5).
pub const FULL_TRIALS: usize = 5;
/// Trials of each side with `--quick`.
pub const QUICK_TRIALS: usize = 3;

/// One side of a figure: its trial medians and every sample.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// The median of each trial, in order.
    pub medians: Vec<f64>,
    /// Every sample of every trial (for the p99).
    pub samples: Vec<f64>,
}

impl Side {
    /// Adds one trial's samples.
    pub fn push(&mut self, mut samples: Vec<f64>) {
        if samples.is_empty() {
            return;
        }
        self.medians.push(stats::median(&mut samples));
        self.samples.extend(samples);
    }

    /// The median of the trial medians.
    pub fn median(&self) -> f64 {
        stats::median(&mut self.medians.clone())
    }

    /// Min and max of the trial medians.
    pub fn spread(&self) -> (f64, f64) {
        let min = self.medians.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .medians
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    /// The 99th percentile over every sample, if there are enough (≥ 100).
    pub fn p99(&self) -> Option<f64> {
        (self.samples.len() >= 100).then(|| stats::quantile(&mut self.samples.clone(), 0.99))
    }
}

/// A subject measured against its floor in interleaved trials.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    /// The floor's trials.
    pub floor: Side,
    /// The subject's trials.
    pub subject: Side,
}

/// The cost ratio of `subject` to `floor` in `unit` (1.0 = as fast as the floor).
pub fn cost_ratio(unit: Unit, subject: f64, floor: f64) -> f64 {
    if crate::report::lower_is_better(unit) {
        subject / floor
    } else {
        floor / subject
    }
}

impl Paired {
    /// The per-pair cost ratios.
    pub fn ratios(&self, unit: Unit) -> Vec<f64> {
        self.floor
            .medians
            .iter()
            .zip(&self.subject.medians)
            .map(|(&f, &s)| cost_ratio(unit, s, f))
            .filter(|r| r.is_finite())
            .collect()
    }

    /// The figure: subject's median of trial medians, spread and p99; the
    /// floor (named `floor_name`, its hops `hops`) likewise; the median of the
    /// per-pair ratios.
    pub fn figure(
        &self,
        scenario: &'static str,
        what: impl Into<String>,
        unit: Unit,
        floor_name: impl Into<String>,
        hops: impl Into<String>,
    ) -> Figure {
        let mut f = Figure::new(scenario, what, unit, self.subject.median());
        f.spread = Some(self.subject.spread());
        f.p99 = if unit == Unit::PerSec {
            None
        } else {
            self.subject.p99()
        };
        f.trials = self.subject.medians.len();
        let mut floor = Floor::new(floor_name, self.floor.median());
        floor.spread = Some(self.floor.spread());
        floor.hops = Some(hops.into());
        f.floor = Some(floor);
        let mut r = self.ratios(unit);
        f.pair_ratio = (!r.is_empty()).then(|| stats::median(&mut r));
        f
    }
}

impl Paired {
    /// Pairs from runs of one sample each, already taken alternately: run `i`
    /// of `floor` and of `subject` form trial pair `i`.
    pub fn from_runs(floor: &[f64], subject: &[f64]) -> Paired {
        let mut p = Paired::default();
        for (&f, &s) in floor.iter().zip(subject) {
            p.floor.push(vec![f]);
            p.subject.push(vec![s]);
        }
        p
    }

    /// Pairs from samples taken alternately (floor, subject, floor, …): each
    /// side is cut into `trials` consecutive chunks, chunk `i` of both forming
    /// trial pair `i`.
    pub fn from_chunks(floor: &[f64], subject: &[f64], trials: usize) -> Paired {
        let mut p = Paired::default();
        let cut = |v: &[f64]| -> Vec<Vec<f64>> {
            let size = v.len().div_ceil(trials.max(1)).max(1);
            v.chunks(size).map(<[f64]>::to_vec).collect()
        };
        for (f, s) in cut(floor).into_iter().zip(cut(subject)) {
            p.floor.push(f);
            p.subject.push(s);
        }
        p
    }

    /// Sets `f`'s median, spread, trials and pair ratio, and its floor's
    /// median and spread, from these trials (keeping names, hops and targets).
    pub fn apply(&self, f: &mut Figure) {
        f.median = self.subject.median();
        f.spread = Some(self.subject.spread());
        f.trials = self.subject.medians.len();
        if let Some(fl) = f.floor.as_mut() {
            fl.median = self.floor.median();
            fl.spread = Some(self.floor.spread());
        }
        let mut r = self.ratios(f.unit);
        f.pair_ratio = (!r.is_empty()).then(|| stats::median(&mut r));
    }
}

/// Runs `trials` pairs: `floor(i)` then `subject(i)`, each returning one
/// trial's samples.
pub fn interleave(
    trials: usize,
    mut floor: impl FnMut(usize) -> anyhow::Result<Vec<f64>>,
    mut subject: impl FnMut(usize) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Paired> {
    let mut p = Paired::default();
    for i in 0..trials {
        p.floor.push(floor(i)?);
        p.subject.push(subject(i)?);
    }
    Ok(p)
}

/// Runs `trials` trials of one side alone (a figure without a floor of its own).
pub fn alone(
    trials: usize,
    mut subject: impl FnMut(usize) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Side> {
    let mut s = Side::default();
    for i in 0..trials {
        s.push(subject(i)?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_trial_medians_spread_and_pair_ratios() {
        let mut n = 0.0;
        let p = interleave(
            5,
            |_| Ok(vec![10.0, 10.0, 10.0]),
            |i| {
                n += 1.0;
                Ok(vec![20.0 + i as f64, 20.0 + i as f64, 1000.0])
            },
        )
        .unwrap();
        assert_eq!(p.subject.medians, [20.0, 21.0, 22.0, 23.0, 24.0]);
        assert_eq!(p.subject.median(), 22.0);
        assert_eq!(p.subject.spread(), (20.0, 24.0));
        assert_eq!(p.ratios(Unit::Micros), [2.0, 2.1, 2.2, 2.3, 2.4]);
        assert_eq!(p.ratios(Unit::PerSec)[0], 0.5);
        let f = p.figure("x", "y", Unit::Micros, "floor", "a → b");
        assert_eq!(f.pair_ratio, Some(2.2));
        assert_eq!(f.trials, 5);
        assert_eq!(f.floor.unwrap().hops.as_deref(), Some("a → b"));
    }
}
