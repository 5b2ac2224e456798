//! Synthetic tasks made in code: next-step forecasting of a noisy sum of sines, and the
//! adding problem.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::train::{Batch, Targets};

/// Next-step forecasting of a noisy sum of sines.
#[derive(Debug, Clone)]
pub struct Sine {
    noise: f32,
}

impl Default for Sine {
    fn default() -> Self {
        Sine { noise: 0.05 }
    }
}

impl Sine {
    fn value(n: f64) -> f32 {
        (0.6 * (0.11 * n).sin() + 0.4 * (0.037 * n + 1.0).sin()) as f32
    }

    /// Windows starting at random points; validation windows come from a region of the
    /// series that training never sees (n ≥ 10^7).
    pub(super) fn batch(&self, r: &mut ChaCha8Rng, t: usize, b: usize, validation: bool) -> Batch {
        let mut x = vec![0.0; t * b];
        let mut y = vec![0.0; t * b];
        for row in 0..b {
            let start = r.random_range(0..1_000_000u64) + if validation { 10_000_000 } else { 0 };
            for s in 0..=t {
                let v = Sine::value((start + s as u64) as f64)
                    + self.noise * r.random_range(-1.0..1.0f32);
                if s < t {
                    x[s * b + row] = v;
                }
                if s > 0 {
                    y[(s - 1) * b + row] = v;
                }
            }
        }
        Batch {
            t,
            b,
            x,
            targets: Targets::Values(y),
            weights: vec![1.0; t * b],
            lengths: None,
            tokens: None,
        }
    }
}

/// The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): each
/// step has a value in [0, 1) and a marker; exactly two steps are marked, one in each
/// half, and the target at the last step is the sum of the two marked values. Predicting
/// 1 always scores MSE 1/6 ≈ 0.167; a model that remembers scores near 0.
#[derive(Debug, Clone, Default)]
pub struct Adding;

impl Adding {
    pub(super) fn batch(&self, r: &mut ChaCha8Rng, t: usize, b: usize) -> Batch {
        let mut x = vec![0.0; t * b * 2];
        let mut y = vec![0.0; t * b];
        let mut w = vec![0.0; t * b];
        for row in 0..b {
            let half = (t / 2).max(1);
            let first = r.random_range(0..half);
            let second = if t > 1 {
                r.random_range(half.min(t - 1)..t)
            } else {
                0
            };
            let mut sum = 0.0;
            for s in 0..t {
                let v: f32 = r.random_range(0.0..1.0);
                let k = (s * b + row) * 2;
                x[k] = v;
                if s == first || s == second {
                    x[k + 1] = 1.0;
                    sum += v;
                }
            }
            y[(t - 1) * b + row] = sum;
            w[(t - 1) * b + row] = 1.0;
        }
        Batch {
            t,
            b,
            x,
            targets: Targets::Values(y),
            weights: w,
            lengths: None,
            tokens: None,
        }
    }
}

/// The kinds of synthetic series [`series`] makes, for measuring forecasts (none of them
/// third-party data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A linear trend (0.2 per step) plus a 12-step cycle (amplitude 3) plus Gaussian-ish
    /// noise (σ ≈ 0.5): CO₂-like.
    TrendSeason,
    /// A random walk of ±1-scale steps: nothing to learn beyond the last value.
    RandomWalk,
    /// A stationary sum of two cycles, 12 and 30 steps (amplitudes 2 and 1), plus noise
    /// (σ ≈ 0.3): sunspot- or El Niño-like.
    TwoCycles,
}

impl SeriesKind {
    pub const ALL: [SeriesKind; 3] = [
        SeriesKind::TrendSeason,
        SeriesKind::RandomWalk,
        SeriesKind::TwoCycles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SeriesKind::TrendSeason => "trend-season",
            SeriesKind::RandomWalk => "random-walk",
            SeriesKind::TwoCycles => "two-cycles",
        }
    }
}

/// `n` values of a synthetic series of `kind` drawn from `seed` (ChaCha8: the same values
/// on every platform).
pub fn series(kind: SeriesKind, n: usize, seed: u64) -> Vec<f64> {
    use rand::SeedableRng;
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    // A sum of 4 uniforms in [-1, 1): mean 0, σ = √(4/3) ≈ 1.15, close to Gaussian.
    let mut noise = move || (0..4).map(|_| r.random_range(-1.0..1.0)).sum::<f64>() / 1.155;
    let tau = std::f64::consts::TAU;
    let mut level = 0.0;
    (0..n)
        .map(|t| {
            let t = t as f64;
            match kind {
                SeriesKind::TrendSeason => {
                    10.0 + 0.2 * t + 3.0 * (tau * t / 12.0).sin() + 0.5 * noise()
                }
                SeriesKind::RandomWalk => {
                    level += noise();
                    level
                }
                SeriesKind::TwoCycles => {
                    2.0 * (tau * t / 12.0).sin() + (tau * t / 30.0).cos() + 0.3 * noise()
                }
            }
        })
        .collect()
}

/// The values as a CSV file's text: a header `t,value`, then one row per step.
pub fn series_csv(values: &[f64]) -> String {
    let mut s = String::from("t,value\n");
    for (t, v) in values.iter().enumerate() {
        s.push_str(&format!("{t},{v}\n"));
    }
    s
}
