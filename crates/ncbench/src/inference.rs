//! Statistics for verdicts: bootstrap confidence intervals and the
//! three-valued judgement (pass / fail / inconclusive) the gates, the
//! baseline comparison and the capacity search share.
//!
//! Method (documented for users in bench-configs/README.md):
//! - The unit of replication is a trial (one fresh start of the target and
//!   one measured window), because on a shared machine the variation that
//!   matters is between trials, not between requests of one trial.
//! - Throughput-like scalars: the percentile bootstrap of the ratio of
//!   medians, `median(new) / median(base)`, resampling each side's trials
//!   with replacement ([`ratio_of_medians`]). Paired ratios within one run
//!   (a gate's numerator and denominator ran in the same trial) resample the
//!   trial index and take the median of the per-trial ratios ([`paired_median`]).
//! - Latency tails: each trial's HDR histogram is kept; a resample picks
//!   trials with replacement and reads the percentile of their merged
//!   histogram ([`TrialHistograms::quantile`]), so p99 and p99.9 come from
//!   the merged distribution, not from a median of per-trial percentiles.
//! - [`judge`]: with the allowed ratio `limit` (e.g. 0.9 for "at most 10 %
//!   slower"), a change passes when the whole interval is on the allowed
//!   side, fails when the whole interval is beyond the limit, and is
//!   inconclusive when the interval contains the limit.
//!
//! Resampling uses a fixed seed, so the same inputs give the same interval.
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 4000;
const SEED: u64 = 0x6e63_6265_6e63_6821;

/// A point estimate with its two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// Two-sided coverage, e.g. 0.95.
    pub confidence: f64,
}

impl Interval {
    /// Relative half-width, `(high - low) / 2 / estimate` (infinite for a zero estimate).
    pub fn relative_half_width(&self) -> f64 {
        if self.estimate > 0.0 {
            (self.high - self.low) / 2.0 / self.estimate
        } else {
            f64::INFINITY
        }
    }
}

/// Outcome of a statistical check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Pass,
    Fail,
    Inconclusive,
}

impl Judgement {
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Pass => "pass",
            Judgement::Fail => "fail",
            Judgement::Inconclusive => "inconclusive",
        }
    }
}

/// Judges an interval of a ratio against the allowed `limit`. `higher_is_better`:
/// the ratio must stay at or above `limit` (throughput); otherwise at or below
/// it (latency).
pub fn judge(iv: &Interval, limit: f64, higher_is_better: bool) -> Judgement {
    let (ok_all, bad_all) = if higher_is_better {
        (iv.low >= limit, iv.high < limit)
    } else {
        (iv.high <= limit, iv.low > limit)
    };
    if ok_all {
        Judgement::Pass
    } else if bad_all {
        Judgement::Fail
    } else {
        Judgement::Inconclusive
    }
}

/// Judges an interval against an optional lower and upper bound (gates):
/// pass when it lies inside both, fail when it lies wholly outside one.
pub fn judge_bounds(iv: &Interval, min: Option<f64>, max: Option<f64>) -> Judgement {
    let lo = min.map(|m| judge(iv, m, true)).unwrap_or(Judgement::Pass);
    let hi = max.map(|m| judge(iv, m, false)).unwrap_or(Judgement::Pass);
    match (lo, hi) {
        (Judgement::Fail, _) | (_, Judgement::Fail) => Judgement::Fail,
        (Judgement::Pass, Judgement::Pass) => Judgement::Pass,
        _ => Judgement::Inconclusive,
    }
}

/// Median (0 for an empty slice); sorts a copy.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    crate::stats::median(&mut v)
}

/// The `q` quantile (0..=1) of sorted values, by the nearest-rank rule.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// The percentile interval of bootstrap replicates around `estimate`.
fn percentile_interval(mut reps: Vec<f64>, estimate: f64, confidence: f64) -> Interval {
    reps.retain(|x| x.is_finite());
    reps.sort_by(|a, b| a.total_cmp(b));
    let alpha = (1.0 - confidence) / 2.0;
    Interval {
        estimate,
        low: nearest_rank(&reps, alpha),
        high: nearest_rank(&reps, 1.0 - alpha),
        confidence,
    }
}

fn rng() -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(SEED)
}

