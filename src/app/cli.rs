//! The command line's arguments (clap), in the library so that tests can drive the parser
//! and the checks that follow it without running anything. [`super::cmd`] runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::text::DEFAULT_EMBEDDING;
use crate::error::{Error, Result};
use crate::model::{Activation, CellKind};

#[derive(Parser)]
#[command(
    version,
    about = "Train and run recurrent networks (Elman RNN, LSTM, GRU) on any GPU through wgpu",
    // `wgpu-rnn --steps 5 train` would otherwise drop --steps without a word.
    args_conflicts_with_subcommands = true
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
    Train(Box<TrainArgs>),
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
    /// Forecast a series model's next steps after warming it up on a CSV file's rows.
    Forecast(ForecastArgs),
    /// Transcribe WAV files with a speech model: one line per file, in order.
    Transcribe(TranscribeArgs),
    /// Write a checkpoint's model tensors alone, as PyTorch's state_dict of
    /// rnn (nn.RNN/nn.LSTM/nn.GRU) + head (nn.Linear), for load_state_dict(strict=True).
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum TaskArg {
    /// Character-level text (the project's own sources, or --text FILE).
    Text,
    /// Next-step forecasting of a noisy sum of sines.
    Sine,
    /// The adding problem (long memory).
    Adding,
    /// Next-step forecasting of a CSV file's column (--csv FILE).
    Series,
    /// Speech recognition with CTC from WAV files (--manifest FILE).
    Speech,
}

