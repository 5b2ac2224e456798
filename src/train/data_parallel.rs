//! Data-parallel training across the ranks of a [`Communicator`]: each rank runs forward,
//! loss and backward of its share of the batch's rows in one submit, the gradients and the
//! loss are read back, summed across the ranks and written back, and every rank applies
//! the same update in a second submit. Rank 0's state is broadcast at the first step; the
//! ranks check now and then that their parameters are bitwise equal.
//!
//! The step and its collectives block on readbacks, so they are native only; the browser
//! (one process) compiles the attachment alone and never calls it.
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

use std::sync::Arc;
use std::time::Instant;

use super::{Batch, StepStats, Trainer};
use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, MemTicket, Recorder};
use crate::model::{CallStats, State};
use crate::train::dist::Communicator;

/// Data-parallel training state: the ranks' communicator and what the last step spent.
pub(crate) struct Dist {
    pub comm: Arc<dyn Communicator>,
    /// Steps between checks that every rank holds bitwise the same parameters (0: never).
    check_every: u64,
    /// Rank 0's parameters, moments, step and carried state have been broadcast (at the
    /// first step, so a checkpoint restored after attaching is included). From then on
    /// the trainer's carried state holds this rank's rows only; before, the whole batch's.
    pub synced: bool,
    times: StepTimes,
    /// Where each step copies the gradients, then the loss, to read them back in one map.
    readback: (wgpu::Buffer, MemTicket),
}

/// Where the last data-parallel step's wall time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    /// Batch upload, forward, loss and backward of this rank's rows, to the GPU going idle.
    pub compute_ms: f64,
    /// Reading the gradients (and the loss) back to the host.
    pub readback_ms: f64,
    /// The all-reduce (sum) across ranks, waiting for the slowest rank included.
    pub all_reduce_ms: f64,
    /// Writing the summed gradients back, the norm, clip and update, and the stats readback.
    pub update_ms: f64,
}

impl Trainer {
    /// Trains data-parallel across `comm`'s ranks (nothing changes with one rank). Every
    /// rank passes the same global batch to [`Train::step`](super::Train::step) and trains on its share of
    /// the rows ([`crate::train::dist::share`]) with the loss normalized by the whole batch's
    /// weights; the gradients are summed across ranks and every rank applies the same
    /// update. CTC's mean divides by the whole batch's rows as well.
    ///
    /// At the first step rank 0's parameters, optimizer moments, step count and (for
    /// stateful training) carried state are broadcast, and each rank keeps its own rows
    /// of the carried state from then on; every `check_every` steps (0: never) the ranks
    /// check that their parameters are bitwise equal. [`Train::evaluate`](super::Train::evaluate) runs the whole
    /// batch on each rank.
    ///
    /// [`Train::carried_state`](super::Train::carried_state) is then a collective (it gathers every rank's rows into the whole
    /// batch's state, so a checkpoint resumes exactly under any number of ranks): every
    /// rank must call it, and so [`crate::files::checkpoint::Checkpoint::from_trainer`], even if
    /// only rank 0 saves the file.
    pub fn with_communicator(
        mut self,
        comm: Arc<dyn Communicator>,
        check_every: u64,
    ) -> Result<Self> {
        if comm.size() > 1 {
            let values: usize = self.rnn.grad_buffers().iter().map(GpuTensor::len).sum();
            let readback = self.rnn.gpu().buffer(
                "gradient readback",
                (values as u64 + 1) * 4,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?;
            self.dist = Some(Dist {
                comm,
                check_every,
                synced: false,
                times: StepTimes::default(),
                readback,
            });
        }
        Ok(self)
    }

    /// The communicator of data-parallel training, if there is more than one rank.
    pub fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.dist.as_ref().map(|d| &d.comm)
    }

    /// Where the last data-parallel step's time went; None with one rank.
    pub fn last_step_times(&self) -> Option<StepTimes> {
        self.dist.as_ref().map(|d| d.times)
    }
}

