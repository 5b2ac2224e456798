//! `wgpu-rnn train`: a run you cannot lose. The save path is checked before the first
//! step; checkpoints are written atomically at the end, every `--save-every` steps, at
//! each new best validation (`<name>.best.safetensors`), and when SIGINT or SIGTERM
//! stops the run at the end of its current step; every step is appended to the metrics
//! log as it finishes; `--resume` continues the run, its log and its picture.
//!
//! [`setup`] maps the flags (and a resumed checkpoint, [`resume`]) to the library's
//! configs and data, [`run`] keeps the log, validations and saves, [`task`] holds what
//! differs between tasks; [`train`] is the loop.

pub mod resume;
pub mod run;
pub mod setup;
pub mod task;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::ranks::{communicator, gpu_for_rank};
use crate::app::cli::{DeviceArg, TrainArgs};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::Rnn;
use crate::train::dist::Communicator;
use crate::train::{CpuTrainer, Train, Trainer};
use run::{Run, RANKS_KEY};
use setup::Setup;

/// Steps between the ranks' check that their parameters are bitwise equal.
const REPLICA_CHECK_EVERY: u64 = 100;

/// Runs `wgpu-rnn train`; the process's exit code (0, or 130/143 after SIGINT/SIGTERM).
/// Under mpirun (feature `mpi`) every rank runs this; a rank's error ends the whole job.
pub fn train(a: TrainArgs) -> Result<i32> {
    let comm = communicator()?;
    if comm.size() == 1 {
        return train_ranks(a, comm);
    }
    match train_ranks(a, comm.clone()) {
        Ok(code) => Ok(code),
        Err(e) => comm.abort(&e.to_string(), 1),
    }
}

fn train_ranks(a: TrainArgs, comm: Arc<dyn Communicator>) -> Result<i32> {
    let s = Setup::new(a, comm.is_root())?;
    let a = &s.args;
    let (mut trainer, gpu) = trainer(&s, &comm)?;
    let start = trainer.steps();
    let mut run = Run::start(&s, comm.clone(), gpu, start)?;
    if comm.is_root() {
        announce(&s, comm.size(), start);
    }
    let signals = watch_signals();
    let mut stopped = 0;
    for step in start..a.steps {
        let (batch, reset) = s.task.batch(a.seed, step, a.seq, a.batch)?;
        if reset {
            trainer.reset_state();
        }
        let stats = trainer.step(&batch)?;
        stopped = signals.load(Ordering::SeqCst);
        // Every rank stops after the same step, or the others would wait in a collective.
        if comm.size() > 1 && !comm.all_agree(stopped == 0)? && stopped == 0 {
            stopped = 15;
        }
        run.after_step(trainer.as_mut(), step + 1, &batch, &stats, stopped != 0)?;
        if stopped != 0 {
            break;
        }
    }
    let signal = (stopped != 0).then(|| signal_name(stopped));
    run.finish(trainer.as_ref(), signal)?;
    Ok(if stopped != 0 {
        128 + stopped as i32
    } else {
        0
    })
}

/// The trainer on this rank's GPU (data-parallel across the ranks) or on the CPU
/// reference, with a resumed checkpoint's state restored.
fn trainer(s: &Setup, comm: &Arc<dyn Communicator>) -> Result<(Box<dyn Train>, Option<Gpu>)> {
    let (mut trainer, gpu): (Box<dyn Train>, _) = match s.args.device {
        DeviceArg::Gpu => {
            let g = gpu_for_rank(comm.rank())?;
            if comm.size() > 1 {
                eprintln!(
                    "rank {} of {}: adapter {}",
                    comm.rank(),
                    comm.size(),
                    g.adapter()
                );
            } else {
                eprintln!("adapter: {}", g.adapter());
            }
            let rnn = Rnn::from_params(&g, s.config.clone(), &s.params)?;
            let t = Trainer::new(rnn, s.train.clone())?
                .with_communicator(comm.clone(), REPLICA_CHECK_EVERY)?;
            (Box::new(t), Some(g))
        }
        DeviceArg::Cpu => {
            if comm.size() > 1 {
                return Err(Error::IncompatibleArgs(
                    "--device cpu under mpirun: data-parallel training runs on GPUs".into(),
                ));
            }
            eprintln!("device: CPU reference (f64)");
            let t = CpuTrainer::new(s.config.clone(), &s.params, s.train.clone())?;
            (Box::new(t), None)
        }
    };
    if let Some(r) = &s.resumed {
        r.checkpoint.restore_into(trainer.as_mut())?;
    }
    Ok((trainer, gpu))
}

/// Rank 0's first lines: a change of rank count since the checkpoint, and the run.
fn announce(s: &Setup, ranks: usize, start: u64) {
    let (a, c) = (&s.args, &s.config);
    if let Some(r) = &s.resumed {
        let before = r
            .checkpoint
            .extra
            .get(RANKS_KEY)
            .map_or("1", String::as_str);
        if before != ranks.to_string() {
            eprintln!(
                "resuming a run trained by {before} rank(s) with {ranks}: each rank takes its \
                 rows of the global batch and of the carried state"
            );
        }
    }
    let t_text = match &s.task {
        crate::data::Task::Speech(_) => "the batch's longest".to_string(),
        _ => a.seq.to_string(),
    };
    let (i, o) = (c.input_size, c.output_size);
    let inputs = match c.embedding {
        Some(v) => format!("embedding V={v} E={i}"),
        None => format!("I={i}"),
    };
    eprintln!(
        "task {}: {} {inputs} H={} O={o} L={} D={} {:?}, T={t_text} B={}, {:?} lr {}, steps {}..{}",
        s.task.kind().name(),
        c.cell.name(),
        c.hidden_size,
        c.num_layers,
        c.directions(),
        c.activation,
        a.batch,
        s.train.optimizer.kind,
        a.lr,
        start,
        a.steps
    );
}

/// SIGINT and SIGTERM set the signal number here (a second one ends the process at once).
fn watch_signals() -> Arc<AtomicUsize> {
    let caught = Arc::new(AtomicUsize::new(0));
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag the earlier signal set.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone());
            let _ = signal_hook::flag::register(sig, stop.clone());
            let _ = signal_hook::flag::register_usize(sig, caught.clone(), sig as usize);
        }
    }
    caught
}

fn signal_name(sig: usize) -> &'static str {
    match sig {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}
