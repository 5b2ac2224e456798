//! The processes of a run: under an MPI launcher (feature `mpi`), one rank per process,
//! each on its own adapter where there are several.

use std::sync::Arc;

use crate::train::dist::{Communicator, SingleProcess};
use crate::{Gpu, GpuOptions, Result};

/// Environment variables by which MPI launchers (Open MPI, MPICH/Hydra, PMIx, Intel MPI)
/// tell a process it is one of a job's ranks.
const LAUNCHER_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
];

/// The ranks of this run: MPI's world where a launcher such as mpirun started the process
/// (built with the feature `mpi`), else this process alone. A build without the feature
/// started as one of several ranks is an error: the ranks would each train alone and
/// overwrite each other's files.
pub fn communicator() -> Result<Arc<dyn Communicator>> {
    let launched = LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some());
    #[cfg(feature = "mpi")]
    if launched {
        return Ok(Arc::new(crate::train::dist::Mpi::init()?));
    }
    #[cfg(not(feature = "mpi"))]
    if launched {
        let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
            .iter()
            .filter_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
            .max();
        if let Some(n) = size.filter(|&n| n > 1) {
            return Err(crate::Error::Distributed(format!(
                "started as one of {n} MPI ranks, but this wgpu-rnn was built without MPI \
                 (each rank would train alone and overwrite the others' files); build it \
                 with `cargo build --release --features mpi` (README: Many GPUs and \
                 machines), or run it without mpirun"
            )));
        }
    }
    Ok(Arc::new(SingleProcess))
}

/// Rank r's adapter: the r-th (mod their number) device of the preferred kind and backend
/// (GPUs before CPU adapters), among those `WGPU_ADAPTER_NAME` names if it is set.
pub fn gpu_for_rank(rank: usize) -> Result<Gpu> {
    Gpu::with_options(&GpuOptions::from_env().with_adapter_index(rank))
}
