//! Built-in tasks: character-level text, sine forecasting, the adding problem, and
//! next-step forecasting of a CSV series ([`crate::series`]).
//! Every batch is a pure function of (seed, step), so a resumed run sees the same data as
//! an uninterrupted one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
pub use crate::series::Series;
use crate::train::{Batch, LossKind, Targets};

/// The default text corpus: this project's own README and sources, embedded at build time.
pub const DEFAULT_CORPUS: &str = concat!(
    include_str!("../README.md"),
    include_str!("cpu/mod.rs"),
    include_str!("model/mod.rs"),
    include_str!("train/mod.rs"),
    include_str!("../shaders/gemm.wgsl"),
    include_str!("../shaders/optim.wgsl"),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Text,
    Sine,
    Adding,
    Series,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Text => "text",
            TaskKind::Sine => "sine",
            TaskKind::Adding => "adding",
            TaskKind::Series => "series",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(TaskKind::Text),
            "sine" => Ok(TaskKind::Sine),
            "adding" => Ok(TaskKind::Adding),
            "series" => Ok(TaskKind::Series),
            _ => Err(Error::BadTask(s.to_string())),
        }
    }
}

/// A task: sizes, loss, and batches for training and validation.
#[derive(Debug, Clone)]
pub enum Task {
    Text(Text),
    Sine(Sine),
    Adding(Adding),
    Series(Series),
}

impl Task {
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Text(_) => TaskKind::Text,
            Task::Sine(_) => TaskKind::Sine,
            Task::Adding(_) => TaskKind::Adding,
            Task::Series(_) => TaskKind::Series,
        }
    }

    /// (input size, output size)
    pub fn io(&self) -> (usize, usize) {
        match self {
            Task::Text(t) => (t.vocab.len(), t.vocab.len()),
            Task::Sine(_) => (1, 1),
            Task::Adding(_) => (2, 1),
            Task::Series(s) => (s.input_size(), 1),
        }
    }

    pub fn loss(&self) -> LossKind {
        match self {
            Task::Text(_) => LossKind::CrossEntropy,
            _ => LossKind::Mse,
        }
    }

    /// Whether h_T carries into the next batch (text streams do; the others are i.i.d.).
    pub fn stateful(&self) -> bool {
        matches!(self, Task::Text(_))
    }

    /// The training batch of `step` (0-based), and whether the carried state must be reset
    /// before it (the streams wrapped around).
    pub fn batch(&self, seed: u64, step: u64, t: usize, b: usize) -> Result<(Batch, bool)> {
        match self {
            Task::Text(x) => x.batch(step, t, b),
            Task::Sine(x) => Ok((x.batch(&mut rng(seed, step), t, b, false), true)),
            Task::Adding(x) => Ok((x.batch(&mut rng(seed, step), t, b), true)),
            Task::Series(x) => Ok((x.batch(&mut rng(seed, step), t, b)?, true)),
        }
    }

    /// A fixed validation batch. Text and series tasks use their held-out parts whole,
    /// whatever `b` (and for series at most `t` steps; see [`Series`]).
    pub fn validation(&self, seed: u64, t: usize, b: usize) -> Result<Batch> {
        let mut r = rng(seed ^ 0x5eed_0fa1, u64::MAX);
        match self {
            Task::Text(x) => x.validation(),
            Task::Sine(x) => Ok(x.batch(&mut r, t, b, true)),
            Task::Adding(x) => Ok(x.batch(&mut r, t, b.max(256))),
            Task::Series(x) => x.validation(t),
        }
    }
}

fn rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(step);
    r
}

/// Character-level language modelling on a UTF-8 text.
#[derive(Debug, Clone)]
pub struct Text {
    pub vocab: Vec<char>,
    train: Vec<u32>,
    val: Vec<u32>,
}

impl Text {
    /// Vocabulary from the corpus; the last 10% is held out for validation.
    pub fn new(corpus: &str) -> Result<Self> {
        let mut vocab: Vec<char> = corpus.chars().collect();
        vocab.sort_unstable();
        vocab.dedup();
        let ids: Vec<u32> = corpus
            .chars()
            .map(|c| vocab.binary_search(&c).unwrap_or(0) as u32)
            .collect();
        if ids.len() < 200 || vocab.len() < 2 {
            return Err(Error::BadText(format!(
                "the text has {} characters and {} distinct ones; at least 200 and 2 are needed",
                ids.len(),
                vocab.len()
            )));
        }
        let split = ids.len() * 9 / 10;
        Ok(Text {
            vocab,
            val: ids[split..].to_vec(),
            train: ids[..split].to_vec(),
        })
    }