fn resample_median(rng: &mut Xoshiro256PlusPlus, v: &[f64], scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend((0..v.len()).map(|_| v[rng.random_range(0..v.len())]));
    crate::stats::median(scratch)
}

/// Interval of `median(new) / median(base)`; None when a side is empty or
/// its median is not positive.
pub fn ratio_of_medians(base: &[f64], new: &[f64], confidence: f64) -> Option<Interval> {
    let (mb, mn) = (median(base), median(new));
    if base.is_empty() || new.is_empty() || mb <= 0.0 {
        return None;
    }
    let mut r = rng();
    let mut scratch = Vec::new();
    let reps = (0..RESAMPLES)
        .map(|_| {
            let b = resample_median(&mut r, base, &mut scratch);
            let n = resample_median(&mut r, new, &mut scratch);
            if b > 0.0 {
                n / b
            } else {
                f64::NAN
            }
        })
        .collect();
    Some(percentile_interval(reps, mn / mb, confidence))
}

/// Interval of the median of paired values (per-trial ratios of one run).
pub fn paired_median(values: &[f64], confidence: f64) -> Option<Interval> {
    if values.is_empty() {
        return None;
    }
    let mut r = rng();
    let mut scratch = Vec::new();
    let reps = (0..RESAMPLES)
        .map(|_| resample_median(&mut r, values, &mut scratch))
        .collect();
    Some(percentile_interval(reps, median(values), confidence))
}

/// Trials' latency histograms, flattened for fast weighted quantiles: the
/// distinct recorded values (descending) and each trial's count at each.
#[derive(Debug, Clone)]
pub struct TrialHistograms {
    values: Vec<u64>,
    /// counts[v][t]: trial t's count at values[v].
    counts: Vec<Vec<u64>>,
    totals: Vec<u64>,
}

impl TrialHistograms {
    pub fn new(hists: &[Histogram<u64>]) -> TrialHistograms {
        let mut map: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (t, h) in hists.iter().enumerate() {
            for v in h.iter_recorded() {
                let slot = map
                    .entry(h.highest_equivalent(v.value_iterated_to()))
                    .or_insert_with(|| vec![0; hists.len()]);
                slot[t] += v.count_at_value();
            }
        }
        let (values, counts): (Vec<u64>, Vec<Vec<u64>>) = map.into_iter().rev().unzip();
        TrialHistograms {
            values,
            counts,
            totals: hists.iter().map(|h| h.len()).collect(),
        }
    }

    pub fn trials(&self) -> usize {
        self.totals.len()
    }

    /// The `q` quantile (0..=1) of the histogram that merges trial t with
    /// weight `weights[t]` (how often a resample picked it): the smallest
    /// value with at least `ceil(q * total)` samples at or below it.
    pub fn quantile(&self, weights: &[u64], q: f64) -> Option<u64> {
        let total: u64 = self.totals.iter().zip(weights).map(|(n, w)| n * w).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        // Walk down from the top: a tail quantile touches only the tail.
        let mut above = 0u64;
        let mut answer = None;
        for (v, c) in self.values.iter().zip(&self.counts) {
            if total - above < rank {
                break;
            }
            answer = Some(*v);
            above += c.iter().zip(weights).map(|(c, w)| c * w).sum::<u64>();
        }
        answer
    }

    /// The quantile of the merged histogram and its bootstrap interval over trials.
    pub fn quantile_interval(&self, q: f64, confidence: f64) -> Option<Interval> {
        let n = self.trials();
        let all = vec![1; n];
        let est = self.quantile(&all, q)? as f64;
        let mut r = rng();
        let mut w = vec![0u64; n];
        let reps = (0..RESAMPLES)
            .map(|_| {
                w.iter_mut().for_each(|x| *x = 0);
                for _ in 0..n {
                    w[r.random_range(0..n)] += 1;
                }
                self.quantile(&w, q).map(|v| v as f64).unwrap_or(f64::NAN)
            })
            .collect();
        Some(percentile_interval(reps, est, confidence))
    }
}

