//! Lists the wgpu adapters this machine has and the one wgpu-rnn would choose
//! (honouring WGPU_BACKEND and WGPU_ADAPTER_NAME). Exits non-zero when there is none.
//!
//!   cargo run --example adapters

use wgpu_rnn::{Gpu, GpuOptions};

fn main() {
    let options = GpuOptions::from_env();
    for a in Gpu::adapters(&options) {
        println!("found:  {a}");
    }
    match Gpu::with_options(&options) {
        Ok(gpu) => {
            let l = gpu.limits();
            println!("chosen: {}", gpu.adapter());
            println!(
                "limits: max_storage_buffer_binding_size {} B, max_buffer_size {} B, \
                 max_compute_workgroup_storage_size {} B, max_compute_invocations_per_workgroup {}",
                l.max_storage_buffer_binding_size,
                l.max_buffer_size,
                l.max_compute_workgroup_storage_size,
                l.max_compute_invocations_per_workgroup
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