    /// Rebuilds a task from a saved vocabulary (for sampling).
    pub fn from_vocab(vocab: Vec<char>) -> Self {
        Text {
            vocab,
            train: Vec::new(),
            val: Vec::new(),
        }
    }

    pub fn index(&self, c: char) -> Option<u32> {
        self.vocab.binary_search(&c).ok().map(|i| i as u32)
    }

    fn one_hot(&self, ids: &[u32]) -> Vec<f32> {
        let v = self.vocab.len();
        let mut x = vec![0.0; ids.len() * v];
        for (k, &id) in ids.iter().enumerate() {
            x[k * v + id as usize] = 1.0;
        }
        x
    }

    /// B parallel streams over the training text, each advancing T characters a step.
    fn batch(&self, step: u64, t: usize, b: usize) -> Result<(Batch, bool)> {
        let stream = self.train.len() / b;
        if stream < t + 2 {
            return Err(Error::BadText(format!(
                "{} training characters cannot feed {b} streams of {t}+1 characters; \
                 use a longer text or smaller --batch/--seq",
                self.train.len()
            )));
        }
        let chunks = ((stream - 1) / t) as u64;
        let chunk = step % chunks;
        let mut inputs = Vec::with_capacity(t * b);
        let mut targets = Vec::with_capacity(t * b);
        for s in 0..t {
            for r in 0..b {
                let at = r * stream + chunk as usize * t + s;
                inputs.push(self.train[at]);
                targets.push(self.train[at + 1]);
            }
        }
        let batch = Batch {
            t,
            b,
            x: self.one_hot(&inputs),
            targets: Targets::Classes(targets),
            weights: vec![1.0; t * b],
        };
        Ok((batch, chunk == 0))
    }

    /// The whole validation split as 8 streams (or fewer for short texts), from h_0 = 0.
    fn validation(&self) -> Result<Batch> {
        let b = (self.val.len() / 64).clamp(1, 8);
        let t = (self.val.len() - 1) / b;
        let mut inputs = Vec::with_capacity(t * b);
        let mut targets = Vec::with_capacity(t * b);
        for s in 0..t {
            for r in 0..b {
                inputs.push(self.val[r * t + s]);
                targets.push(self.val[r * t + s + 1]);
            }
        }
        Ok(Batch {
            t,
            b,
            x: self.one_hot(&inputs),
            targets: Targets::Classes(targets),
            weights: vec![1.0; t * b],
        })
    }
}

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
    fn batch(&self, r: &mut ChaCha8Rng, t: usize, b: usize, validation: bool) -> Batch {
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
    fn batch(&self, r: &mut ChaCha8Rng, t: usize, b: usize) -> Batch {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_task_has_its_name_sizes_loss_and_batches() {
        let mut csv = String::from("day,load,temp\n");
        for r in 0..50 {
            csv += &format!("d{r},{},{}\n", r * 2, 20 - r);
        }
        let inputs = ["load".to_string(), "temp".to_string()];
        let data =
            crate::series::SeriesData::from_csv_str(&csv, "t.csv", None, Some(&inputs)).unwrap();
        let task = Task::Series(Series::new(&data).unwrap());
        assert_eq!(task.kind(), TaskKind::Series);
        assert_eq!(TaskKind::parse("series").unwrap(), TaskKind::Series);
        assert_eq!(task.kind().name(), "series");
        assert_eq!(task.io(), (2, 1));
        assert_eq!(task.loss(), LossKind::Mse);
        assert!(!task.stateful());
        let (b, reset) = task.batch(5, 3, 8, 4).unwrap();
        assert!(reset);
        assert_eq!(b, task.batch(5, 3, 8, 4).unwrap().0, "a function of (seed, step)");
        assert_ne!(b, task.batch(5, 4, 8, 4).unwrap().0);
        assert_eq!(b.x.len(), 8 * 4 * 2);
        let v = task.validation(5, 8, 4).unwrap();
        assert_eq!(v.weights.iter().sum::<f32>(), 5.0, "the last 5 of 50 rows");
    }
}