/// The data-parallel step and its collectives block on readbacks: native only (the
/// browser has one process and steps with [`Trainer::step_async`]).
#[cfg(not(target_arch = "wasm32"))]
impl Trainer {
    /// Rank 0's parameters, optimizer moments and step count, on every rank.
    fn broadcast_state(&mut self, comm: &dyn Communicator) -> Result<()> {
        let mut params = self.rnn.params_to_host()?;
        for t in params.tensors_mut() {
            comm.broadcast_f32(t)?;
        }
        self.rnn.set_params(&params)?;
        for t in self.m.tensors().into_iter().chain(self.v.tensors()) {
            let mut host = t.download()?;
            comm.broadcast_f32(&mut host)?;
            t.write(&host)?;
        }
        let mut step = self.step.to_le_bytes();
        comm.broadcast_bytes(&mut step)?;
        self.step = u64::from_le_bytes(step);
        self.broadcast_carried_state(comm)
    }

    /// Rank 0's carried state (the whole batch's rows, as restored from a checkpoint) on
    /// every rank, each keeping its own rows; none unless training is stateful.
    fn broadcast_carried_state(&mut self, comm: &dyn Communicator) -> Result<()> {
        let carried = match (&self.carried_state, self.config.stateful) {
            (Some(c), true) => Some(c.try_map(GpuTensor::download)?),
            _ => None,
        };
        self.carried_state = None;
        let cfg = self.rnn.config().clone();
        let per_row = cfg.cells() * cfg.hidden_size;
        let mut rows = (carried.as_ref().map_or(0, |c| c.h.len() / per_row) as u64).to_le_bytes();
        comm.broadcast_bytes(&mut rows)?;
        let b = u64::from_le_bytes(rows) as usize;
        // None, or too few rows to split (no batch of the ranks could start from it).
        if b < comm.size() {
            return Ok(());
        }
        let mine = crate::train::dist::share(b, comm.rank(), comm.size())?;
        let n = b * per_row;
        let fresh = || State {
            h: vec![0.0; n],
            c: cfg.cell.has_c().then(|| vec![0.0; n]),
        };
        let mut whole = match carried {
            Some(c) if c.h.len() == n => c,
            _ => fresh(),
        };
        let shape = cfg.state_shape(mine.len());
        let mut part = |v: &mut Vec<f32>| -> Result<GpuTensor> {
            comm.broadcast_f32(v)?;
            let rows = state_rows(v, &cfg, b, mine.clone());
            self.rnn.gpu().tensor(&shape, &rows)
        };
        let h = part(&mut whole.h)?;
        let c = whole.c.as_mut().map(&mut part).transpose()?;
        self.carried_state = Some(State { h, c });
        Ok(())
    }

    /// The whole batch's carried state from every rank's rows (a collective).
    pub(super) fn gather_carried_state(
        &self,
        comm: &dyn Communicator,
    ) -> Result<Option<State<Vec<f32>>>> {
        let local = match &self.carried_state {
            Some(c) => Some(c.try_map(GpuTensor::download)?),
            None => None,
        };
        // Every rank steps alike, so all or none carry a state; agree before gathering.
        if comm.all_agree(local.is_none())? {
            return Ok(None);
        }
        let (true, Some(local)) = (comm.all_agree(local.is_some())?, local) else {
            return Err(Error::Distributed(
                "some ranks carry a state and others do not".into(),
            ));
        };
        let cfg = self.rnn.config();
        let mut join =
            |v: &Vec<f32>| -> Result<Vec<f32>> { Ok(join_rows(&comm.all_gather_f32(v)?, cfg)) };
        Ok(Some(State {
            h: join(&local.h)?,
            c: local.c.as_ref().map(&mut join).transpose()?,
        }))
    }

    /// Errors on every rank unless every rank holds bitwise rank 0's parameters.
    fn check_replicas(&self, comm: &dyn Communicator) -> Result<()> {
        let host: Vec<Vec<f32>> = self
            .rnn
            .param_buffers()
            .iter()
            .map(GpuTensor::download)
            .collect::<Result<_>>()?;
        let hash = crate::train::dist::checksum(host.iter().map(Vec::as_slice));
        if crate::train::dist::same_everywhere(comm, hash)? {
            Ok(())
        } else {
            Err(Error::Distributed(format!(
                "the ranks' parameters differ after step {} (rank {} holds hash {hash:016x}); \
                 ranks must run the same build on adapters that compute alike",
                self.step,
                comm.rank()
            )))
        }
    }