/// Interval of the ratio `quantile(new) / quantile(base)` of merged trial
/// histograms, resampling each side's trials.
pub fn ratio_of_quantiles(
    base: &TrialHistograms,
    new: &TrialHistograms,
    q: f64,
    confidence: f64,
) -> Option<Interval> {
    let (nb, nn) = (base.trials(), new.trials());
    let b0 = base.quantile(&vec![1; nb], q)? as f64;
    let n0 = new.quantile(&vec![1; nn], q)? as f64;
    if b0 <= 0.0 {
        return None;
    }
    let mut r = rng();
    let (mut wb, mut wn) = (vec![0u64; nb], vec![0u64; nn]);
    let reps = (0..RESAMPLES)
        .map(|_| {
            wb.iter_mut().for_each(|x| *x = 0);
            wn.iter_mut().for_each(|x| *x = 0);
            for _ in 0..nb {
                wb[r.random_range(0..nb)] += 1;
            }
            for _ in 0..nn {
                wn[r.random_range(0..nn)] += 1;
            }
            match (base.quantile(&wb, q), new.quantile(&wn, q)) {
                (Some(b), Some(n)) if b > 0 => n as f64 / b as f64,
                _ => f64::NAN,
            }
        })
        .collect();
    Some(percentile_interval(reps, n0 / b0, confidence))
}

