//! The command line's arguments (clap), in the library so that tests can drive the parser
//! and the checks that follow it without running anything. `src/main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::model::{Activation, CellKind};

#[derive(Parser)]
#[command(
    version,
    about = "Train and run recurrent networks (Elman RNN, LSTM, GRU) on any GPU through wgpu"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a model (the default when no subcommand is given).
    Train(TrainArgs),
    /// Generate text from a trained text model.
    Sample(SampleArgs),
    /// List the adapters found and the one chosen, with its limits.
    Info,
    /// Measure forward and training throughput on the GPU and the CPU reference.
    Bench(BenchArgs),
    /// Run a model file (PyTorch nn.RNN, nn.LSTM or nn.GRU state_dict, or a checkpoint) on
    /// inputs from a file.
    Eval(EvalArgs),
    /// Time the candidate matrix-product kernels on this adapter at a model's shapes and
    /// write the fastest to the tuning file that later runs load.
    Tune(TuneArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TaskArg {
    Text,
    Sine,
    Adding,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OptArg {
    Sgd,
    Adam,
    Adagrad,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum CellArg {
    /// Elman RNN (see --nonlinearity).
    Rnn,
    Lstm,
    Gru,
}

impl From<CellArg> for CellKind {
    fn from(a: CellArg) -> Self {
        match a {
            CellArg::Rnn => CellKind::Rnn,
            CellArg::Lstm => CellKind::Lstm,
            CellArg::Gru => CellKind::Gru,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum DeviceArg {
    Gpu,
    Cpu,
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// What to learn.
    #[arg(long, value_enum, default_value = "text")]
    pub task: TaskArg,
    /// UTF-8 text for the text task (default: this project's own sources, embedded).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 1500)]
    pub steps: u64,
    /// Hidden units H.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Sequences per batch B.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Steps per sequence T (truncated BPTT length; the adding problem's length).
    #[arg(long, default_value_t = 48)]
    pub seq: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptArg,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Seed for initialisation, data and sampling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Checkpoint path (default: wgpu-rnn-<task>.safetensors); the loss curve is written
    /// next to it as .svg.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Continue from this checkpoint (same task and sizes).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// gpu, or cpu for the reference implementation.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// Validate every N steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Characters to sample after training a text model.
    #[arg(long, default_value_t = 300)]
    pub sample_len: usize,
    /// Stacked layers L.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Also run every layer backwards in time (the adding task only: the others predict
    /// the next step, which a reverse direction would see).
    #[arg(long)]
    pub bidirectional: bool,
    /// The recurrent cell.
    #[arg(long, value_enum, default_value = "rnn")]
    pub cell: CellArg,
    /// The Elman cell's nonlinearity (--cell rnn only).
    #[arg(long, value_enum)]
    pub nonlinearity: Option<NonlinearityArg>,
    /// Cells without the biases b_ih and b_hh (PyTorch's bias=False).
    #[arg(long)]
    pub no_bias: bool,
    /// Initialisation: pytorch (default), xavier, orthogonal, identity (IRNN, for relu).
    #[arg(long, default_value = "pytorch")]
    pub init: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum NonlinearityArg {
    Tanh,
    Relu,
}

impl From<NonlinearityArg> for Activation {
    fn from(a: NonlinearityArg) -> Self {
        match a {
            NonlinearityArg::Tanh => Activation::Tanh,
            NonlinearityArg::Relu => Activation::Relu,
        }
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// An nn.RNN state_dict (+ head.weight, head.bias) in safetensors, or a checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors with x (T, B, I), optional h0 and, for LSTM, c0 (L·D, B, H), and
    /// optional lengths (B).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write y (T, B, O), h_n and, for LSTM, c_n (L·D, B, H).
    #[arg(long)]
    pub output: PathBuf,
    /// An nn.RNN file's nonlinearity where its metadata names none (default tanh); an
    /// error if it contradicts the file.
    #[arg(long, value_enum)]
    pub nonlinearity: Option<NonlinearityArg>,
    /// gpu, or cpu for the reference implementation.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
}

#[derive(Args)]
pub struct SampleArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub len: usize,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value = "")]
    pub prime: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as B,T,I,H,O separated by ';'.
    #[arg(long, default_value = crate::bench::DEFAULT_SHAPES)]
    pub shapes: String,
    /// The recurrent cell measured at every shape.
    #[arg(long, value_enum, default_value = "rnn")]
    pub cell: CellArg,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Which to measure: gpu, cpu or both.
    #[arg(long, value_enum, default_value_t = BenchDevices::Both)]
    pub devices: BenchDevices,
    /// Seconds to spend on each measurement (at least 3 repetitions each).
    #[arg(long, default_value_t = 3.0)]
    pub budget: f64,
    /// Skip the CPU reference where one training step would exceed this many GFLOP
    /// (it is a plain single-threaded f64 loop); 0 measures every shape.
    #[arg(long, default_value_t = 2.0)]
    pub cpu_max_gflop: f64,
    /// Also print the GPU time of each part of a training step (timestamp queries).
    #[arg(long)]
    pub profile: bool,
    /// Also time square matrix products of these sizes (comma separated, e.g. 512,1024).
    #[arg(long, default_value = "")]
    pub matmul: String,
}

#[derive(Args, Clone)]
pub struct TuneArgs {
    /// The model's shapes as B,T,I,H,O separated by ';' (the step times are summed).
    #[arg(long, default_value = "64,64,64,256,64")]
    pub shapes: String,
    /// The recurrent cell of the model.
    #[arg(long, value_enum, default_value = "rnn")]
    pub cell: CellArg,
    /// Seconds to spend timing each candidate at each shape (at least 3 steps each).
    #[arg(long, default_value_t = 1.0)]
    pub budget: f64,
    /// Write the tuning file into this folder instead of the user's cache folder (later
    /// runs read it there when WGPU_RNN_TUNING_DIR names the folder).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchDevices {
    Gpu,
    Cpu,
    Both,
}

impl TrainArgs {
    /// Everything about the arguments that can be checked before loading data: sizes,
    /// the init scheme, and that a bidirectional model is only asked of the adding task.
    pub fn validate(&self) -> Result<()> {
        check_sizes(self)?;
        self.init.parse::<crate::model::Init>()?;
        if self.bidirectional && !matches!(self.task, TaskArg::Adding) {
            return Err(Error::IncompatibleArgs(format!(
                "--bidirectional with task {}: a reverse direction would see the steps it is \
                 asked to predict; use it with --task adding",
                match self.task {
                    TaskArg::Text => "text",
                    TaskArg::Sine => "sine",
                    TaskArg::Adding => "adding",
                }
            )));
        }
        if self.cell != CellArg::Rnn {
            if let Some(n) = self.nonlinearity {
                return Err(Error::IncompatibleArgs(format!(
                    "--nonlinearity {} is the Elman cell's (--cell rnn); {} has its own gates",
                    Activation::from(n).name(),
                    CellKind::from(self.cell).name()
                )));
            }
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return Err(Error::BadHyperparameter {
                what: "--lr (learning rate)",
                value: self.lr,
                expected: "finite and > 0",
            });
        }
        Ok(())
    }
}

fn check_sizes(a: &TrainArgs) -> Result<()> {
    for (what, v, max) in [
        ("--layers", a.layers, crate::model::MAX_LAYERS),
        ("--hidden", a.hidden, 1 << 14),
        ("--batch", a.batch, 1 << 16),
        ("--seq", a.seq, 1 << 16),
    ] {
        if v == 0 {
            return Err(Error::ZeroSize { what });
        }
        if v > max {
            return Err(Error::TooLarge {
                what,
                value: v as u64,
                limit: max as u64,
                why: "must be at least 1 and at most the limit",
            });
        }
    }
    Ok(())
}
