//! Built-in tasks: character-level text, sine forecasting, the adding problem, and
//! next-step forecasting of a CSV series ([`crate::series`]).
//! Every batch is a pure function of (seed, step), so a resumed run sees the same data as
//! an uninterrupted one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
pub use crate::series::Series;
pub use crate::speech::SpeechTask;
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
    Speech,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Text => "text",
            TaskKind::Sine => "sine",
            TaskKind::Adding => "adding",
            TaskKind::Series => "series",
            TaskKind::Speech => "speech",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(TaskKind::Text),
            "sine" => Ok(TaskKind::Sine),
            "adding" => Ok(TaskKind::Adding),
            "series" => Ok(TaskKind::Series),
            "speech" => Ok(TaskKind::Speech),
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
    Speech(Box<SpeechTask>),
}

impl Task {
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Text(_) => TaskKind::Text,
            Task::Sine(_) => TaskKind::Sine,
            Task::Adding(_) => TaskKind::Adding,
            Task::Series(_) => TaskKind::Series,
            Task::Speech(_) => TaskKind::Speech,
        }
    }

    /// (input size, output size)
    pub fn io(&self) -> (usize, usize) {
        match self {
            Task::Text(t) => (t.vocab.len(), t.vocab.len()),
            Task::Sine(_) => (1, 1),
            Task::Adding(_) => (2, 1),
            Task::Series(s) => (s.input_size(), 1),
            Task::Speech(s) => s.io(),
        }
    }

    pub fn loss(&self) -> LossKind {
        match self {
            Task::Text(_) => LossKind::CrossEntropy,
            Task::Speech(_) => SpeechTask::LOSS,
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
            Task::Speech(x) => Ok((x.batch(seed, step)?, true)),
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
            Task::Speech(x) => x.validation(),
        }
    }
}

fn rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(step);
    r
}

/// Characters per chunk when a text is split into training and validation parts (fewer
/// for texts under 20 such chunks, so that every text has at least 20 chunks).
pub const TEXT_CHUNK: usize = 1024;

/// Every `VALIDATION_EVERY`-th chunk of a text (the 10th, 20th, ...) is held out.
pub const VALIDATION_EVERY: usize = 10;

/// Character-level language modelling on a UTF-8 text.
///
/// The text is cut into chunks of [`TEXT_CHUNK`] characters; every
/// [`VALIDATION_EVERY`]-th whole chunk is held out for validation (about 10 %, drawn from
/// all over the text rather than from its end), the other chunks, and a shorter last one,
/// are joined in order as the training text.
#[derive(Debug, Clone)]
pub struct Text {
    pub vocab: Vec<char>,
    train: Vec<u32>,
    /// The held-out chunks, one after another, each `chunk` characters long.
    val: Vec<u32>,
    chunk: usize,
    held_out: Vec<std::ops::Range<usize>>,
}

