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
