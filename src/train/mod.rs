//! Training: batches, losses ([`loss`]), optimizers and clipping ([`optim`]), the GPU
//! [`Trainer`] (one submit per step; truncated BPTT with the hidden state carried across
//! chunks), data-parallel training across processes ([`dist`]), and the same on the CPU
//! reference ([`CpuTrainer`]).

mod cpu_trainer;
mod data_parallel;
pub mod dist;
mod gpu_trainer;
pub mod loss;
pub mod optim;

pub use cpu_trainer::CpuTrainer;
pub use data_parallel::StepTimes;
pub use gpu_trainer::Trainer;
pub use loss::LossKind;
pub use optim::{
    clip_and_update, LrSchedule, OptimState, OptimizerConfig, OptimizerKind, CLIP_EPS,
};

use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig, State};

/// How to train: optimizer, learning-rate schedule, loss, clipping, and whether the
/// hidden state carries over from one batch to the next (stateful truncated BPTT).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrainConfig {
    pub optimizer: OptimizerConfig,
    /// Default [`LrSchedule::Constant`].
    pub schedule: LrSchedule,
    pub loss: LossKind,
    /// Rescale gradients by min(1, this / (norm + [`CLIP_EPS`])), norm the global L2 norm of all
    /// of them (PyTorch's clip_grad_norm_, applied to the gradients before the
    /// optimizer adds weight decay). Default Some(5.0).
    pub clip_norm: Option<f32>,
    /// Clamp each gradient element to ±this (after norm clipping). Default None.
    pub clip_value: Option<f32>,
    /// Carry h_T of one batch into h_0 of the next (no gradient crosses the boundary).
    /// Default false.
    pub stateful: bool,
    /// The seed of the model's dropout masks (with the step, see
    /// [`crate::model::dropout`]); unused without dropout. Default 0.
    pub dropout_seed: u64,
}

impl TrainConfig {
    pub fn new(optimizer: OptimizerConfig, loss: LossKind) -> Self {
        TrainConfig {
            optimizer,
            schedule: LrSchedule::Constant,
            loss,
            clip_norm: Some(5.0),
            clip_value: None,
            stateful: false,
            dropout_seed: 0,
        }
    }

    /// The same with dropout masks drawn from `seed`.
    pub fn with_dropout_seed(mut self, seed: u64) -> Self {
        self.dropout_seed = seed;
        self
    }

    /// The same with learning-rate schedule `schedule`.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The learning rate of the `step`-th update (1-based), from the schedule.
    pub fn lr_for_step(&self, step: u64) -> f32 {
        self.schedule
            .lr_at(self.optimizer.lr, step.saturating_sub(1))
    }

    /// Rejects non-finite or negative hyperparameters and impossible schedules.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optimizer;
        let fields = [
            ("learning rate", o.lr, false),
            ("momentum", o.momentum, true),
            ("beta1", o.beta1, true),
            ("beta2", o.beta2, true),
            ("eps", o.eps, true),
            ("weight decay", o.weight_decay, true),
            ("clip norm", self.clip_norm.unwrap_or(1.0), false),
            ("clip value", self.clip_value.unwrap_or(1.0), false),
        ];
        for (what, v, zero_ok) in fields {
            if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
                return Err(Error::BadHyperparameter {
                    what,
                    value: v,
                    expected: if zero_ok {
                        "finite and ≥ 0"
                    } else {
                        "finite and > 0"
                    },
                });
            }
        }
        for (what, v) in [
            ("momentum", o.momentum),
            ("beta1", o.beta1),
            ("beta2", o.beta2),
        ] {
            if v >= 1.0 {
                return Err(Error::BadHyperparameter {
                    what,
                    value: v,
                    expected: "below 1",
                });
            }
        }
        self.schedule.validate(o.lr)
    }
}

/// Targets of one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// (T, B) class indices, for cross-entropy.
    Classes(Vec<u32>),
    /// (T, B, O) values, for MSE.
    Values(Vec<f32>),
    /// One label sequence per row, for CTC.
    Labels(crate::ctc::Labels),
}

/// One batch: inputs (features, or token ids for a model with an embedding), targets,
/// per-(t, b) weights (0 masks a position out) and optional per-row lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub t: usize,
    pub b: usize,
    /// (T, B, I) features; empty where the batch holds [`Batch::tokens`].
    pub x: Vec<f32>,
    /// (T, B) token ids, for a model with an embedding ([`Batch::from_tokens`]); `None`
    /// for features.
    pub tokens: Option<Vec<u32>>,
    pub targets: Targets,
    /// (T, B); the loss is Σ w·loss / Σ w (also divided by O for MSE). Ones for CTC.
    pub weights: Vec<f32>,
    /// Steps of each row (B), each in 1..=T, for a right-padded batch: the model runs as
    /// [`crate::Rnn::forward_with_lengths`] (a reverse direction starts at the row's own
    /// end; y is 0 past it) and CTC reads only those steps. None: every row has T.
    pub lengths: Option<Vec<usize>>,
}