    /// One data-parallel step: forward, loss and backward of this rank's rows in one
    /// submit; the gradients and loss read back, summed across ranks and written back;
    /// norm, clip and update in a second submit.
    pub(super) fn run_step_dist(&mut self, global: &Batch) -> Result<StepStats> {
        let (comm, readback) = match &self.dist {
            Some(d) => (d.comm.clone(), d.readback.0.clone()),
            None => unreachable!("a data-parallel step without a communicator"),
        };
        if !self.dist.as_ref().is_some_and(|d| d.synced) {
            self.broadcast_state(comm.as_ref())?;
            if let Some(d) = &mut self.dist {
                d.synced = true;
            }
        }
        let started = Instant::now();
        let scale = global.check(self.rnn.config(), self.config.loss)?;
        let rows = crate::train::dist::share(global.b, comm.rank(), comm.size())?;
        // Each rank draws the whole batch's masks for its rows: as one process would.
        let key = crate::model::DropoutKey {
            seed: self.config.dropout_seed,
            step: self.step,
        };
        self.rnn.set_dropout_rows(key, rows.clone(), global.b)?;
        let batch = global.rows(rows)?;
        let (slot, li) = self.prepare(&batch, Some((scale, global.b)))?;
        let init = self.start_state(batch.b);
        let gpu = self.rnn.gpu().clone();
        let mut rec = Recorder::new(&gpu, "data-parallel training step");
        self.record_forward_loss(slot, li, init.as_ref(), &mut rec)?;
        self.rnn.record_backward(slot, &mut rec, None)?;
        self.record_carried_state(slot, &mut rec)?;
        let mut offset = 0;
        for g in self.rnn.grad_buffers() {
            let enc = rec.encoder();
            enc.copy_buffer_to_buffer(g.buffer(), g.byte_offset(), &readback, offset, g.bytes());
            offset += g.bytes();
        }
        let loss_at = (self.update.parts * 4) as u64;
        rec.encoder()
            .copy_buffer_to_buffer(self.stats.buffer(), loss_at, &readback, offset, 4);
        let computing = rec.submit()?;
        gpu.wait()?;
        let computed = Instant::now();

        let mut flat = pollster::block_on(gpu.read_mapped(&readback))?;
        let read = Instant::now();

        comm.all_reduce_sum(&mut flat)?;
        let reduced = Instant::now();

        let mut offset = 0;
        for g in self.rnn.grad_buffers() {
            g.write(&flat[offset..offset + g.len()])?;
            offset += g.len();
        }
        gpu.queue().write_buffer(
            self.stats.buffer(),
            loss_at,
            bytemuck::bytes_of(&flat[offset]),
        );
        self.step += 1;
        let lr = self.update.write_hyper(&gpu, &self.config, self.step);
        let mut rec = Recorder::new(&gpu, "data-parallel update");
        rec.plans(&[&self.update.plan])?;
        let updating = self.submit_with_stats(rec)?;
        let stats = self.read_stats()?;
        let done = Instant::now();
        self.last = CallStats {
            dispatches: computing + updating,
            submits: 2,
        };
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        if let Some(d) = &mut self.dist {
            d.times = StepTimes {
                compute_ms: ms(started, computed),
                readback_ms: ms(computed, read),
                all_reduce_ms: ms(read, reduced),
                update_ms: ms(reduced, done),
            };
        }
        let check_every = self.dist.as_ref().map_or(0, |d| d.check_every);
        if check_every > 0 && self.step.is_multiple_of(check_every) {
            self.check_replicas(comm.as_ref())?;
        }
        Ok(self.step_stats(&stats, lr))
    }
}

/// Rows `rows` of each (cell) slice of a host state (L·D, b, H).
#[cfg(not(target_arch = "wasm32"))]
fn state_rows(
    v: &[f32],
    cfg: &crate::model::RnnConfig,
    b: usize,
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let h = cfg.hidden_size;
    (0..cfg.cells())
        .flat_map(|l| &v[(l * b + rows.start) * h..(l * b + rows.end) * h])
        .copied()
        .collect()
}

/// The state (L·D, Σb, H) whose rows are the ranks' pieces (L·D, b_r, H) in rank order.
#[cfg(not(target_arch = "wasm32"))]
fn join_rows(pieces: &[Vec<f32>], cfg: &crate::model::RnnConfig) -> Vec<f32> {
    let (cells, h) = (cfg.cells(), cfg.hidden_size);
    (0..cells)
        .flat_map(|l| {
            pieces.iter().flat_map(move |p| {
                let b = p.len() / (cells * h);
                &p[l * b * h..(l + 1) * b * h]
            })
        })
        .copied()
        .collect()
}
