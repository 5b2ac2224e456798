//! Training: losses, optimizers and clipping on the GPU, one submit per step, truncated
//! BPTT with the hidden state carried across chunks; and the same on the CPU reference.

mod cpu_trainer;
mod gpu_trainer;

pub use cpu_trainer::{clip_and_update, CpuTrainer, OptimState};
pub use gpu_trainer::Trainer;

use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig, State};

/// Which loss the output head is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy over O classes; targets are class indices.
    CrossEntropy,
    /// Mean squared error; targets are values (T, B, O).
    Mse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with optional momentum (PyTorch's form: m = μ m + g; w -= lr m).
    Sgd,
    /// Adam with bias correction; weight decay, if any, is decoupled (AdamW).
    Adam,
    /// Adagrad (the classic min-char-rnn choice).
    Adagrad,
}

/// Optimizer hyperparameters; fields not used by the chosen kind are ignored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        OptimizerConfig {
            kind,
            lr,
            momentum: if kind == OptimizerKind::Sgd { 0.9 } else { 0.0 },
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// How to train: optimizer, loss, clipping, and whether the hidden state carries over
/// from one batch to the next (stateful truncated BPTT).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrainConfig {
    pub optimizer: OptimizerConfig,
    pub loss: LossKind,
    /// Rescale gradients by min(1, this / (norm + 1e-6)), norm the global L2 norm of all
    /// of them (PyTorch's clip_grad_norm_).
    pub clip_norm: Option<f32>,
    /// Clamp each gradient element to ±this (after norm clipping).
    pub clip_value: Option<f32>,
    /// Carry h_T of one batch into h_0 of the next (no gradient crosses the boundary).
    pub stateful: bool,
}

impl TrainConfig {
    pub fn new(optimizer: OptimizerConfig, loss: LossKind) -> Self {
        TrainConfig {
            optimizer,
            loss,
            clip_norm: Some(5.0),
            clip_value: None,
            stateful: false,
        }
    }

    /// Rejects non-finite or negative hyperparameters.
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
        Ok(())
    }
}

/// Targets of one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// (T, B) class indices, for cross-entropy.
    Classes(Vec<u32>),
    /// (T, B, O) values, for MSE.
    Values(Vec<f32>),
}

/// One batch: inputs, targets and per-(t, b) weights (0 masks a position out).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub t: usize,
    pub b: usize,
    /// (T, B, I)
    pub x: Vec<f32>,
    pub targets: Targets,
    /// (T, B); the loss is Σ w·loss / Σ w (also divided by O for MSE).
    pub weights: Vec<f32>,
}

impl Batch {
    /// Checks every length against the model and loss; returns the loss normaliser.
    pub(crate) fn check(&self, cfg: &RnnConfig, loss: LossKind) -> Result<f32> {
        let (t, b) = cfg.check_input(&[self.t, self.b, cfg.input_size])?;
        let len = |what, got: usize, shape: Vec<usize>| crate::shapes::check_len(what, &shape, got);
        len("batch x", self.x.len(), vec![t, b, cfg.input_size])?;
        len("batch weights", self.weights.len(), vec![t, b])?;
        match (&self.targets, loss) {
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
            LossKind::CrossEntropy => total,
            LossKind::Mse => total * cfg.output_size as f32,
        };
        Ok(if per > 0.0 { 1.0 / per } else { 0.0 })
    }
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
}

/// Optimizer moments: (m, v), each shaped like the parameters.
pub type Moments = (Params<Vec<f32>>, Params<Vec<f32>>);

/// Training on the GPU ([`Trainer`]) or on the CPU reference ([`CpuTrainer`]).
pub trait Train {
    /// One step: forward, loss, backward, clip, update.
    fn step(&mut self, batch: &Batch) -> Result<StepStats>;
    /// The mean loss on a batch, from h_0 = 0, without changing anything.
    fn evaluate(&mut self, batch: &Batch) -> Result<f32>;
    /// Current parameters.
    fn params(&self) -> Result<Params<Vec<f32>>>;
    /// Forgets the carried hidden state.
    fn reset_state(&mut self);
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// Optimizer moments (m, v).
    fn optim_state(&self) -> Result<Moments>;
    /// The carried state as (B, state (L·D, B, H) each), if any.
    fn carry(&self) -> Result<Option<(usize, State<Vec<f32>>)>>;
    /// Restores optimizer moments, step count and carried state (to resume a run).
    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carry: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()>;
}

/// The per-step scalars of the optimizer: hyperparameters and Adam's bias corrections.
/// Mirrors `struct Hyper` in shaders/optim.wgsl.
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

impl Hyper {
    /// Values for the `step`-th update (1-based).
    pub fn new(cfg: &TrainConfig, step: u64) -> Self {
        let o = &cfg.optimizer;
        let n = step.min(i32::MAX as u64) as i32;
        Hyper {
            lr: o.lr,
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