impl Batch {
    /// A batch of T·B positions, every one of weight 1, no per-row lengths: `x` (T, B, I)
    /// and `targets`, (T, B) classes, (T, B, O) values or B label sequences. Checks that T
    /// and B are positive and that the lengths are whole multiples of T·B (T·B for
    /// classes; B sequences whose lengths add up for labels); the sizes I and O are
    /// checked against the model when the batch is used.
    pub fn new(t: usize, b: usize, x: Vec<f32>, targets: Targets) -> Result<Batch> {
        positions(t, b)?;
        per_position("batch x", x.len(), (t, b), "I")?;
        Self::checked(t, b, x, None, targets)
    }

    /// A batch of token ids (T, B), time-major, for a model with an embedding; otherwise
    /// as [`Batch::new`]. The ids are checked against the model's vocabulary when the
    /// batch is used.
    pub fn from_tokens(t: usize, b: usize, ids: Vec<u32>, targets: Targets) -> Result<Batch> {
        positions(t, b)?;
        crate::shapes::check_len("batch token ids", &[t, b], ids.len())?;
        Self::checked(t, b, Vec::new(), Some(ids), targets)
    }

    /// The batch, once its targets are checked against T and B.
    fn checked(
        t: usize,
        b: usize,
        x: Vec<f32>,
        tokens: Option<Vec<u32>>,
        targets: Targets,
    ) -> Result<Batch> {
        match &targets {
            Targets::Classes(c) => {
                crate::shapes::check_len("batch class targets", &[t, b], c.len())?
            }
            Targets::Values(v) => per_position("batch value targets", v.len(), (t, b), "O")?,
            Targets::Labels(l) => check_labels(l, b)?,
        }
        Ok(Batch {
            t,
            b,
            x,
            tokens,
            targets,
            weights: vec![1.0; t * b],
            lengths: None,
        })
    }

    /// The same with per-row lengths (B), each in 1..=T.
    pub fn with_lengths(mut self, lengths: Vec<usize>) -> Result<Batch> {
        crate::shapes::check_lengths(&lengths, self.t, self.b)?;
        self.lengths = Some(lengths);
        Ok(self)
    }

    /// The same with per-position weights (T, B) instead of ones; checks their length.
    pub fn with_weights(mut self, weights: Vec<f32>) -> Result<Batch> {
        crate::shapes::check_len("batch weights", &[self.t, self.b], weights.len())?;
        self.weights = weights;
        Ok(self)
    }

    /// Checks every length against the model and loss; returns the loss normaliser.
    pub(crate) fn check(&self, cfg: &RnnConfig, loss: LossKind) -> Result<f32> {
        let len = |what, got: usize, shape: Vec<usize>| crate::shapes::check_len(what, &shape, got);
        let (t, b) = match &self.tokens {
            Some(ids) => {
                if !self.x.is_empty() {
                    return Err(Error::IncompatibleArgs(
                        "the batch holds both token ids and features; give one".into(),
                    ));
                }
                cfg.check_tokens(ids, self.t, self.b)?
            }
            None => {
                let tb = cfg.check_input(&[self.t, self.b, cfg.input_size])?;
                len(
                    "batch x",
                    self.x.len(),
                    vec![self.t, self.b, cfg.input_size],
                )?;
                tb
            }
        };
        len("batch weights", self.weights.len(), vec![t, b])?;
        if let Some(l) = &self.lengths {
            crate::shapes::check_lengths(l, t, b)?;
        }
        match (&self.targets, loss) {
            (Targets::Labels(l), LossKind::Ctc { blank, .. }) => {
                crate::ctc::check([t, b, cfg.output_size], &self.input_lengths(), l, blank)?;
                if self.weights.iter().any(|&w| w != 1.0) {
                    return Err(Error::BadHyperparameter {
                        what: "batch weights with CTC",
                        value: self
                            .weights
                            .iter()
                            .copied()
                            .find(|&w| w != 1.0)
                            .unwrap_or(0.0),
                        expected: "all 1 (CTC's mean weighs each row by 1 / its target length)",
                    });
                }
                return Ok(1.0);
            }
            (Targets::Classes(c), LossKind::CrossEntropy) => {
                len("batch class targets", c.len(), vec![t, b])?;
                if let Some(&bad) = c.iter().find(|&&k| k as usize >= cfg.output_size) {
                    return Err(Error::BadTarget {
                        class: bad,
                        classes: cfg.output_size,
                    });
                }
            }
            (Targets::Values(v), LossKind::Mse) => {
                len("batch value targets", v.len(), vec![t, b, cfg.output_size])?
            }
            _ => return Err(Error::LossMismatch),
        }
        let total: f32 = self.weights.iter().sum();
        if !total.is_finite() || self.weights.iter().any(|w| *w < 0.0) {
            return Err(Error::BadHyperparameter {
                what: "batch weights",
                value: total,
                expected: "finite and ≥ 0",
            });
        }
        let per = match loss {
            LossKind::Mse => total * cfg.output_size as f32,
            _ => total,
        };
        Ok(if per > 0.0 { 1.0 / per } else { 0.0 })
    }
}

