//! What the library reads and writes as files: training checkpoints ([`checkpoint`]),
//! PyTorch state_dicts in safetensors ([`interop`]), ONNX models (`onnx`, feature `onnx`)
//! and the metrics log of a training run ([`metrics`]).

pub mod checkpoint;
pub mod interop;
pub mod metrics;
#[cfg(feature = "onnx")]
pub mod onnx;
