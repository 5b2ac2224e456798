//! wgpu-rnn: recurrent neural networks (Elman, LSTM, GRU) trained and run on any GPU
//! through wgpu compute shaders, with a plain CPU reference ([`cpu`]) that checks every
//! result.
//!
//! The modules are layers; each uses only those listed before it:
//!
//! - [`error`](Error), [`shapes`]: the error type and shape checks.
//! - [`gpu`]: the device, the kernel table, tensors, dispatch plans and matrix products.
//! - [`model`]: configuration, parameters and state, and the GPU [`Rnn`] with its plans.
//! - [`cpu`]: the f64 reference of the model, forward and backward.
//! - [`ctc`]: the CTC loss (reference and GPU) and its decoders.
//! - [`train`]: batches, losses, optimizers, the GPU [`Trainer`] and the [`CpuTrainer`],
//!   data-parallel training ([`dist`]).
//! - [`files`]: checkpoints, PyTorch state_dicts, the metrics log.
//! - [`data`]: the tasks' data: text, synthetic series, CSV series (feature `series`),
//!   speech (feature `audio`).
//! - [`infer`]: running a trained model on the GPU or the CPU reference, and the tasks'
//!   uses of it: sampling text, forecasting, transcribing.
//! - [`app`] (feature `cli`): the command line.

mod error;
pub mod shapes;

pub mod gpu;
pub mod model;

pub mod cpu;
pub mod ctc;
pub mod train;

pub mod files;

pub mod data;
pub mod infer;

#[cfg(any(feature = "cli", feature = "plot"))]
pub mod app;

#[cfg(test)]
mod kernel_table;

pub use error::{Error, GpuErrorKind, Result};
pub use files::checkpoint::Checkpoint;
pub use gpu::{AdapterSummary, GemmTuning, Gpu, GpuOptions, GpuTensor};
pub use model::{
    Activation, CallStats, Cell, CellKind, DropoutKey, ForwardOutput, Gradients, Init, Params,
    RecurrencePath, Rnn, RnnConfig, State,
};
pub use train::dist::{self, Communicator, SingleProcess};
pub use train::{
    Batch, CpuTrainer, LossKind, LrSchedule, OptimizerConfig, OptimizerKind, StepStats, Targets,
    Train, TrainConfig, Trainer,
};

/// The README's examples compile and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