impl Batch {
    /// The batch of rows `rows` only (time-major: each step's slice of those rows), for a
    /// rank of data-parallel training; CTC label targets keep those rows' sequences.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Result<Batch> {
        if rows.is_empty() || rows.end > self.b {
            return Err(Error::Distributed(format!(
                "rows {rows:?} of a batch of {} rows",
                self.b
            )));
        }
        fn take<T: Copy>(v: &[T], t: usize, b: usize, rows: &std::ops::Range<usize>) -> Vec<T> {
            let per = v.len() / (t * b);
            (0..t)
                .flat_map(|s| &v[(s * b + rows.start) * per..(s * b + rows.end) * per])
                .copied()
                .collect()
        }
        let (t, b) = (self.t, self.b);
        let targets = match &self.targets {
            Targets::Classes(c) => Targets::Classes(take(c, t, b, &rows)),
            Targets::Values(v) => Targets::Values(take(v, t, b, &rows)),
            Targets::Labels(l) => {
                check_labels(l, b)?;
                let mine: Vec<&[u32]> = rows.clone().map(|r| l.row(r)).collect();
                Targets::Labels(crate::ctc::Labels::from_rows(&mine))
            }
        };
        Ok(Batch {
            t,
            b: rows.len(),
            x: if self.x.is_empty() {
                Vec::new()
            } else {
                take(&self.x, t, b, &rows)
            },
            tokens: self.tokens.as_ref().map(|ids| take(ids, t, b, &rows)),
            targets,
            weights: take(&self.weights, t, b, &rows),
            lengths: self.lengths.as_ref().map(|l| l[rows.clone()].to_vec()),
        })
    }

    /// Each row's steps: [`Batch::lengths`], or T for every row.
    pub fn input_lengths(&self) -> Vec<usize> {
        self.lengths.clone().unwrap_or_else(|| vec![self.t; self.b])
    }
}

/// Checks that `got` values are a whole, positive multiple `name` of T·B per position.
fn per_position(what: &'static str, got: usize, (t, b): (usize, usize), name: &str) -> Result<()> {
    if got == 0 || !got.is_multiple_of(t * b) {
        return Err(Error::Shape {
            what,
            expected: format!("T·B·{name} = {t}·{b}·{name} values, {name} ≥ 1"),
            got: vec![got],
        });
    }
    Ok(())
}

/// T·B, checking that both are positive and the product fits.
fn positions(t: usize, b: usize) -> Result<usize> {
    crate::shapes::nonzero("batch T", t)?;
    crate::shapes::nonzero("batch B", b)?;
    t.checked_mul(b).ok_or(Error::TooLarge {
        what: "batch T·B",
        value: u64::MAX,
        limit: usize::MAX as u64,
        why: "it overflows usize",
    })
}

/// B label sequences whose lengths add up to the labels given.
fn check_labels(l: &crate::ctc::Labels, b: usize) -> Result<()> {
    crate::shapes::check_len("batch CTC target lengths", &[b], l.lengths.len())?;
    let total: usize = l.lengths.iter().sum();
    crate::shapes::check_len("batch CTC target labels", &[total], l.labels.len())
}

/// What one training step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch before the update.
    pub loss: f32,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f32,
    /// The loss or the gradient norm was NaN or infinite: the update was not applied
    /// (parameters and optimizer state are as they were before the step).
    pub skipped: bool,
    /// Which step this was (1 for the first; skipped steps count).
    pub step: u64,
    /// The learning rate the schedule gave this step (also when it was skipped).
    pub lr: f32,
}

/// A carried state and its batch size B: (B, state (L·D, B, H) each).
pub type CarriedState = (usize, State<Vec<f32>>);

/// Optimizer moments: (m, v), each shaped like the parameters.
pub type Moments = (Params<Vec<f32>>, Params<Vec<f32>>);

/// Training on the GPU ([`Trainer`]) or on the CPU reference ([`CpuTrainer`]).
pub trait Train {
    /// One step: forward, loss, backward, clip, update.
    fn step(&mut self, batch: &Batch) -> Result<StepStats>;
    /// Where the last data-parallel step's time went (None: a single-process step).
    fn step_times(&self) -> Option<StepTimes> {
        None
    }
    /// The mean loss on a batch, from h_0 = 0, without changing anything.
    fn evaluate(&mut self, batch: &Batch) -> Result<f32>;
    /// Current parameters.
    fn params(&self) -> Result<Params<Vec<f32>>>;
    /// Forgets the carried hidden state.
    fn reset_state(&mut self);
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// The model trained.
    fn rnn_config(&self) -> &RnnConfig;
    /// How it is trained.
    fn train_config(&self) -> &TrainConfig;
    /// Optimizer moments (m, v).
    fn optim_state(&self) -> Result<Moments>;
    /// The carried state as (B, state (L·D, B, H) each), if any: the whole batch's, so
    /// under data-parallel training a collective every rank must call (it gathers the
    /// ranks' rows).
    fn carried_state(&self) -> Result<Option<CarriedState>>;
    /// Restores optimizer moments, step count and carried state (to resume a run; the
    /// whole batch's state, of which each data-parallel rank keeps its rows).
    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carried_state: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()>;
}
