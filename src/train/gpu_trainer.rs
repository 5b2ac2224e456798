//! Training on the GPU: forward, loss, backward, clip and update recorded into one
//! command encoder and one submit; one small readback (loss and gradient norm) per step.
//! The model records its own forward and backward ([`Rnn::record_forward`]); the loss
//! ([`super::loss::LossPlan`]) and the optimizer ([`super::optim::UpdatePlan`]) have plans
//! of their own. Data-parallel steps are in `data_parallel.rs`.

use super::data_parallel::Dist;
use super::loss::{label_capacity, LossPlan};
use super::optim::UpdatePlan;
#[cfg(not(target_arch = "wasm32"))]
use super::Train;
use super::{Batch, CarriedState, StepStats, TrainConfig};
use crate::error::Result;
use crate::gpu::{Gpu, GpuTensor, MemTicket, Profiler, Recorder};
use crate::model::{CallStats, DropoutKey, Params, Rnn, Slot, State};

/// Trains an [`Rnn`] on the GPU.
///
/// A few steps of Adam with a cosine schedule on a toy regression, a checkpoint that
/// reloads, and the trained model's predictions:
///
/// ```
/// use wgpu_rnn::{Batch, Checkpoint, Gpu, LossKind, LrSchedule, OptimizerConfig, OptimizerKind, Rnn,
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
    pub(super) rnn: Rnn,
    pub(super) config: TrainConfig,
    /// Optimizer moments: views of one flat buffer each, laid out like the parameters.
    pub(super) m: Params<GpuTensor>,
    pub(super) v: Params<GpuTensor>,
    /// The gradient norm's partial sums, then the loss.
    pub(super) stats: GpuTensor,
    readback: (wgpu::Buffer, MemTicket),
    pub(super) update: UpdatePlan,
    /// The final state of the last step, the next step's initial state when stateful.
    pub(super) carried_state: Option<State<GpuTensor>>,
    /// The loss plan of each of the model's slots in use.
    losses: Vec<(Slot, LossPlan)>,
    pub(super) step: u64,
    pub(super) last: CallStats,
    /// Host microseconds the last step took to record and submit its commands.
    last_host_us: f64,
    /// Set by [`Trainer::with_communicator`] with more than one rank.
    pub(super) dist: Option<Dist>,
}

