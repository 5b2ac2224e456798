//! `wgpu-rnn export`: a checkpoint's model alone, as PyTorch's state_dict or as ONNX.

use crate::app::cli::{ExportArgs, ExportFormat};
use crate::error::Result;

pub fn export(a: ExportArgs) -> Result<()> {
    match a.format {
        ExportFormat::Pytorch => {
            crate::files::checkpoint::export_torch(&a.model, &a.output)?;
            eprintln!(
                "wrote {}: the model tensors as PyTorch names them (rnn., head.), loadable \
                 with load_state_dict(strict=True)",
                a.output.display()
            );
        }
        ExportFormat::Onnx => {
            crate::files::onnx::export_checkpoint(&a.model, &a.output)?;
            eprintln!(
                "wrote {}: ONNX (opset {}), inputs x (T, B, I), h0 (and c0 for LSTM) (L·D, B, H) \
                 and lengths (B, int32); outputs y (T, B, O), h_n (and c_n)",
                a.output.display(),
                crate::files::onnx::OPSET
            );
        }
    }
    Ok(())
}
