//! Training: losses, optimizers and clipping on the GPU, one submit per step, truncated
//! BPTT with the hidden state carried across chunks; and the same on the CPU reference.

mod cpu_trainer;
pub mod dist;
mod gpu_trainer;

pub use cpu_trainer::{clip_and_update, CpuTrainer, OptimState};
pub use gpu_trainer::{StepTimes, Trainer};

use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig, State};

/// Which loss the output head is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy over O classes; targets are class indices.
    CrossEntropy,
    /// Mean squared error; targets are values (T, B, O).
    Mse,
    /// Connectionist temporal classification over the O outputs (one of them the blank),
    /// as PyTorch's `nn.CTCLoss(blank, reduction='mean', zero_infinity)` on
    /// `log_softmax(y, 2)`: targets are label sequences ([`Targets::Labels`]); each row
    /// reads its first [`Batch::lengths`] steps (all T without them); the batch weights
    /// must be ones. See [`crate::ctc`].
    Ctc { blank: u32, zero_infinity: bool },
}

impl LossKind {
    /// The options of the CTC loss this is, if it is one (reduction mean).
    pub fn ctc_options(self) -> Option<crate::ctc::CtcOptions> {
        match self {
            LossKind::Ctc {
                blank,
                zero_infinity,
            } => Some(crate::ctc::CtcOptions {
                blank,
                reduction: crate::ctc::Reduction::Mean,
                zero_infinity,
            }),
            _ => None,
        }
    }
}

/// Which update rule; each is `torch.optim`'s with the same name (dampening 0, no
/// nesterov, amsgrad or maximize; Adagrad's `lr_decay` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptimizerKind {
    /// `torch.optim.SGD`: g += wd·w; with momentum μ > 0, m = μ m + g and g = m; w -= lr g.
    Sgd,
    /// `torch.optim.Adam`, with bias correction; weight decay is L2 (g += wd·w before the
    /// moments).
    Adam,
    /// `torch.optim.AdamW`: Adam whose weight decay is decoupled, w -= lr·wd·w, outside the
    /// moments.
    AdamW,
    /// `torch.optim.Adagrad` (the classic min-char-rnn choice): g += wd·w; v += g²;
    /// w -= lr g / (√v + eps).
    Adagrad,
}

/// Optimizer hyperparameters; fields not used by the chosen kind are ignored. The
/// defaults of [`OptimizerConfig::new`] are `torch.optim`'s.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// The base learning rate (`lr`); a [`LrSchedule`] scales it per step.
    pub lr: f32,
    /// SGD's `momentum`; default 0 (plain SGD).
    pub momentum: f32,
    /// Adam's and AdamW's `betas[0]`; default 0.9.
    pub beta1: f32,
    /// Adam's and AdamW's `betas[1]`; default 0.999.
    pub beta2: f32,
    /// `eps`: 1e-8 for Adam and AdamW, 1e-10 for Adagrad (unused by SGD).
    pub eps: f32,
    /// `weight_decay`: L2 (added to the clipped gradient) for SGD, Adam and Adagrad,
    /// decoupled for AdamW; default 0 (PyTorch's AdamW defaults to 0.01, set it for that).
    pub weight_decay: f32,
}

impl OptimizerConfig {
    /// `kind` at learning rate `lr` with PyTorch's defaults for the rest (see the
    /// fields). Adagrad's accumulator starts at 0 (`initial_accumulator_value=0`).
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        OptimizerConfig {
            kind,
            lr,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: if kind == OptimizerKind::Adagrad {
                1e-10
            } else {
                1e-8
            },
            weight_decay: 0.0,
        }
    }

    /// The same with SGD momentum `momentum`.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// The same with weight decay `weight_decay` (see [`OptimizerConfig::weight_decay`]).
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// How the learning rate changes over training, as a factor of the base lr by the number
/// of updates already taken, s (0 for the first: PyTorch's `last_epoch` when
/// `scheduler.step()` follows each `optimizer.step()`). Trainers apply it from their step
/// counter, so a restored run continues it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum LrSchedule {
    /// lr at every step.
    #[default]
    Constant,
    /// Linear warmup from 0, then a half cosine down to `min_lr`, as transformers'
    /// `get_cosine_with_min_lr_schedule_with_warmup`: lr·s/warmup for s < warmup; then
    /// min_lr + (lr − min_lr)·(1 + cos(π·p))/2 with p = (s − warmup)/(total − warmup),
    /// held at min_lr from s = total on. The first update (s = 0) of a warmup has lr 0.
    Cosine {
        warmup_steps: u64,
        total_steps: u64,
        min_lr: f32,
    },
    /// `torch.optim.lr_scheduler.StepLR`: lr·gamma^⌊s / step_size⌋.
    Step { step_size: u64, gamma: f32 },
}

impl LrSchedule {
    /// The learning rate of the update that follows `taken` updates, for base rate `lr`.
    pub fn lr_at(&self, lr: f32, taken: u64) -> f32 {
        let (base, s) = (lr as f64, taken as f64);
        let v = match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if taken < warmup_steps {
                    base * s / warmup_steps as f64
                } else {
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    let p = ((s - warmup_steps as f64) / span).min(1.0);
                    let min = min_lr as f64;
                    min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
            LrSchedule::Step { step_size, gamma } => {
                let k = taken / step_size.max(1);
                base * (gamma as f64).powi(k.min(i32::MAX as u64) as i32)
            }
        };
        v as f32
    }