impl Trainer {
    pub fn new(rnn: Rnn, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let gpu = rnn.gpu().clone();
        let (m_buffers, m) = Params::packed(&gpu, rnn.config(), "optimizer m")?;
        let (v_buffers, v) = Params::packed(&gpu, rnn.config(), "optimizer v")?;
        let parts = UpdatePlan::parts(rnn.grad_buffers());
        let stats = GpuTensor::empty(&gpu, &[parts + 1], "training stats")?;
        let readback = gpu.buffer(
            "stats readback",
            stats.bytes(),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let update = UpdatePlan::new(
            &gpu,
            config.optimizer.kind,
            [
                rnn.param_buffers(),
                rnn.grad_buffers(),
                &m_buffers,
                &v_buffers,
            ],
            &stats,
        )?;
        Ok(Trainer {
            rnn,
            config,
            m,
            v,
            stats,
            readback,
            update,
            carried_state: None,
            losses: Vec::new(),
            step: 0,
            last: CallStats::default(),
            last_host_us: 0.0,
            dist: None,
        })
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
    /// [`crate::Checkpoint::from_trainer`] to resume later).
    pub fn into_rnn(self) -> Rnn {
        self.rnn
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model's GPU context.
    pub fn gpu(&self) -> &Gpu {
        self.rnn.gpu()
    }

    /// Uploads the batch; returns the model's slot for it and the index of its loss plan.
    /// `whole` (the loss normalizer and rows of the whole batch) replaces the batch's own
    /// when it is a rank's share of a larger batch.
    pub(super) fn prepare(
        &mut self,
        batch: &Batch,
        whole: Option<(f32, usize)>,
    ) -> Result<(Slot, usize)> {
        let own = batch.check(self.rnn.config(), self.config.loss)?;
        let (scale, rows) = whole.unwrap_or((own, batch.b));
        let o = self.rnn.config().output_size;
        let max_u = label_capacity(batch, o)?;
        let slot = self.rnn.slot(batch.t, batch.b, batch.lengths.as_deref())?;
        let li = self.loss_plan(slot, max_u)?;
        match &batch.tokens {
            Some(ids) => self.rnn.write_tokens(slot, ids)?,
            None => self.rnn.input(slot)?.write(&batch.x)?,
        }
        self.losses[li].1.write(batch, o, scale, rows)?;
        Ok((slot, li))
    }

    /// The index of the loss plan for `slot` and CTC targets of up to `max_u` labels,
    /// built on first use; plans of slots the model dropped go with them.
    fn loss_plan(&mut self, slot: Slot, max_u: usize) -> Result<usize> {
        let fits = |(s, p): &(Slot, LossPlan)| *s == slot && p.fits(max_u);
        if let Some(i) = self.losses.iter().position(fits) {
            return Ok(i);
        }
        let plan = LossPlan::new(
            self.rnn.gpu(),
            self.config.loss,
            [slot.t, slot.b, self.rnn.config().output_size],
            [self.rnn.output(slot)?, self.rnn.output_grad(slot)?],
            max_u,
            (self.stats.buffer(), self.update.parts),
        )?;
        let rnn = &self.rnn;
        self.losses.retain(|(s, _)| *s != slot && rnn.is_live(*s));
        self.losses.push((slot, plan));
        Ok(self.losses.len() - 1)
    }

    /// Records the initial state, forward and loss of `slot` with loss plan `li`.
    pub(super) fn record_forward_loss(
        &mut self,
        slot: Slot,
        li: usize,
        init: Option<&State<GpuTensor>>,
        rec: &mut Recorder<'_>,
    ) -> Result<()> {
        self.rnn.record_forward(slot, rec, init)?;
        rec.plans(&[&self.losses[li].1.plan])
    }

    /// A step's stats from its readback: the gradient norm's partial sums, then the loss.
    pub(super) fn step_stats(&self, stats: &[f32], lr: f32) -> StepStats {
        let parts = self.update.parts;
        let norm = stats[..parts].iter().sum::<f32>().sqrt();
        let loss = stats[parts];
        StepStats {
            loss,
            grad_norm: norm,
            skipped: !(norm.is_finite() && loss.is_finite()),
            step: self.step,
            lr,
        }
    }

    /// The state a step of `b` rows starts from: the carried one for stateful training
    /// (dropped if it was carried for another batch size), else zeros (None).
    pub(super) fn start_state(&mut self, b: usize) -> Option<State<GpuTensor>> {
        let shape = self.rnn.config().state_shape(b);
        if self
            .carried_state
            .as_ref()
            .is_none_or(|c| c.h.shape() != shape)
        {
            self.carried_state = None;
        }
        self.carried_state.clone().filter(|_| self.config.stateful)
    }

    /// Records the copy of the step's final state into the carried state (of `b` rows,
    /// allocated at the first step or after a reset).
    pub(super) fn record_carried_state(
        &mut self,
        slot: Slot,
        rec: &mut Recorder<'_>,
    ) -> Result<()> {
        let state = match self.carried_state.take() {
            Some(c) => c,
            None => self.rnn.zero_state(slot.b)?,
        };
        self.rnn.record_final_state(slot, rec, &state)?;
        self.carried_state = Some(state);
        Ok(())
    }

    /// Submits `rec` after copying the stats into the readback buffer.
    pub(super) fn submit_with_stats(&self, mut rec: Recorder<'_>) -> Result<usize> {
        rec.encoder().copy_buffer_to_buffer(
            self.stats.buffer(),
            0,
            &self.readback.0,
            0,
            self.stats.bytes(),
        );
        rec.submit()
    }

    /// The stats of the last submit (native only: it blocks).
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn read_stats(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.read_stats_async())
    }

    /// Async form of [`Trainer::read_stats`].
    async fn read_stats_async(&self) -> Result<Vec<f32>> {
        self.rnn.gpu().read_mapped(&self.readback.0).await
    }

    /// Records and submits one training step; returns the step's learning rate (the
    /// stats wait in the readback buffer).
    fn record_step(&mut self, batch: &Batch, profiler: Option<&mut Profiler>) -> Result<f32> {
        let (slot, li) = self.prepare(batch, None)?;
        let init = self.start_state(batch.b);
        self.rnn.set_dropout(Some(DropoutKey {
            seed: self.config.dropout_seed,
            step: self.step,
        }));
        let recording = web_time::Instant::now();
        let gpu = self.rnn.gpu().clone();
        let mut rec = match profiler {
            Some(p) => Recorder::profiled(&gpu, "train step", p),
            None => Recorder::new(&gpu, "train step"),
        };
        self.record_forward_loss(slot, li, init.as_ref(), &mut rec)?;
        self.rnn.record_backward(slot, &mut rec, None)?;
        rec.plans(&[&self.update.plan])?;
        self.record_carried_state(slot, &mut rec)?;
        self.step += 1;
        let lr = self.update.write_hyper(&gpu, &self.config, self.step);
        let dispatches = self.submit_with_stats(rec)?;
        self.last_host_us = recording.elapsed().as_secs_f64() * 1e6;
        self.last = CallStats {
            dispatches,
            submits: 1,
        };
        Ok(lr)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn run_step(&mut self, batch: &Batch, profiler: Option<&mut Profiler>) -> Result<StepStats> {
        let lr = self.record_step(batch, profiler)?;
        let stats = self.read_stats()?;
        Ok(self.step_stats(&stats, lr))
    }

    /// Async form of [`Train::step`], the one the browser uses: the step's GPU errors come
    /// from awaited error scopes and its stats from an awaited readback. Single-process
    /// only (a trainer with a communicator steps through [`Train::step`]).
    pub async fn step_async(&mut self, batch: &Batch) -> Result<StepStats> {
        if self.dist.is_some() {
            return Err(crate::error::Error::IncompatibleArgs(
                "a data-parallel trainer steps through Train::step, not step_async".into(),
            ));
        }
        let gpu = self.rnn.gpu().clone();
        let lr = gpu
            .scoped_async("a training step", || self.record_step(batch, None))
            .await??;
        let stats = self.read_stats_async().await?;
        Ok(self.step_stats(&stats, lr))
    }

    /// Async form of [`Train::evaluate`].
    pub async fn evaluate_async(&mut self, batch: &Batch) -> Result<f32> {
        let gpu = self.rnn.gpu().clone();
        gpu.scoped_async("an evaluation", || self.record_evaluation(batch))
            .await??;
        Ok(self.read_stats_async().await?[self.update.parts])
    }

    fn record_evaluation(&mut self, batch: &Batch) -> Result<()> {
        let (slot, li) = self.prepare(batch, None)?;
        self.rnn.set_dropout(None);
        let mut rec = Recorder::new(self.rnn.gpu(), "evaluation");
        self.record_forward_loss(slot, li, None, &mut rec)?;
        self.submit_with_stats(rec).map(|_| ())
    }

    /// Async form of [`Train::params`].
    pub async fn params_async(&self) -> Result<Params<Vec<f32>>> {
        self.rnn.params_to_host_async().await
    }

    /// Async form of [`Train::optim_state`].
    pub async fn optim_state_async(&self) -> Result<super::Moments> {
        Ok((
            self.m.download_async().await?,
            self.v.download_async().await?,
        ))
    }

    /// Async form of [`Train::carried_state`] (single-process).
    pub async fn carried_state_async(&self) -> Result<Option<CarriedState>> {
        match &self.carried_state {
            Some(c) => Ok(Some((c.h.shape()[1], c.download_async().await?))),
            None => Ok(None),
        }
    }

    /// Steps taken so far (also [`Train::steps`]).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Forgets the carried state (also [`Train::reset_state`]).
    pub fn reset_state(&mut self) {
        self.carried_state = None;
    }

    /// Puts back optimizer moments, step count and carried state, as [`Train::restore`]
    /// (which calls this); it does not block, so the browser uses it directly.
    pub fn restore_state(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carried_state: Option<(usize, &State<Vec<f32>>)>,
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
        self.carried_state = match carried_state {
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

    /// Runs one training step (as [`Train::step`]) with every dispatch in a timed pass of
    /// its own, and returns the GPU milliseconds of each part of the step. Needs an
    /// adapter with timestamp queries; the extra passes make the step slower than usual.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_step(&mut self, batch: &Batch) -> Result<Vec<(&'static str, f64)>> {
        let mut profiler = Profiler::new(self.rnn.gpu(), Profiler::MAX_DISPATCHES)?;
        self.run_step(batch, Some(&mut profiler))?;
        pollster::block_on(profiler.read(self.rnn.gpu()))
    }
}

/// The blocking forms (native only); the browser uses the async ones above.
#[cfg(not(target_arch = "wasm32"))]
impl Train for Trainer {
    fn step_times(&self) -> Option<super::StepTimes> {
        self.last_step_times()
    }

    fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        if self.dist.is_some() {
            return self.run_step_dist(batch);
        }
        self.run_step(batch, None)
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<f32> {
        self.record_evaluation(batch)?;
        Ok(self.read_stats()?[self.update.parts])
    }

    fn params(&self) -> Result<Params<Vec<f32>>> {
        self.rnn.params_to_host()
    }

    fn reset_state(&mut self) {
        Trainer::reset_state(self)
    }

    fn steps(&self) -> u64 {
        Trainer::steps(self)
    }

    fn rnn_config(&self) -> &crate::model::RnnConfig {
        self.rnn.config()
    }

    fn train_config(&self) -> &TrainConfig {
        &self.config
    }

    fn optim_state(&self) -> Result<super::Moments> {
        pollster::block_on(self.optim_state_async())
    }

    fn carried_state(&self) -> Result<Option<CarriedState>> {
        if let Some(d) = self.dist.as_ref().filter(|d| d.synced) {
            let per_row = self.rnn.config().cells() * self.rnn.config().hidden_size;
            return Ok(self
                .gather_carried_state(d.comm.as_ref())?
                .map(|s| (s.h.len() / per_row, s)));
        }
        self.carried_state
            .as_ref()
            .map(|c| Ok((c.h.shape()[1], c.try_map(GpuTensor::download)?)))
            .transpose()
    }

    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carried_state: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()> {
        self.restore_state(m, v, step, carried_state)
    }
}
