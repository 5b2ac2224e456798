//! `wgpu-rnn`: train, sample from, evaluate and inspect recurrent networks on the GPU. The
//! commands live in the library ([`wgpu_rnn::app`]); this parses and dispatches.

use std::io::Write;

fn main() {
    let cli = wgpu_rnn::app::cli::Cli::parse_checked();
    match wgpu_rnn::app::cmd::run(cli) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One write, so that lines of ranks sharing mpirun's stderr stay whole.
            let _ = std::io::stderr()
                .lock()
                .write_all(format!("error: {e}\n").as_bytes());
            std::process::exit(1);
        }
    }
}
