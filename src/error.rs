//! The library's one error type: every variant says what was wrong and what to do.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `wgpu-rnn`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable adapter was found at all.
    #[error(
        "no GPU adapter found (backends tried: {backends}). Install a GPU driver with Vulkan, \
         Metal, DX12 or OpenGL support; on a machine without a GPU install Mesa's software \
         Vulkan driver lavapipe (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), \
         or run `.ci/install-adapter`"
    )]
    NoAdapter { backends: String },

    /// `WGPU_ADAPTER_NAME` (or the requested name) matched none of the adapters present.
    #[error(
        "no adapter name contains {wanted:?}; adapters present: {available}. \
         Unset WGPU_ADAPTER_NAME or set it to part of one of these names"
    )]
    AdapterNotFound { wanted: String, available: String },

    /// The adapter refused to create a device.
    #[error("adapter {adapter:?} could not create a device: {reason}")]
    RequestDevice { adapter: String, reason: String },

    /// A tensor argument had the wrong shape.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        what: &'static str,
        expected: String,
        got: Vec<usize>,
    },

    /// Command-line arguments that cannot go together.
    #[error("{0}")]
    IncompatibleArgs(String),

    /// A size that must be positive was zero.
    #[error("{what} must be at least 1, got 0")]
    ZeroSize { what: &'static str },

    /// Host data did not have as many elements as the shape it was given.
    #[error("{what}: shape {shape:?} holds {expected} values but {got} were given")]
    DataLength {
        what: &'static str,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },

    /// A size too large for this implementation or this device.
    #[error("{what} = {value} exceeds the limit {limit} ({why})")]
    TooLarge {
        what: &'static str,
        value: u64,
        limit: u64,
        why: &'static str,
    },

    /// Something needs more of a device limit than the device grants.
    #[error("{what} needs {asked} but the device's {limit} is {value}; {advice}")]
    DeviceLimit {
        what: String,
        limit: &'static str,
        value: u64,
        asked: u64,
        /// What to do about it.
        advice: &'static str,
    },

    /// `backward` was called without a matching `forward`.
    #[error("backward needs a forward pass first: {0}")]
    NoForward(&'static str),

    /// A tensor from another device was passed in.
    #[error("{0} was made by another Gpu context than the model; create it with the model's Gpu (`rnn.gpu()`) or a clone of it")]
    WrongDevice(&'static str),

    /// A hyperparameter or weight was NaN, infinite or out of range.
    #[error("{what} is {value}, expected {expected}")]
    BadHyperparameter {
        what: &'static str,
        value: f32,
        expected: &'static str,
    },

    /// A class target outside 0..O.
    #[error("class target {class} is out of range: the model has {classes} output classes")]
    BadTarget { class: u32, classes: usize },

    /// A token id outside the embedding's vocabulary 0..V.
    #[error("token id {id} at (t, b) = ({}, {}) is out of range: the embedding has {vocab} tokens (ids 0..{vocab}); map unknown tokens to an id below {vocab}", at[0], at[1])]
    BadToken {
        id: u32,
        vocab: usize,
        at: [usize; 2],
    },

    /// Class targets with MSE, or value targets with cross-entropy.
    #[error("the batch's targets do not fit the loss: cross-entropy takes class indices, MSE takes values, CTC takes label sequences (Targets::Labels) and per-row lengths (Batch::with_lengths)")]
    LossMismatch,

    /// An unknown task name.
    #[error("unknown task {0:?}; the tasks are text, sine, adding, series and speech")]
    BadTask(String),

    /// A text that cannot be trained on.
    #[error("unusable text: {0}")]
    BadText(String),

    /// A CTC target that cannot be used (a blank or out-of-range label, a target too long
    /// for the GPU kernel).
    #[error("row {row}'s CTC target: {why}")]
    CtcTarget { row: usize, why: String },

    /// A per-row sequence length outside 1..=T.
    #[error("row {row} has length {length}; lengths must be in 1..={steps} (T)")]
    BadLength {
        row: usize,
        length: usize,
        steps: usize,
    },

    /// An unknown initialisation scheme.
    #[error("unknown init {0:?}; the schemes are pytorch, xavier, orthogonal and identity")]
    BadInit(String),

    /// A parameter tensor of the wrong length.
    #[error("parameter {name} has {got} values, expected {expected} for shape {shape:?}")]
    ParamLength {
        name: String,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },

    /// The adapter lacks something an optional feature needs.
    #[error("not supported on this adapter: {0}")]
    Unsupported(&'static str),

    /// A kernel choice (`WGPU_RNN_GEMM`, an option or a tuning file) that cannot be used.
    #[error("{0}")]
    BadKernel(String),

    /// A benchmark shape list could not be parsed.
    #[error(
        "bad shape list {0:?}: expected positive integers B,T,I,H,O, shapes separated by ';' \
         (e.g. \"1,256,32,64,32;16,128,64,128,64\")"
    )]
    BadShapeList(String),

    /// A model file (PyTorch state_dict in safetensors) that cannot be used.
    #[error("model file {path}: {why}")]
    Model { path: String, why: String },

    /// A checkpoint that cannot be read or does not fit.
    #[error("checkpoint {path}: {why}")]
    Checkpoint { path: String, why: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// wgpu reported a validation, out-of-memory or internal error.
    #[error("GPU error during {during}: {kind}: {message}")]
    Gpu {
        during: &'static str,
        kind: GpuErrorKind,
        message: String,
    },

    /// The GPU device was lost (driver reset, device removed or destroyed).
    #[error(
        "the GPU device was lost ({0}); create a new Gpu context and rebuild the model \
         from host parameters or a checkpoint"
    )]
    DeviceLost(String),

    /// Reading a buffer back from the GPU failed (device lost, or mapping refused).
    #[error("reading a tensor back from the GPU failed: {0}")]
    Readback(String),

    /// Data-parallel training across ranks went wrong (batch too small to share, ranks
    /// whose parameters diverged, a loss that cannot be split).
    #[error("data-parallel training: {0}")]
    Distributed(String),

    /// The plotting library could not draw a picture.
    #[error(
        "drawing the plot {path} failed: {why}; the data are unaffected (the metrics log \
         holds a run's numbers), please report this with the values that were plotted"
    )]
    Plot { path: String, why: String },

    /// A metrics log (JSON Lines) with a line that is not a metrics record.
    #[error(
        "metrics log {path}, line {line}: {why}; fix or delete that line, or delete the \
         file to start a new history"
    )]
    MetricsLog {
        path: String,
        line: usize,
        why: String,
    },

    /// A CSV time series (or a series model's normalization) that cannot be used; the
    /// message names the file, line and column where there is one.
    #[error("unusable time series: {0}")]
    BadSeries(String),

    /// An audio file that cannot be read or used; the message names the file and says how
    /// to convert it.
    #[error("audio file {path}: {why}")]
    Audio { path: String, why: String },

    /// A speech manifest (CSV `path,transcript`) with a bad line, or an utterance in it
    /// that cannot be trained on.
    #[error("speech manifest {path}, line {line}: {why}")]
    Manifest {
        path: String,
        line: u64,
        why: String,
    },

    /// Speech data that cannot be used as a whole (a vocabulary, feature statistics or
    /// feature settings that do not fit, or an empty split).
    #[error("unusable speech data: {0}")]
    BadSpeech(String),
}

/// The kind of error wgpu reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuErrorKind {
    Validation,
    OutOfMemory,
    Internal,
}

impl fmt::Display for GpuErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuErrorKind::Validation => "validation error",
            GpuErrorKind::OutOfMemory => "out of GPU memory",
            GpuErrorKind::Internal => "internal error",
        })
    }
}

impl Error {
    pub(crate) fn from_wgpu(during: &'static str, e: wgpu::Error) -> Self {
        let (kind, message) = match e {
            wgpu::Error::OutOfMemory { .. } => (
                GpuErrorKind::OutOfMemory,
                "reduce the batch size, sequence length or hidden size".to_string(),
            ),
            wgpu::Error::Validation { description, .. } => (GpuErrorKind::Validation, description),
            wgpu::Error::Internal { description, .. } => (GpuErrorKind::Internal, description),
        };
        Error::Gpu {
            during,
            kind,
            message,
        }
    }
}