impl Text {
    /// Vocabulary from the corpus; interleaved chunks held out for validation.
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
        let chunk = (ids.len() / (2 * VALIDATION_EVERY)).min(TEXT_CHUNK);
        let held_out: Vec<_> = (0..ids.len() / chunk)
            .filter(|k| k % VALIDATION_EVERY == VALIDATION_EVERY - 1)
            .map(|k| k * chunk..(k + 1) * chunk)
            .collect();
        let mut train = Vec::with_capacity(ids.len());
        let mut val = Vec::with_capacity(held_out.len() * chunk);
        let mut at = 0;
        for r in &held_out {
            train.extend_from_slice(&ids[at..r.start]);
            val.extend_from_slice(&ids[r.clone()]);
            at = r.end;
        }
        train.extend_from_slice(&ids[at..]);
        Ok(Text {
            vocab,
            train,
            val,
            chunk,
            held_out,
        })
    }

    /// The corpus's held-out character ranges (character indices, not bytes).
    pub fn held_out(&self) -> &[std::ops::Range<usize>] {
        &self.held_out
    }

    /// Characters in the training text.
    pub fn training_len(&self) -> usize {
        self.train.len()
    }

    /// Rebuilds a task from a saved vocabulary (for sampling).
    pub fn from_vocab(vocab: Vec<char>) -> Self {
        Text {
            vocab,
            train: Vec::new(),
            val: Vec::new(),
            chunk: 0,
            held_out: Vec::new(),
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
            lengths: None,
        };
        Ok((batch, chunk == 0))
    }

    /// The whole validation part as one stream per held-out chunk, from h_0 = 0, so that
    /// no stream runs from one chunk into an unrelated one: B = chunks, T = chunk − 1.
    fn validation(&self) -> Result<Batch> {
        if self.val.is_empty() {
            return Err(Error::BadText(
                "this task holds no validation text (it was built from a vocabulary alone)".into(),
            ));
        }
        let b = self.held_out.len();
        let t = self.chunk - 1;
        let mut inputs = Vec::with_capacity(t * b);
        let mut targets = Vec::with_capacity(t * b);
        for s in 0..t {
            for r in 0..b {
                inputs.push(self.val[r * self.chunk + s]);
                targets.push(self.val[r * self.chunk + s + 1]);
            }
        }
        Ok(Batch {
            t,
            b,
            x: self.one_hot(&inputs),
            targets: Targets::Classes(targets),
            weights: vec![1.0; t * b],
            lengths: None,
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
            lengths: None,
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
            lengths: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(t: &Text, ids: &[u32]) -> String {
        ids.iter().map(|&i| t.vocab[i as usize]).collect()
    }

    #[test]
    fn text_validation_is_every_tenth_chunk_about_a_tenth_of_the_corpus() {
        let corpus: Vec<char> = DEFAULT_CORPUS.chars().collect();
        let t = Text::new(DEFAULT_CORPUS).unwrap();
        let held: usize = t.held_out().iter().map(|r| r.len()).sum();
        assert_eq!(held + t.training_len(), corpus.len());
        let share = held as f64 / corpus.len() as f64;
        assert!((0.08..=0.11).contains(&share), "held out {share}");
        // Interleaved: chunks 9, 19, ... of TEXT_CHUNK characters, spread over the corpus.
        for (k, r) in t.held_out().iter().enumerate() {
            let c = (VALIDATION_EVERY * (k + 1) - 1) * TEXT_CHUNK;
            assert_eq!(*r, c..c + TEXT_CHUNK);
        }
        assert!(t.held_out().last().unwrap().end > corpus.len() * 3 / 4);
        assert!(t.held_out()[0].start < corpus.len() / 4);
        // The training text is the rest, in order.
        let mut rest = String::new();
        let mut at = 0;
        for r in t.held_out() {
            rest.extend(&corpus[at..r.start]);
            at = r.end;
        }
        rest.extend(&corpus[at..]);
        assert_eq!(decode(&t, &t.train), rest);
    }

    #[test]
    fn text_validation_streams_each_stay_inside_one_held_out_chunk() {
        let corpus: Vec<char> = DEFAULT_CORPUS.chars().collect();
        let t = Text::new(DEFAULT_CORPUS).unwrap();
        let v = t.validation().unwrap();
        assert_eq!((v.t, v.b), (TEXT_CHUNK - 1, t.held_out().len()));
        let Targets::Classes(y) = &v.targets else {
            panic!("text targets are classes")
        };
        let vocab = t.vocab.len();
        for (r, range) in t.held_out().iter().enumerate() {
            let chunk: String = corpus[range.clone()].iter().collect();
            let inputs: Vec<u32> = (0..v.t)
                .map(|s| {
                    let k = s * v.b + r;
                    v.x[k * vocab..(k + 1) * vocab]
                        .iter()
                        .position(|&x| x == 1.0)
                        .unwrap() as u32
                })
                .collect();
            let targets: Vec<u32> = (0..v.t).map(|s| y[s * v.b + r]).collect();
            let chunk_chars: Vec<char> = chunk.chars().collect();
            assert_eq!(
                decode(&t, &inputs),
                chunk_chars[..v.t].iter().collect::<String>()
            );
            assert_eq!(
                decode(&t, &targets),
                chunk_chars[1..].iter().collect::<String>()
            );
        }
    }

    #[test]
    fn text_split_is_deterministic_and_short_texts_still_hold_out_a_tenth() {
        let a = Text::new(DEFAULT_CORPUS).unwrap();
        let b = Text::new(DEFAULT_CORPUS).unwrap();
        assert_eq!(
            (&a.train, &a.val, a.held_out()),
            (&b.train, &b.val, b.held_out())
        );
        // 200 characters (the least accepted): 20 chunks of 10.
        let short: String = "0123456789".repeat(20);
        let t = Text::new(&short).unwrap();
        assert_eq!(t.held_out(), [90..100, 190..200]);
        let v = t.validation().unwrap();
        assert_eq!((v.t, v.b), (9, 2));
        assert!(Text::from_vocab(a.vocab.clone()).validation().is_err());
    }

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
        assert_eq!(
            b,
            task.batch(5, 3, 8, 4).unwrap().0,
            "a function of (seed, step)"
        );
        assert_ne!(b, task.batch(5, 4, 8, 4).unwrap().0);
        assert_eq!(b.x.len(), 8 * 4 * 2);
        let v = task.validation(5, 8, 4).unwrap();
        assert_eq!(v.weights.iter().sum::<f32>(), 5.0, "the last 5 of 50 rows");
    }
}