impl TaskArg {
    pub fn name(self) -> &'static str {
        match self {
            TaskArg::Text => "text",
            TaskArg::Sine => "sine",
            TaskArg::Adding => "adding",
            TaskArg::Series => "series",
            TaskArg::Speech => "speech",
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ScheduleArg {
    /// The same learning rate throughout.
    Constant,
    /// Linear warmup over --warmup steps, then cosine decay to --min-lr at --steps.
    Cosine,
    /// Multiply by --lr-gamma every --lr-step-size steps (PyTorch's StepLR).
    Step,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum OptArg {
    Sgd,
    Adam,
    Adagrad,
}

/// `--cell`: the names of [`CellKind::ALL`], so that a new cell needs no flag of its own.
fn cell_parser() -> impl clap::builder::TypedValueParser<Value = CellKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(CellKind::ALL.map(CellKind::name))
        .map(|s| s.parse::<CellKind>().unwrap_or_default())
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum DeviceArg {
    Gpu,
    Cpu,
}

/// `wgpu-rnn train`. Every flag a task or a resumed run does not use is refused
/// ([`TrainArgs::check_flags`]), so [`TrainArgs::given`] records which ones were typed.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// What to learn (with --resume: the checkpoint's).
    #[arg(long, value_enum, default_value = "text")]
    pub task: TaskArg,
    /// UTF-8 text for the text task (default: this project's own sources, embedded).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// CSV file for the series task: a header row, numeric columns; the last 10 % of rows
    /// are validation.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// The series task's column to forecast (default: the last numeric column).
    #[arg(long)]
    pub target: Option<String>,
    /// The series task's input columns, comma separated (default: the target alone).
    #[arg(long)]
    pub inputs: Option<String>,
    /// The series task: what the model learns of the target: auto (first differences
    /// when the training part trends or wanders, by a KPSS test; else levels), none
    /// (levels), first, seasonal (y_t − y_{t−P}) or both.
    #[arg(long, default_value = "auto")]
    pub difference: String,
    /// The series task's season P in rows, for seasonal differences and the seasonal
    /// naive baseline (default: estimated from the training part's autocorrelation).
    #[arg(long)]
    pub season: Option<usize>,
    /// The series task: train the head to predict the next N steps at once (direct
    /// multi-step; forecasts then take N steps per pass instead of feeding every step
    /// back).
    #[arg(long, default_value_t = 1)]
    pub ahead: usize,
    /// The series task: fill missing cells of the used columns: linear or previous
    /// (default: a missing cell is an error naming its line and column).
    #[arg(long)]
    pub fill: Option<String>,
    /// The speech task's utterances: a CSV file with a header row and columns
    /// path,transcript (WAV paths relative to the file's folder).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The speech task's held-out utterances, in the same form (default: every 10th
    /// utterance of --manifest).
    #[arg(long)]
    pub validation_manifest: Option<PathBuf>,
    /// Train until this many steps in all (with --resume: beyond the checkpoint's step).
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
    /// Learning rate (the peak, with a schedule).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "constant")]
    pub lr_schedule: ScheduleArg,
    /// Warmup steps of the cosine schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// The cosine schedule's final learning rate.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f32,
    /// Steps between the step schedule's decays.
    #[arg(long, default_value_t = 500)]
    pub lr_step_size: u64,
    /// The step schedule's factor per decay.
    #[arg(long, default_value_t = 0.5)]
    pub lr_gamma: f32,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptArg,
    /// SGD's momentum (this CLI's default 0.9; the library's, like PyTorch's, is 0).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay, as PyTorch's optimizers apply it (added to the gradient).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Seed for initialisation, data and sampling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Checkpoint path (default: `wgpu-rnn-TASK.safetensors`, or the --resume file); the
    /// loss picture (.svg) and the metrics log (.metrics.jsonl) go next to it.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Continue from this checkpoint: task, sizes, cell and hyperparameters come from it.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Also save the checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub save_every: u64,
    /// Keep the best-validation checkpoint as `NAME.best.safetensors` (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_best: bool,
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
    /// Also run every layer backwards in time (the adding and speech tasks only: the
    /// others predict the next step, which a reverse direction would see).
    #[arg(long)]
    pub bidirectional: bool,
    /// The recurrent cell: rnn (Elman; see --nonlinearity), lstm or gru.
    #[arg(long, default_value = "rnn", value_parser = cell_parser())]
    pub cell: CellKind,
    /// The Elman cell's nonlinearity (--cell rnn only).
    #[arg(long, value_enum)]
    pub nonlinearity: Option<NonlinearityArg>,
    /// Cells without the biases b_ih and b_hh (PyTorch's bias=False).
    #[arg(long)]
    pub no_bias: bool,
    /// Dropout on the outputs of every layer but the last, in training only (PyTorch's
    /// dropout=p), in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Dropout on the head's input (the last layer's outputs), in training only, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub head_dropout: f32,
    /// --task text: a token embedding of this dimension before the first layer
    /// (nn.Embedding(V, E)); 0 reads each character as a one-hot vector instead.
    #[arg(long, default_value_t = DEFAULT_EMBEDDING)]
    pub embedding: usize,
    /// Initialisation: pytorch (default), xavier, orthogonal, identity (IRNN, for relu).
    #[arg(long, default_value = "pytorch")]
    pub init: String,
    /// The flags typed on the command line (clap ids, e.g. "lr_schedule"), filled by
    /// [`Cli::parse_checked`].
    #[arg(skip)]
    pub given: std::collections::BTreeSet<String>,
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
    /// The Elman nonlinearity of an nn.RNN file whose metadata names none (required then:
    /// tanh and relu models have the same tensors); an error if it contradicts the file.
    #[arg(long, value_enum)]
    pub nonlinearity: Option<NonlinearityArg>,
    /// gpu, or cpu for the reference implementation.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
}

#[derive(Args)]
pub struct SampleArgs {
    /// A text model's checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 300)]
    pub len: usize,
    /// Softmax temperature; 0 takes the most likely character every step (greedy).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Text fed to the model before sampling.
    #[arg(long, default_value = "")]
    pub prime: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct ForecastArgs {
    /// A series model's checkpoint (`train --task series`).
    #[arg(long)]
    pub model: PathBuf,
    /// The history: a CSV file with the model's columns; the state is warmed up on all
    /// its rows.
    #[arg(long)]
    pub csv: PathBuf,
    /// Steps to forecast after the last row (with --holdout N: N, after the rows before
    /// the held-out ones).
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Where to write the forecast CSV (step, forecast in the target's units); the plot
    /// goes next to it as .svg. Default: `MODEL.forecast.csv` beside the model.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// gpu, or cpu for the reference implementation.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// Hold out the file's last N rows: forecast them from the rows before (N is the
    /// horizon) and score the forecast against them beside the naive and seasonal naive
    /// baselines.
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Score forecasts of --horizon rows from K successive origins ending --horizon rows
    /// before the file's end (rolling origin), and report their mean errors beside the
    /// baselines'.
    #[arg(long)]
    pub backtest: Option<usize>,
    /// Fill missing cells (linear or previous), as `train --fill` does.
    #[arg(long)]
    pub fill: Option<String>,
}

#[derive(Args)]
pub struct TranscribeArgs {
    /// A speech model's checkpoint (`train --task speech`).
    #[arg(long)]
    pub model: PathBuf,
    /// Prefix beam search with this many prefixes (default: greedy best path).
    #[arg(long)]
    pub beam: Option<usize>,
    /// gpu, or cpu for the reference implementation.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// WAV files (mono or stereo, 16-bit or float, any rate: resampled to 16 kHz).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint written by `wgpu-rnn train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The file to write: for pytorch a safetensors state_dict (model tensors only,
    /// PyTorch's names and shapes, the config and nonlinearity in its metadata); for onnx
    /// an ONNX model (opset 14; inputs x, h0, c0 for LSTM, lengths; outputs y, h_n, c_n).
    #[arg(long)]
    pub output: PathBuf,
    /// pytorch (safetensors state_dict) or onnx.
    #[arg(long, value_enum, default_value = "pytorch")]
    pub format: ExportFormat,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ExportFormat {
    Pytorch,
    Onnx,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as B,T,I,H,O separated by ';'.
    #[arg(long, default_value = crate::app::bench::DEFAULT_SHAPES)]
    pub shapes: String,
    /// The recurrent cell measured at every shape.
    #[arg(long, default_value = "rnn", value_parser = cell_parser())]
    pub cell: CellKind,
    /// Token ids of a vocabulary of this many tokens as the inputs, through an embedding
    /// into I features (text-like skewed ids; see `app::bench::batch`).
    #[arg(long)]
    pub vocab: Option<usize>,
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
    /// (it is a plain single-threaded f64 loop; default 2); 0 measures every shape.
    #[arg(long)]
    pub cpu_max_gflop: Option<f64>,
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
    #[arg(long, default_value = "rnn", value_parser = cell_parser())]
    pub cell: CellKind,
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

impl Cli {
    /// Parses the process's arguments like [`Parser::parse`] (exiting with clap's
    /// message on a parse error) and records which train flags were typed.
    pub fn parse_checked() -> Self {
        Self::parse_from_checked(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_checked`] from given arguments (the first is the program name).
    pub fn parse_from_checked<I, T>(args: I) -> std::result::Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        let typed = |m: &clap::ArgMatches| {
            m.ids()
                .filter(|id| {
                    m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
                })
                .map(|id| id.as_str().to_string())
                .collect()
        };
        match (&mut cli.command, matches.subcommand()) {
            (Some(Command::Train(a)), Some(("train", m))) => a.given = typed(m),
            (None, _) => cli.train.given = typed(&matches),
            _ => {}
        }
        Ok(cli)
    }
}

/// A train flag as typed: "lr_schedule" → "--lr-schedule".
pub fn flag(id: &str) -> String {
    format!("--{}", id.replace('_', "-"))
}

impl TrainArgs {
    /// Whether `--<id>` was typed.
    pub fn typed(&self, id: &str) -> bool {
        self.given.contains(id)
    }

    /// Refuses the typed flags that `task` (the checkpoint's with --resume) or the other
    /// flags do not use: nothing is silently ignored.
    pub fn check_flags(&self, task: TaskArg) -> Result<()> {
        let only = |ids: &[&str], when: bool, why: &str| -> Result<()> {
            match ids.iter().find(|id| self.typed(id)) {
                Some(id) if !when => Err(Error::IncompatibleArgs(format!("{} {why}", flag(id)))),
                _ => Ok(()),
            }
        };
        only(
            &["text", "sample_len", "embedding"],
            task == TaskArg::Text,
            &format!("is for --task text, not {}", task.name()),
        )?;
        only(
            &[
                "csv",
                "target",
                "inputs",
                "difference",
                "season",
                "fill",
                "ahead",
            ],
            task == TaskArg::Series,
            &format!("is for --task series, not {}", task.name()),
        )?;
        only(
            &["manifest", "validation_manifest"],
            task == TaskArg::Speech,
            &format!("is for --task speech, not {}", task.name()),
        )?;
        only(
            &["seq"],
            task != TaskArg::Speech,
            "is not used by --task speech: a batch's length is its longest utterance's",
        )?;
        only(
            &["warmup", "min_lr"],
            self.lr_schedule == ScheduleArg::Cosine,
            "is for --lr-schedule cosine",
        )?;
        only(
            &["lr_step_size", "lr_gamma"],
            self.lr_schedule == ScheduleArg::Step,
            "is for --lr-schedule step",
        )?;
        only(
            &["momentum"],
            self.optimizer == OptArg::Sgd,
            "is for --optimizer sgd",
        )?;
        if task == TaskArg::Speech && self.manifest.is_none() && self.resume.is_none() {
            return Err(Error::IncompatibleArgs(
                "--task speech needs --manifest FILE (a CSV file: path,transcript)".into(),
            ));
        }
        if task == TaskArg::Series && self.csv.is_none() && self.resume.is_none() {
            return Err(Error::IncompatibleArgs(
                "--task series needs --csv FILE (a header row, numeric columns)".into(),
            ));
        }
        Ok(())
    }

    /// Everything about the arguments that can be checked before loading data: sizes,
    /// the init scheme, and that a bidirectional model is only asked of the adding and speech tasks.
    pub fn validate(&self) -> Result<()> {
        check_sizes(self)?;
        self.init.parse::<crate::model::Init>()?;
        if self.bidirectional && !matches!(self.task, TaskArg::Adding | TaskArg::Speech) {
            return Err(Error::IncompatibleArgs(format!(
                "--bidirectional with task {}: a reverse direction would see the steps it is \
                 asked to predict; use it with --task adding or speech",
                self.task.name()
            )));
        }
        for (what, p) in [
            ("--dropout", self.dropout),
            ("--head-dropout", self.head_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::BadHyperparameter {
                    what,
                    value: p,
                    expected: "in [0, 1): the probability of zeroing a unit in training",
                });
            }
        }
        if self.dropout > 0.0 && self.layers == 1 {
            return Err(Error::IncompatibleArgs(
                "--dropout drops the outputs of every layer but the last, and with --layers 1 \
                 there is none (as in PyTorch); use --head-dropout, or --layers 2 or more"
                    .into(),
            ));
        }
        if self.cell != CellKind::Rnn {
            if let Some(n) = self.nonlinearity {
                return Err(Error::IncompatibleArgs(format!(
                    "--nonlinearity {} is the Elman cell's (--cell rnn); {} has its own gates",
                    Activation::from(n).name(),
                    self.cell.name()
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
        for (what, v, ok, expected) in [
            (
                "--min-lr",
                self.min_lr,
                self.min_lr >= 0.0 && self.min_lr <= self.lr,
                "finite, >= 0 and <= --lr",
            ),
            (
                "--lr-gamma",
                self.lr_gamma,
                self.lr_gamma > 0.0 && self.lr_gamma <= 1.0,
                "in (0, 1]",
            ),
            (
                "--momentum",
                self.momentum,
                (0.0..1.0).contains(&self.momentum),
                "in [0, 1)",
            ),
            (
                "--weight-decay",
                self.weight_decay,
                self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
                "finite and >= 0",
            ),
        ] {
            if !ok || !v.is_finite() {
                return Err(Error::BadHyperparameter {
                    what,
                    value: v,
                    expected,
                });
            }
        }
        if self.lr_step_size == 0 {
            return Err(Error::ZeroSize {
                what: "--lr-step-size",
            });
        }
        if self.eval_every == 0 {
            return Err(Error::ZeroSize {
                what: "--eval-every",
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
    if a.embedding > 1 << 14 {
        return Err(Error::TooLarge {
            what: "--embedding",
            value: a.embedding as u64,
            limit: 1 << 14,
            why: "the embedding's dimension (0: one-hot characters)",
        });
    }
    Ok(())
}
