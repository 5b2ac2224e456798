//! wgpu-rnn: recurrent neural networks (Elman, LSTM, GRU) trained and run on any GPU
//! through wgpu compute shaders, with a plain CPU reference ([`cpu`]) that checks every
//! result.

pub mod audio;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod cpu;
pub mod ctc;
pub mod dist;
mod error;
pub mod gpu;
pub mod interop;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod series;
pub mod shapes;
pub mod speech;
pub mod tasks;
pub mod train;

pub use dist::{Communicator, SingleProcess};
pub use error::{Error, GpuErrorKind, Result};
pub use gpu::{AdapterSummary, GemmTuning, Gpu, GpuOptions, GpuTensor};
pub use model::{
    Activation, CallStats, Cell, CellKind, ForwardOutput, Gradients, Init, Params, RecurrencePath,
    Rnn, RnnConfig, State,
};
pub use train::{
    Batch, CpuTrainer, LossKind, LrSchedule, OptimizerConfig, OptimizerKind, StepStats, Targets,
    Train, TrainConfig, Trainer,
};

/// The README's examples compile and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