/// Pool-adjacent-violators: the non-decreasing sequence closest (least
/// squares) to `y`. Used to read a knee off a noisy latency curve.
pub fn isotonic(y: &[f64]) -> Vec<f64> {
    // Blocks of (sum, count); merge while the last block's mean drops.
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(y.len());
    for &v in y {
        blocks.push((v, 1));
        while blocks.len() > 1 {
            let (s1, n1) = blocks[blocks.len() - 1];
            let (s0, n0) = blocks[blocks.len() - 2];
            if s0 / n0 as f64 <= s1 / n1 as f64 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (s0 + s1, n0 + n1);
        }
    }
    blocks
        .into_iter()
        .flat_map(|(s, n)| std::iter::repeat_n(s / n as f64, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-normal noise (sum of uniforms), mean 0, sd ≈ `sd`.
    fn noisy(center: f64, sd: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let s: f64 = (0..12).map(|_| r.random::<f64>()).sum::<f64>() - 6.0;
                center * (1.0 + sd * s)
            })
            .collect()
    }

    #[test]
    fn identical_samples_give_a_tight_interval_around_one() {
        let v = [100.0, 101.0, 99.0, 100.5, 99.5];
        let iv = ratio_of_medians(&v, &v, 0.95).unwrap();
        assert_eq!(iv.estimate, 1.0);
        assert!(iv.low <= 1.0 && iv.high >= 1.0, "{iv:?}");
        assert!(iv.low > 0.98 && iv.high < 1.02, "{iv:?}");
        assert_eq!(judge(&iv, 0.9, true), Judgement::Pass);
    }

    #[test]
    fn a_twenty_percent_drop_with_two_percent_noise_fails_a_ten_percent_gate() {
        let base = noisy(1000.0, 0.02, 7, 1);
        let new = noisy(800.0, 0.02, 7, 2);
        let iv = ratio_of_medians(&base, &new, 0.95).unwrap();
        assert!((iv.estimate - 0.8).abs() < 0.03, "{iv:?}");
        assert!(iv.high < 0.9, "{iv:?}");
        assert_eq!(judge(&iv, 0.9, true), Judgement::Fail);
    }

    #[test]
    fn a_drop_inside_the_noise_is_inconclusive_not_failed() {
        // 10 % drop, 10 % noise, 3 trials: the interval straddles 0.9.
        let base = [900.0, 1000.0, 1100.0];
        let new = [810.0, 900.0, 990.0];
        let iv = ratio_of_medians(&base, &new, 0.95).unwrap();
        assert!((iv.estimate - 0.9).abs() < 1e-9);
        assert!(iv.low < 0.9 && iv.high > 0.9, "{iv:?}");
        assert_eq!(judge(&iv, 0.9, true), Judgement::Inconclusive);
    }

    #[test]
    fn latency_direction_and_bounds() {
        let iv = Interval {
            estimate: 1.5,
            low: 1.4,
            high: 1.6,
            confidence: 0.95,
        };
        assert_eq!(judge(&iv, 1.25, false), Judgement::Fail);
        assert_eq!(judge(&iv, 1.7, false), Judgement::Pass);
        assert_eq!(judge(&iv, 1.5, false), Judgement::Inconclusive);
        assert_eq!(judge_bounds(&iv, Some(1.3), None), Judgement::Pass);
        assert_eq!(
            judge_bounds(&iv, Some(1.3), Some(1.55)),
            Judgement::Inconclusive
        );
        assert_eq!(judge_bounds(&iv, Some(1.7), Some(2.0)), Judgement::Fail);
    }

    #[test]
    fn bootstrap_interval_covers_the_true_ratio_about_as_often_as_stated() {
        // 200 experiments of 8 vs 8 trials with 5 % noise, true ratio 0.8.
        let mut covered = 0;
        for i in 0..200 {
            let base = noisy(1000.0, 0.05, 8, 10 + 2 * i);
            let new = noisy(800.0, 0.05, 8, 11 + 2 * i);
            let iv = ratio_of_medians(&base, &new, 0.9).unwrap();
            covered += usize::from(iv.low <= 0.8 && iv.high >= 0.8);
        }
        // The percentile bootstrap of a median undercovers a little at n = 8.
        assert!((150..=200).contains(&covered), "covered {covered}/200");
    }

    #[test]
    fn paired_median_of_known_ratios() {
        let iv = paired_median(&[1.5, 1.4, 1.6, 1.45, 1.55], 0.95).unwrap();
        assert_eq!(iv.estimate, 1.5);
        assert!(iv.low >= 1.4 && iv.high <= 1.6, "{iv:?}");
        assert_eq!(judge_bounds(&iv, Some(1.3), None), Judgement::Pass);
        assert!(paired_median(&[], 0.95).is_none());
    }

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn merged_quantile_matches_hdrhistogram_merge() {
        let a = hist((1..=1000).map(|i| i * 1000));
        let b = hist((1..=1000).map(|i| i * 2000));
        let th = TrialHistograms::new(&[a.clone(), b.clone()]);
        let mut m = a.clone();
        m.add(&b).unwrap();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let got = th.quantile(&[1, 1], q).unwrap();
            assert_eq!(got, m.highest_equivalent(m.value_at_quantile(q)), "q={q}");
        }
        // Weight 2 on `a` alone is `a`'s own distribution.
        let got = th.quantile(&[2, 0], 0.99).unwrap();
        assert_eq!(got, a.highest_equivalent(a.value_at_quantile(0.99)));
    }

    #[test]
    fn tail_ratio_sees_a_doubled_p99_and_not_an_unchanged_one() {
        // Five trials per side; the new side's slowest 2 % take twice as long.
        let base: Vec<_> = (0..5)
            .map(|t| hist((0..10_000).map(move |i| 100_000 + (i % 100) * 1000 + t * 500)))
            .collect();
        let slow: Vec<_> = (0..5)
            .map(|t| {
                hist((0..10_000).map(move |i| {
                    let v = 100_000 + (i % 100) * 1000 + t * 500;
                    if i % 100 >= 98 {
                        v * 2
                    } else {
                        v
                    }
                }))
            })
            .collect();
        let b = TrialHistograms::new(&base);
        let s = TrialHistograms::new(&slow);
        let same = ratio_of_quantiles(&b, &b, 0.99, 0.95).unwrap();
        assert!(same.low <= 1.0 && same.high >= 1.0, "{same:?}");
        assert_eq!(judge(&same, 1.25, false), Judgement::Pass);
        let worse = ratio_of_quantiles(&b, &s, 0.99, 0.95).unwrap();
        assert!(worse.estimate > 1.9 && worse.low > 1.25, "{worse:?}");
        assert_eq!(judge(&worse, 1.25, false), Judgement::Fail);
        // p50 did not move.
        let p50 = ratio_of_quantiles(&b, &s, 0.5, 0.95).unwrap();
        assert!((p50.estimate - 1.0).abs() < 0.01, "{p50:?}");
    }

    #[test]
    fn isotonic_pools_violators() {
        assert_eq!(isotonic(&[1.0, 3.0, 2.0, 4.0]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(
            isotonic(&[591.0, 317.0, 874.0, 708.0]),
            vec![454.0, 454.0, 791.0, 791.0]
        );
        assert_eq!(isotonic(&[1.0, 2.0]), vec![1.0, 2.0]);
    }
}
