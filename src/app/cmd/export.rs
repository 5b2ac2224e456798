//! `wgpu-rnn export`: a checkpoint's model tensors alone, as PyTorch's state_dict.

use crate::app::cli::ExportArgs;
use crate::error::Result;

pub fn export(a: ExportArgs) -> Result<()> {
    crate::files::checkpoint::export_torch(&a.model, &a.output)?;
    eprintln!(
        "wrote {}: the model tensors as PyTorch names them (rnn., head.), loadable with \
         load_state_dict(strict=True)",
        a.output.display()
    );
    Ok(())
}
