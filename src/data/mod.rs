//! The data front ends: built-in tasks (character-level text, sine forecasting, the adding
//! problem), next-step forecasting of a CSV series (feature `series`) and speech
//! recognition from WAV files (feature `audio`). They turn data into training batches;
//! running a trained model on it is [`crate::infer`]'s.
//! Every batch is a pure function of (seed, step), so a resumed run sees the same data as
//! an uninterrupted one.

#[cfg(feature = "audio")]
pub mod audio;
#[cfg(any(feature = "series", feature = "audio"))]
mod csv_lines;
#[cfg(feature = "series")]
pub mod seasonal;
#[cfg(feature = "series")]
pub mod series;
#[cfg(feature = "audio")]
pub mod speech;
pub mod synthetic;
pub mod text;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::train::{Batch, LossKind};
#[cfg(feature = "series")]
pub use series::Series;
#[cfg(feature = "audio")]
pub use speech::SpeechTask;
pub use synthetic::{Adding, Sine};
pub use text::{Text, DEFAULT_CORPUS};

/// The tasks by name: what a checkpoint records (`Checkpoint::task`) and `train --task`
/// takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Text,
    Sine,
    Adding,
    Series,
    Speech,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Text,
        TaskKind::Sine,
        TaskKind::Adding,
        TaskKind::Series,
        TaskKind::Speech,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Text => "text",
            TaskKind::Sine => "sine",
            TaskKind::Adding => "adding",
            TaskKind::Series => "series",
            TaskKind::Speech => "speech",
        }
    }

    /// The task named `s` (a checkpoint's task), or [`Error::BadTask`].
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::BadTask(s.to_string()))
    }
}

impl std::str::FromStr for TaskKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// A task: sizes, loss, and batches for training and validation.
#[derive(Debug, Clone)]
pub enum Task {
    Text(Text),
    Sine(Sine),
    Adding(Adding),
    #[cfg(feature = "series")]
    Series(Series),
    #[cfg(feature = "audio")]
    Speech(Box<SpeechTask>),
}

impl Task {
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Text(_) => TaskKind::Text,
            Task::Sine(_) => TaskKind::Sine,
            Task::Adding(_) => TaskKind::Adding,
            #[cfg(feature = "series")]
            Task::Series(_) => TaskKind::Series,
            #[cfg(feature = "audio")]
            Task::Speech(_) => TaskKind::Speech,
        }
    }

    /// (input size, output size)
    pub fn io(&self) -> (usize, usize) {
        match self {
            Task::Text(t) => (t.vocab.len(), t.vocab.len()),
            Task::Sine(_) => (1, 1),
            Task::Adding(_) => (2, 1),
            #[cfg(feature = "series")]
            Task::Series(s) => (s.input_size(), s.ahead()),
            #[cfg(feature = "audio")]
            Task::Speech(s) => s.io(),
        }
    }

    pub fn loss(&self) -> LossKind {
        match self {
            Task::Text(_) => LossKind::CrossEntropy,
            #[cfg(feature = "audio")]
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
            #[cfg(feature = "series")]
            Task::Series(x) => Ok((x.batch(&mut rng(seed, step), t, b)?, true)),
            #[cfg(feature = "audio")]
            Task::Speech(x) => Ok((x.batch(seed, step)?, true)),
        }
    }

    /// A fixed validation batch. Text and series tasks use their held-out parts whole,
    /// whatever `b` (and for series at most `t` steps; see `Series`).
    pub fn validation(&self, seed: u64, t: usize, b: usize) -> Result<Batch> {
        let mut r = rng(seed ^ 0x5eed_0fa1, u64::MAX);
        match self {
            Task::Text(x) => x.validation(),
            Task::Sine(x) => Ok(x.batch(&mut r, t, b, true)),
            Task::Adding(x) => Ok(x.batch(&mut r, t, b.max(256))),
            #[cfg(feature = "series")]
            Task::Series(x) => x.validation(t),
            #[cfg(feature = "audio")]
            Task::Speech(x) => x.validation(),
        }
    }
}

fn rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(step);
    r
}

#[cfg(all(test, feature = "series"))]
mod tests {
    use super::*;

    #[test]
    fn series_task_has_its_name_sizes_loss_and_batches() {
        let mut csv = String::from("day,load,temp\n");
        for r in 0..50 {
            csv += &format!("d{r},{},{}\n", r * 2, 20 - r);
        }
        let inputs = ["load".to_string(), "temp".to_string()];
        let data = series::SeriesData::from_csv_str(&csv, "t.csv", None, Some(&inputs)).unwrap();
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
