//! What the library reads and writes as files: training checkpoints ([`checkpoint`]),
//! PyTorch state_dicts in safetensors ([`interop`]) and the metrics log of a training run
//! ([`metrics`]).

pub mod checkpoint;
pub mod interop;
pub mod metrics;
