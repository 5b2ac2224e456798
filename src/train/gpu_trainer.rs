//! Training on the GPU: forward, loss, backward, clip and update recorded into one
//! command encoder and one submit; one small readback (loss and gradient norm) per step.

use std::sync::Arc;
use std::time::Instant;

use super::{Batch, Hyper, LossKind, OptimizerKind, StepStats, Targets, Train, TrainConfig};
use crate::ctc::gpu::CtcBuffers;
use crate::error::{Error, Result};
use crate::gpu::{
    record_plans, to_u32, Gpu, GpuTensor, Kernel, MemTicket, Plan, PlanBuilder, Profiler,
    RowsUniform, UpdateUniform, MSE, SOFTMAX_XENT, UPDATE, WG,
};
use crate::model::{packed, CallStats, Params, Rnn, State};
use crate::train::dist::Communicator;

/// The stats buffer holds the sums of squares of the gradient's chunks, then the loss.
fn stats_len(parts: usize) -> usize {
    parts + 1
}

/// Chunks the gradient norm is summed in: one workgroup per 16 Ki values, at most 64
/// (the update kernel adds them all up per element).
fn norm_parts(params: usize) -> usize {
    params.div_ceil(1 << 14).clamp(1, 64)
}

/// Data-parallel training state: the ranks' communicator and what the last step spent.
struct Dist {
    comm: Arc<dyn Communicator>,
    /// Steps between checks that every rank holds bitwise the same parameters (0: never).
    check_every: u64,
    /// Rank 0's parameters, moments, step and carried state have been broadcast (at the
    /// first step, so a checkpoint restored after attaching is included). From then on
    /// the trainer's carried state holds this rank's rows only; before, the whole batch's.
    synced: bool,
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

/// Per-(T, B) buffers and plans of the trainer.
struct StepWorkspace {
    t: usize,
    b: usize,
    /// The model workspace's y buffer this was built against (rebuilt if it changes).
    y: wgpu::Buffer,
    inputs: LossInputs,
    loss: Plan,
}

/// What the loss plan reads besides y.
enum LossInputs {
    /// Cross-entropy and MSE (shaders/loss.wgsl).
    Rows {
        targets: GpuTensor,
        weights: GpuTensor,
        scale: GpuTensor,
        /// Bound by the loss plan; kept here as the owner.
        _row_loss: GpuTensor,
    },
    /// CTC (shaders/ctc.wgsl), for targets of up to its `u_cap` labels.
    Ctc(CtcBuffers),
}

impl StepWorkspace {
    /// Whether a batch of (T, B) whose longest target has `max_u` labels fits.
    fn fits(&self, t: usize, b: usize, max_u: usize) -> bool {
        self.t == t
            && self.b == b
            && match &self.inputs {
                LossInputs::Rows { .. } => true,
                LossInputs::Ctc(c) => max_u <= c.u_cap,
            }
    }
}

/// Trains an [`Rnn`] on the GPU.
///
/// A few steps of Adam with a cosine schedule on a toy regression, a checkpoint that
/// reloads, and the trained model's predictions:
///
/// ```
/// use wgpu_rnn::files::checkpoint::Checkpoint;
/// use wgpu_rnn::{Batch, Gpu, LossKind, LrSchedule, OptimizerConfig, OptimizerKind, Rnn,
///     RnnConfig, Targets, Train, TrainConfig, Trainer};
///
/// # fn main() -> wgpu_rnn::Result<()> {
/// let gpu = Gpu::new()?;
/// let (t, b) = (6, 2);
/// let rnn = Rnn::new(&gpu, RnnConfig::new(1, 8, 1), 0)?;
/// let train = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Adam, 0.01), LossKind::Mse)
///     .with_schedule(LrSchedule::Cosine { warmup_steps: 2, total_steps: 20, min_lr: 1e-3 });
/// let mut trainer = Trainer::new(rnn, train.clone())?;
///
/// // Predict the input one step late: y_t = x_(t-1). x and y are (T, B, 1), time-major.
/// let x: Vec<f32> = (0..t * b).map(|k| (k as f32 * 0.7).sin()).collect();
/// let y: Vec<f32> = (0..t * b).map(|k| if k < b { 0.0 } else { x[k - b] }).collect();
/// let batch = Batch::new(t, b, x.clone(), Targets::Values(y))?;
/// for _ in 0..5 {
///     let stats = trainer.step(&batch)?;
///     assert!(!stats.skipped && stats.lr <= 0.01);
/// }
///
/// let path = std::env::temp_dir().join("wgpu-rnn-doc-example.safetensors");
/// let mut ck = Checkpoint::from_trainer(&trainer, "sine", None)?;
/// ck.extra.insert("seed".into(), "0".into());
/// ck.save(&path)?;
///
/// // Resume elsewhere: the model from the file, the optimizer and the schedule's step too.
/// let ck = Checkpoint::load(&path)?;
/// let mut resumed = Trainer::new(Rnn::from_params(&gpu, ck.config.clone(), &ck.params)?, train)?;
/// ck.restore_into(&mut resumed)?;
/// assert_eq!(resumed.steps(), 5);
///
/// // Inference with the trained model itself, no rebuild.
/// let mut rnn = trainer.into_rnn();
/// let out = rnn.forward(&gpu.tensor(&[t, b, 1], &x)?, None)?;
/// assert_eq!(out.y.download()?.len(), t * b);
/// # std::fs::remove_file(&path).ok();
/// # Ok(())
/// # }
/// ```
pub struct Trainer {
    rnn: Rnn,
    config: TrainConfig,
    /// Optimizer moments: views of one flat buffer each, laid out like the parameters.
    m: Params<GpuTensor>,
    v: Params<GpuTensor>,
    hyper: (wgpu::Buffer, MemTicket),
    stats: GpuTensor,
    readback: (wgpu::Buffer, MemTicket),
    update: Plan,
    /// The final state of the last step, the next step's initial state when stateful.
    carry: Option<State<GpuTensor>>,
    workspaces: Vec<StepWorkspace>,
    step: u64,
    last: CallStats,
    /// Host microseconds the last step took to record and submit its commands.
    last_host_us: f64,
    /// Gradient tensors (sum-of-squares slots before the loss in `stats`).
    parts: usize,
    /// Set by [`Trainer::with_communicator`] with more than one rank.
    dist: Option<Dist>,
}

impl Trainer {
    pub fn new(rnn: Rnn, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let gpu = rnn.gpu().clone();
        let shapes = rnn.config().param_shapes();
        let (m_flat, m) = packed(&gpu, &shapes, "optimizer m")?;
        let (v_flat, v) = packed(&gpu, &shapes, "optimizer v")?;
        let (params, grads) = (rnn.params_flat(), rnn.grads_flat());
        let chunks: Vec<usize> = params.iter().map(|p| norm_parts(p.len())).collect();
        let parts = chunks.iter().sum();
        let stats = GpuTensor::empty(&gpu, &[stats_len(parts)], "training stats")?;
        let hyper = gpu.buffer(
            "optimizer hyperparameters",
            std::mem::size_of::<Hyper>() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        let readback = gpu.buffer(
            "stats readback",
            (stats_len(parts) * 4) as u64,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let opt: u8 = match config.optimizer.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Adam => 1,
            OptimizerKind::Adagrad => 2,
            OptimizerKind::AdamW => 3,
        };
        // The parameters share one buffer (more only past the binding limit), and their
        // gradients and moments likewise: one dispatch for the norm's chunks and one for
        // the clip and update of every parameter.
        let mut plan = PlanBuilder::new(&gpu);
        plan.section("gradient norm");
        let mut slot = 0;
        for (g, &n) in grads.iter().zip(&chunks) {
            plan.sum_squares(g, n, stats.buffer(), slot)?;
            slot += n;
        }
        plan.section("optimizer update");
        for (((p, g), m), v) in params.iter().zip(grads).zip(&m_flat).zip(&v_flat) {
            let buffers = [
                p.buffer(),
                g.buffer(),
                m.buffer(),
                v.buffer(),
                stats.buffer(),
                &hyper.0,
            ];
            let u = UpdateUniform {
                n: to_u32("parameter size", p.len())?,
                parts: to_u32("norm parts", parts)?,
                _pad0: 0,
                _pad1: 0,
            };
            let kernel = Kernel::new(&UPDATE).with("WG", WG).with("OPT", opt);
            let groups = plan.groups_1d(p.len())?;
            plan.push(kernel, bytemuck::bytes_of(&u), &buffers.map(Some), groups)?;
        }
        let update = plan.finish()?;
        Ok(Trainer {
            rnn,
            config,
            m,
            v,
            hyper,
            stats,
            readback,
            update,
            carry: None,
            workspaces: Vec::new(),
            step: 0,
            last: CallStats::default(),
            last_host_us: 0.0,
            parts,
            dist: None,
        })
    }

    /// Trains data-parallel across `comm`'s ranks (nothing changes with one rank). Every
    /// rank passes the same global batch to [`Train::step`] and trains on its share of
    /// the rows ([`crate::train::dist::share`]) with the loss normalized by the whole batch's
    /// weights; the gradients are summed across ranks and every rank applies the same
    /// update. CTC's mean divides by the whole batch's rows as well.
    ///
    /// At the first step rank 0's parameters, optimizer moments, step count and (for
    /// stateful training) carried state are broadcast, and each rank keeps its own rows
    /// of the carried state from then on; every `check_every` steps (0: never) the ranks
    /// check that their parameters are bitwise equal. [`Train::evaluate`] runs the whole
    /// batch on each rank.
    ///
    /// [`Train::carry`] is then a collective (it gathers every rank's rows into the whole
    /// batch's state, so a checkpoint resumes exactly under any number of ranks): every
    /// rank must call it, and so [`crate::files::checkpoint::Checkpoint::from_trainer`], even if
    /// only rank 0 saves the file.
    pub fn with_communicator(
        mut self,
        comm: Arc<dyn Communicator>,
        check_every: u64,
    ) -> Result<Self> {
        if comm.size() > 1 {
            let values: usize = self.rnn.grads_flat().iter().map(GpuTensor::len).sum();
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

    /// Dispatches and submits of the last training step.
    pub fn last_step_stats(&self) -> CallStats {
        self.last
    }

    /// Host microseconds the last training step spent recording and submitting its
    /// commands (after the batch upload, before waiting for the GPU): the part of a step
    /// that can bound throughput on a fast GPU.
    pub fn last_host_record_us(&self) -> f64 {
        self.last_host_us
    }

    /// The model being trained, with the parameters of the last step.
    pub fn rnn(&self) -> &Rnn {
        &self.rnn
    }

    /// The model being trained, e.g. to run a forward between steps or set its parameters
    /// (the trainer keeps using its buffers).
    pub fn rnn_mut(&mut self) -> &mut Rnn {
        &mut self.rnn
    }

    /// The trained model, for inference without copying the parameters to the host; the
    /// optimizer state and carried state are dropped (save them first with
    /// [`crate::files::checkpoint::Checkpoint::from_trainer`] to resume later).
    pub fn into_rnn(self) -> Rnn {
        self.rnn
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Uploads the batch and returns (model workspace index, step workspace index).
    /// `whole` (the loss normalizer and rows of the whole batch) replaces the batch's own
    /// when it is a rank's share of a larger batch.
    fn prepare(&mut self, batch: &Batch, whole: Option<(f32, usize)>) -> Result<(usize, usize)> {
        let own = batch.check(self.rnn.config(), self.config.loss)?;
        let (scale, rows) = whole.unwrap_or((own, batch.b));
        let max_u = match &batch.targets {
            Targets::Labels(l) => {
                crate::ctc::gpu::check_gpu_limits(self.rnn.config().output_size, l)?;
                l.max_len()
            }
            _ => 0,
        };
        let (wi, si) = self.workspaces_for(batch.t, batch.b, batch.lengths.as_deref(), max_u)?;
        let sw = &self.workspaces[si];
        self.rnn.ws(wi).x.write(&batch.x)?;
        match (&sw.inputs, &batch.targets) {
            (LossInputs::Ctc(bufs), Targets::Labels(l)) => {
                let opts = self.config.loss.ctc_options().expect("a CTC loss");
                let o = self.rnn.config().output_size;
                bufs.write(o, &batch.input_lengths(), l, &opts, rows)?;
            }
            (
                LossInputs::Rows {
                    targets,
                    weights,
                    scale: s,
                    ..
                },
                t,
            ) => {
                match t {
                    Targets::Classes(c) => {
                        let c: Vec<f32> = c.iter().map(|&k| k as f32).collect();
                        targets.write_prefix(&c)?;
                    }
                    Targets::Values(v) => targets.write_prefix(v)?,
                    Targets::Labels(_) => return Err(crate::Error::LossMismatch),
                }
                weights.write(&batch.weights)?;
                s.write(&[scale])?;
            }
            _ => return Err(crate::Error::LossMismatch),
        }
        Ok((wi, si))
    }

    /// (model workspace index, step workspace index) for (T, B), per-row `lengths` and
    /// CTC targets of up to `max_u` labels, built on first use.
    fn workspaces_for(
        &mut self,
        t: usize,
        b: usize,
        lengths: Option<&[usize]>,
        max_u: usize,
    ) -> Result<(usize, usize)> {
        let wi = self.rnn.prepare(t, b, lengths)?;
        let y = self.rnn.ws(wi).y.buffer().clone();
        let si = match self
            .workspaces
            .iter()
            .position(|s| s.fits(t, b, max_u) && s.y == y)
        {
            Some(i) => i,
            None => {
                let s = self.build_step_workspace(wi, max_u)?;
                // Keep only step workspaces whose model workspace still exists (the model
                // keeps a few, evicting the oldest): many batch shapes must not pile up.
                let live: Vec<wgpu::Buffer> = (0..self.rnn.workspace_count())
                    .map(|i| self.rnn.ws(i).y.buffer().clone())
                    .collect();
                self.workspaces
                    .retain(|w| !(w.t == t && w.b == b && w.y == y) && live.contains(&w.y));
                self.workspaces.push(s);
                self.workspaces.len() - 1
            }
        };
        Ok((wi, si))
    }

    fn build_step_workspace(&self, wi: usize, max_u: usize) -> Result<StepWorkspace> {
        let gpu = self.rnn.gpu();
        let ws = self.rnn.ws(wi);
        let (t, b) = (ws.t, ws.b);
        let o = self.rnn.config().output_size;
        if let Some(opts) = self.config.loss.ctc_options() {
            let bufs = CtcBuffers::new(gpu, t, b, max_u)?;
            let mut plan = PlanBuilder::new(gpu);
            plan.section("loss");
            bufs.record(&mut plan, ws.y.buffer(), ws.dy.buffer(), o, &opts)?;
            plan.col_sum(
                b,
                1,
                (bufs.row_loss.buffer(), 0),
                (self.stats.buffer(), self.parts),
            )?;
            return Ok(StepWorkspace {
                t,
                b,
                y: ws.y.buffer().clone(),
                inputs: LossInputs::Ctc(bufs),
                loss: plan.finish()?,
            });
        }
        let targets = GpuTensor::empty(gpu, &[t, b, o], "targets")?;
        let weights = GpuTensor::empty(gpu, &[t, b], "weights")?;
        let scale = GpuTensor::empty(gpu, &[1], "loss scale")?;
        let row_loss = GpuTensor::empty(gpu, &[t, b], "row losses")?;
        let def = match self.config.loss {
            LossKind::CrossEntropy => &SOFTMAX_XENT,
            LossKind::Mse => &MSE,
            LossKind::Ctc { .. } => unreachable!("CTC returned above"),
        };
        let mut plan = PlanBuilder::new(gpu);
        let buffers = [
            ws.y.buffer(),
            targets.buffer(),
            weights.buffer(),
            scale.buffer(),
            ws.dy.buffer(),
            row_loss.buffer(),
        ];
        plan.section("loss");
        let u = RowsUniform {
            rows: to_u32("loss rows", t * b)?,
            cols: to_u32("loss columns", o)?,
            _pad0: 0,
            _pad1: 0,
        };
        let groups = plan.groups((t * b).div_ceil(WG as usize), 1)?;
        let kernel = Kernel::new(def).with("WG", WG);
        plan.push(kernel, bytemuck::bytes_of(&u), &buffers.map(Some), groups)?;
        plan.col_sum(
            t * b,
            1,
            (row_loss.buffer(), 0),
            (self.stats.buffer(), self.parts),
        )?;
        Ok(StepWorkspace {
            t,
            b,
            y: ws.y.buffer().clone(),
            inputs: LossInputs::Rows {
                targets,
                weights,
                scale,
                _row_loss: row_loss,
            },
            loss: plan.finish()?,
        })
    }

    /// Records the initial state, forward and loss; returns the encoder.
    fn record_forward_loss(
        &self,
        wi: usize,
        si: usize,
        init: Option<&State<GpuTensor>>,
        mut profiler: Option<&mut Profiler>,
    ) -> Result<wgpu::CommandEncoder> {
        let gpu = self.rnn.gpu();
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train step"),
            });
        self.rnn
            .record_forward(wi, &mut enc, init, profiler.as_deref_mut())?;
        record_plans(&mut enc, &[&self.workspaces[si].loss], profiler)?;
        Ok(enc)
    }

    /// Submits `enc` after copying the stats into the readback buffer.
    fn submit(&self, mut enc: wgpu::CommandEncoder) -> Result<()> {
        enc.copy_buffer_to_buffer(
            self.stats.buffer(),
            0,
            &self.readback.0,
            0,
            self.stats.bytes(),
        );
        self.rnn.gpu().submit("training step", enc)
    }
}

impl Trainer {
    /// Runs one training step (as [`Train::step`]) with every dispatch in a timed pass of
    /// its own, and returns the GPU milliseconds of each part of the step. Needs an
    /// adapter with timestamp queries; the extra passes make the step slower than usual.
    pub fn profile_step(&mut self, batch: &Batch) -> Result<Vec<(&'static str, f64)>> {
        let (wi, si) = self.prepare(batch, None)?;
        let ws = self.rnn.ws(wi);
        let dispatches = ws.forward.dispatches()
            + self.workspaces[si].loss.dispatches()
            + ws.backward.dispatches()
            + self.update.dispatches();
        let mut profiler = Profiler::new(self.rnn.gpu(), dispatches)?;
        self.run_step(batch, Some(&mut profiler))?;
        profiler.read(self.rnn.gpu())
    }

    /// A step's stats from its readback: the gradient norm's partial sums, then the loss.
    fn step_stats(&self, stats: &[f32], lr: f32) -> StepStats {
        let norm = stats[..self.parts].iter().sum::<f32>().sqrt();
        let loss = stats[self.parts];
        StepStats {
            loss,
            grad_norm: norm,
            skipped: !(norm.is_finite() && loss.is_finite()),
            step: self.step,
            lr,
        }
    }

    /// Drops a carried state that was carried for another batch size than `b` rows.
    fn fit_carry(&mut self, b: usize) {
        let shape = self.rnn.config().state_shape(b);
        if self.carry.as_ref().is_none_or(|c| c.h.shape() != shape) {
            self.carry = None;
        }
    }

    /// Records the copy of the step's final state into the carried state (of `b` rows,
    /// allocated at the first step or after a reset).
    fn record_carry(&mut self, wi: usize, b: usize, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let carry = match self.carry.take() {
            Some(c) => c,
            None => self.rnn.empty_state(b, "carried state")?,
        };
        self.rnn
            .ws(wi)
            .record_final_state(self.rnn.config(), enc, &carry);
        self.carry = Some(carry);
        Ok(())
    }

    /// The state a step starts from: the carried one for stateful training, else zeros
    /// (None).
    fn start_state(&self) -> Option<&State<GpuTensor>> {
        if self.config.stateful {
            self.carry.as_ref()
        } else {
            None
        }
    }

    fn run_step(
        &mut self,
        batch: &Batch,
        mut profiler: Option<&mut Profiler>,
    ) -> Result<StepStats> {
        let (wi, si) = self.prepare(batch, None)?;
        let b = batch.b;
        self.fit_carry(b);
        let init = self.start_state();
        let recording = std::time::Instant::now();
        let mut enc = self.record_forward_loss(wi, si, init, profiler.as_deref_mut())?;
        let ws = self.rnn.ws(wi);
        let ws_dispatches = ws.forward.dispatches()
            + self.workspaces[si].loss.dispatches()
            + ws.backward.dispatches();
        self.rnn
            .record_backward(wi, &mut enc, None, profiler.as_deref_mut())?;
        record_plans(&mut enc, &[&self.update], profiler.as_deref_mut())?;
        if let Some(p) = profiler {
            p.resolve(&mut enc);
        }
        self.record_carry(wi, b, &mut enc)?;
        self.step += 1;
        let hyper = Hyper::new(&self.config, self.step);
        self.rnn
            .gpu()
            .queue()
            .write_buffer(&self.hyper.0, 0, bytemuck::bytes_of(&hyper));
        let stats = self.submit(enc).and_then(|()| {
            self.last_host_us = recording.elapsed().as_secs_f64() * 1e6;
            pollster::block_on(self.rnn.gpu().read_mapped(&self.readback.0))
        });
        self.last = CallStats {
            dispatches: ws_dispatches + self.update.dispatches(),
            submits: 1,
        };
        // The update changed the weights the forward state was computed with.
        self.rnn.forget_forward();
        let stats = stats?;
        Ok(self.step_stats(&stats, hyper.lr))
    }
}

impl Trainer {
    /// Rank 0's parameters, optimizer moments and step count, on every rank.
    fn broadcast_state(&mut self, comm: &dyn Communicator) -> Result<()> {
        let tensors = self
            .rnn
            .params_flat()
            .iter()
            .chain(self.m.tensors())
            .chain(self.v.tensors());
        for t in tensors {
            let mut host = t.download()?;
            comm.broadcast_f32(&mut host)?;
            t.write(&host)?;
        }
        let mut step = self.step.to_le_bytes();
        comm.broadcast_bytes(&mut step)?;
        self.step = u64::from_le_bytes(step);
        self.broadcast_carry(comm)?;
        self.rnn.forget_forward();
        Ok(())
    }

    /// Rank 0's carried state (the whole batch's rows, as restored from a checkpoint) on
    /// every rank, each keeping its own rows; none unless training is stateful.
    fn broadcast_carry(&mut self, comm: &dyn Communicator) -> Result<()> {
        let carried = match (&self.carry, self.config.stateful) {
            (Some(c), true) => Some(c.try_map(GpuTensor::download)?),
            _ => None,
        };
        self.carry = None;
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
        self.carry = Some(State { h, c });
        Ok(())
    }

    /// The whole batch's carried state from every rank's rows (a collective).
    fn gather_carry(&self, comm: &dyn Communicator) -> Result<Option<State<Vec<f32>>>> {
        let local = match &self.carry {
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
            .params_flat()
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
    fn run_step_dist(&mut self, global: &Batch) -> Result<StepStats> {
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
        let batch = global.rows(crate::train::dist::share(
            global.b,
            comm.rank(),
            comm.size(),
        )?)?;
        let (wi, si) = self.prepare(&batch, Some((scale, global.b)))?;
        let b = batch.b;
        self.fit_carry(b);
        let init = self.start_state();
        let mut enc = self.record_forward_loss(wi, si, init, None)?;
        self.rnn.record_backward(wi, &mut enc, None, None)?;
        self.record_carry(wi, b, &mut enc)?;
        let ws = self.rnn.ws(wi);
        let dispatches = ws.forward.dispatches()
            + self.workspaces[si].loss.dispatches()
            + ws.backward.dispatches()
            + self.update.dispatches();
        let mut offset = 0;
        for g in self.rnn.grads_flat() {
            enc.copy_buffer_to_buffer(g.buffer(), g.byte_offset(), &readback, offset, g.bytes());
            offset += g.bytes();
        }
        enc.copy_buffer_to_buffer(
            self.stats.buffer(),
            (self.parts * 4) as u64,
            &readback,
            offset,
            4,
        );
        let gpu = self.rnn.gpu().clone();
        gpu.submit("data-parallel training step", enc)?;
        gpu.wait()?;
        let computed = Instant::now();

        let mut flat = pollster::block_on(gpu.read_mapped(&readback))?;
        let read = Instant::now();

        comm.all_reduce_sum(&mut flat)?;
        let reduced = Instant::now();

        let mut offset = 0;
        for g in self.rnn.grads_flat() {
            g.write(&flat[offset..offset + g.len()])?;
            offset += g.len();
        }
        gpu.queue().write_buffer(
            self.stats.buffer(),
            (self.parts * 4) as u64,
            bytemuck::bytes_of(&flat[offset]),
        );
        self.step += 1;
        let hyper = Hyper::new(&self.config, self.step);
        gpu.queue()
            .write_buffer(&self.hyper.0, 0, bytemuck::bytes_of(&hyper));
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train step update"),
            });
        record_plans(&mut enc, &[&self.update], None)?;
        self.rnn.forget_forward();
        self.submit(enc)?;
        let stats = pollster::block_on(gpu.read_mapped(&self.readback.0))?;
        let done = Instant::now();
        self.last = CallStats {
            dispatches,
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
        Ok(self.step_stats(&stats, hyper.lr))
    }
}

impl Train for Trainer {
    fn step_times(&self) -> Option<StepTimes> {
        self.last_step_times()
    }

    fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        if self.dist.is_some() {
            return self.run_step_dist(batch);
        }
        self.run_step(batch, None)
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<f32> {
        let (wi, si) = self.prepare(batch, None)?;
        let enc = self.record_forward_loss(wi, si, None, None)?;
        self.rnn.forget_forward();
        self.submit(enc)?;
        let stats = pollster::block_on(self.rnn.gpu().read_mapped(&self.readback.0))?;
        Ok(stats[self.parts])
    }

    fn params(&self) -> Result<Params<Vec<f32>>> {
        self.rnn.params_to_host()
    }

    fn reset_state(&mut self) {
        self.carry = None;
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn rnn_config(&self) -> &crate::model::RnnConfig {
        self.rnn.config()
    }

    fn train_config(&self) -> &TrainConfig {
        &self.config
    }

    fn optim_state(&self) -> Result<super::Moments> {
        Ok((
            self.m.try_map(|t| t.download())?,
            self.v.try_map(|t| t.download())?,
        ))
    }

    fn carry(&self) -> Result<Option<(usize, State<Vec<f32>>)>> {
        if let Some(d) = self.dist.as_ref().filter(|d| d.synced) {
            let per_row = self.rnn.config().cells() * self.rnn.config().hidden_size;
            return Ok(self
                .gather_carry(d.comm.as_ref())?
                .map(|s| (s.h.len() / per_row, s)));
        }
        self.carry
            .as_ref()
            .map(|c| Ok((c.h.shape()[1], c.try_map(GpuTensor::download)?)))
            .transpose()
    }

    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carry: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()> {
        m.check(self.rnn.config())?;
        v.check(self.rnn.config())?;
        for (t, d) in self.m.tensors().into_iter().zip(m.tensors()) {
            t.write(d)?;
        }
        for (t, d) in self.v.tensors().into_iter().zip(v.tensors()) {
            t.write(d)?;
        }
        self.step = step;
        let cfg = self.rnn.config();
        self.carry = match carry {
            Some((b, s)) => {
                cfg.check_host_state("carried state", s, b)?;
                let shape = cfg.state_shape(b);
                Some(s.try_map(|v| self.rnn.gpu().tensor(&shape, v))?)
            }
            None => None,
        };
        // The whole batch's state and rank 0's moments reach every rank at the next step.
        if let Some(d) = &mut self.dist {
            d.synced = false;
        }
        Ok(())
    }
}

/// Rows `rows` of each (cell) slice of a host state (L·D, b, H).
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

impl Trainer {
    /// The model's GPU context.
    pub fn gpu(&self) -> &Gpu {
        self.rnn.gpu()
    }
}