    /// Rejects schedules that cannot work with base rate `lr`: a cosine whose total is not
    /// past its warmup or whose min_lr is not in 0..=lr, a step of size 0 or a gamma that
    /// is not finite and > 0.
    pub fn validate(&self, lr: f32) -> Result<()> {
        let bad = |what, value: f32, expected| {
            Err(Error::BadHyperparameter {
                what,
                value,
                expected,
            })
        };
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if total_steps <= warmup_steps {
                    return bad(
                        "cosine schedule total_steps",
                        total_steps as f32,
                        "greater than warmup_steps",
                    );
                }
                if !(min_lr >= 0.0 && min_lr <= lr) {
                    return bad(
                        "cosine schedule min_lr",
                        min_lr,
                        "finite, ≥ 0 and at most the learning rate",
                    );
                }
                Ok(())
            }
            LrSchedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return bad("step schedule step_size", 0.0, "at least 1");
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return bad("step schedule gamma", gamma, "finite and > 0");
                }
                Ok(())
            }
        }
    }
}

/// How to train: optimizer, learning-rate schedule, loss, clipping, and whether the
/// hidden state carries over from one batch to the next (stateful truncated BPTT).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrainConfig {
    pub optimizer: OptimizerConfig,
    /// Default [`LrSchedule::Constant`].
    pub schedule: LrSchedule,
    pub loss: LossKind,
    /// Rescale gradients by min(1, this / (norm + 1e-6)), norm the global L2 norm of all
    /// of them (PyTorch's clip_grad_norm_, applied to the gradients before the
    /// optimizer adds weight decay). Default Some(5.0).
    pub clip_norm: Option<f32>,
    /// Clamp each gradient element to ±this (after norm clipping). Default None.
    pub clip_value: Option<f32>,
    /// Carry h_T of one batch into h_0 of the next (no gradient crosses the boundary).
    /// Default false.
    pub stateful: bool,
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
        }
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

/// One batch: inputs, targets, per-(t, b) weights (0 masks a position out) and optional
/// per-row lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub t: usize,
    pub b: usize,
    /// (T, B, I)
    pub x: Vec<f32>,
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
        crate::shapes::nonzero("batch T", t)?;
        crate::shapes::nonzero("batch B", b)?;
        let tb = t.checked_mul(b).ok_or(Error::TooLarge {
            what: "batch T·B",
            value: u64::MAX,
            limit: usize::MAX as u64,
            why: "it overflows usize",
        })?;
        let per_position = |what, got: usize, name: &'static str| {
            if got == 0 || !got.is_multiple_of(tb) {
                return Err(Error::Shape {
                    what,
                    expected: format!("T·B·{name} = {t}·{b}·{name} values, {name} ≥ 1"),
                    got: vec![got],
                });
            }
            Ok(())
        };
        per_position("batch x", x.len(), "I")?;
        match &targets {
            Targets::Classes(c) => {
                crate::shapes::check_len("batch class targets", &[t, b], c.len())?
            }
            Targets::Values(v) => per_position("batch value targets", v.len(), "O")?,
            Targets::Labels(l) => check_labels(l, b)?,
        }
        Ok(Batch {
            t,
            b,
            x,
            targets,
            weights: vec![1.0; tb],
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
        let (t, b) = cfg.check_input(&[self.t, self.b, cfg.input_size])?;
        let len = |what, got: usize, shape: Vec<usize>| crate::shapes::check_len(what, &shape, got);
        len("batch x", self.x.len(), vec![t, b, cfg.input_size])?;
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
            x: take(&self.x, t, b, &rows),
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
    fn carry(&self) -> Result<Option<(usize, State<Vec<f32>>)>>;
    /// Restores optimizer moments, step count and carried state (to resume a run; the
    /// whole batch's state, of which each data-parallel rank keeps its rows).
    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carry: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()>;
}

/// The per-step scalars of the optimizer: the scheduled learning rate, hyperparameters and
/// Adam's bias corrections, written before each step's submit. Mirrors `struct Hyper` in
/// shaders/optim.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub clip_norm: f32,
    pub clip_value: f32,
    pub bias_correction1: f32,
    pub bias_correction2: f32,
    pub _pad: [f32; 2],
}

const _: () = assert!(std::mem::size_of::<Hyper>() == 48);

impl Hyper {
    /// Values for the `step`-th update (1-based).
    pub fn new(cfg: &TrainConfig, step: u64) -> Self {
        let o = &cfg.optimizer;
        let n = step.min(i32::MAX as u64) as i32;
        Hyper {
            lr: cfg.lr_for_step(step),
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            momentum: o.momentum,
            weight_decay: o.weight_decay,
            clip_norm: cfg.clip_norm.unwrap_or(0.0),
            clip_value: cfg.clip_value.unwrap_or(0.0),
            bias_correction1: 1.0 - o.beta1.powi(n),
            bias_correction2: 1.0 - o.beta2.powi(n),
            _pad: [0.0; 2],
        }
    }
}
