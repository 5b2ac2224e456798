//! `wgpu-rnn info`: the adapters found, the one chosen and how the kernels run on it.
//! Under mpirun (feature `mpi`) every rank prints its lines, prefixed by its rank, for the
//! adapter `train` would give it.

use super::ranks::{communicator, gpu_for_rank};
use crate::error::Result;
use crate::gpu::{Gpu, GpuOptions};

pub fn info() -> Result<()> {
    let comm = communicator()?;
    let prefix = if comm.size() > 1 {
        format!("rank {} of {}: ", comm.rank(), comm.size())
    } else {
        String::new()
    };
    macro_rules! println {
        ($($arg:tt)*) => { std::println!("{prefix}{}", format!($($arg)*)) };
    }
    let options = GpuOptions::from_env();
    for a in Gpu::adapters(&options) {
        println!("found:   {a}");
    }
    let gpu = gpu_for_rank(comm.rank())?;
    let l = gpu.limits();
    println!("chosen:  {}", gpu.adapter());
    println!(
        "limits:  storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB, {} invocations per workgroup",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup
    );
    println!("gemm:    {} ({})", gpu.gemm(), gpu.gemm_source());
    let used = |on: bool, var: &str| {
        if on {
            "used".to_string()
        } else {
            format!("not offered or turned off ({var}=0)")
        }
    };
    println!("subgroups: {}", used(gpu.subgroups(), "WGPU_RNN_SUBGROUPS"));
    println!(
        "immediates: {}",
        used(gpu.immediates(), "WGPU_RNN_IMMEDIATES")
    );
    println!(
        "stepwise recurrence: {} batch rows per workgroup",
        gpu.stepwise_rows()
    );
    println!(
        "forward recurrence: {} kernel (WGPU_RNN_SUBGROUP_RECURRENCE=1 or 0 sets it)",
        if gpu.subgroup_recurrence() {
            "subgroup"
        } else {
            "plain"
        }
    );
    Ok(())
}
