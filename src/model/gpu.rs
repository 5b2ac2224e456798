//! The model on the GPU. Forward and backward each record one command encoder and make one
//! submit; the dispatches come from the plans of a [`Slot`], built once per (T, B) and
//! replayed. The recording API ([`Rnn::slot`], [`Rnn::record_forward`],
//! [`Rnn::record_backward`]) records the same into a caller's [`Recorder`], next to work of
//! its own: a loss and an optimizer step in one submit, as the trainer does.

pub use super::plan::RecurrencePath;
use super::plan::Workspace;
use super::{Params, RnnConfig, State};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, Recorder};
use crate::shapes::{check_lengths, check_shape};

/// How many (T, B) shapes keep their buffers and plans alive at once.
const MAX_WORKSPACES: usize = 8;

/// What a forward reads: features x (T, B, I), or token ids (T, B) for a model with an
/// embedding.
#[derive(Clone, Copy)]
enum Input<'a> {
    Features(&'a GpuTensor),
    Tokens(&'a [u32], [usize; 2]),
}

/// What `forward` returns. Fresh tensors: later calls do not overwrite them.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// (T, B, O)
    pub y: GpuTensor,
    /// Each cell's state after its last step (PyTorch's h_n, and c_n for LSTM), (L·D, B, H).
    pub state: State<GpuTensor>,
}

/// What `backward` returns. Fresh tensors: later calls do not overwrite them.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// dL/d(parameter), each with its parameter's shape.
    pub params: Params<GpuTensor>,
    /// (T, B, I): dL/dx, or dL/d(embedded x) for a model with an embedding.
    pub dx: GpuTensor,
    /// dL/dh0 (and dL/dc0), (L·D, B, H).
    pub d_init: State<GpuTensor>,
}

/// GPU work done by the last `forward` or `backward` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallStats {
    pub dispatches: usize,
    pub submits: usize,
}

/// A (T, B) shape's buffers and dispatch plans inside a model ([`Rnn::slot`]), for
/// recording its forward and backward into one's own command encoder. The model keeps the
/// slots of its last few shapes; a slot of an evicted shape is refused with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    id: u64,
    /// T, the sequence length.
    pub t: usize,
    /// B, the batch size.
    pub b: usize,
    /// Whether batches carry per-row lengths.
    pub variable_length: bool,
}

impl Slot {
    fn shape(&self) -> (usize, usize, bool) {
        (self.t, self.b, self.variable_length)
    }
}

/// A recurrent network (Elman, LSTM or GRU cells) with a linear head whose parameters
/// live on the GPU.
pub struct Rnn {
    gpu: Gpu,
    config: RnnConfig,
    /// Views of `param_buffers`, and of `grad_buffers` (one buffer each, usually).
    params: Params<GpuTensor>,
    grads: Params<GpuTensor>,
    param_buffers: Vec<GpuTensor>,
    grad_buffers: Vec<GpuTensor>,
    /// The slots' workspaces, oldest first.
    workspaces: Vec<(Slot, Workspace)>,
    next_slot: u64,
    /// The slot whose forward state [`Rnn::backward`] would use.
    last_forward: Option<Slot>,
    stats: CallStats,
    pinned_path: Option<RecurrencePath>,
    /// The dropout key the slots' plans read ([`Rnn::set_dropout`]): eight u32 words.
    dropout_key: GpuTensor,
}

impl std::fmt::Debug for Rnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnn").field("config", &self.config).finish()
    }
}

impl Params<GpuTensor> {
    /// Zeroed tensors shaped like `config`'s parameters, packed into as few buffers as the
    /// device's binding limit allows (usually one): returns each buffer whole, as a flat
    /// tensor, and a view per parameter. Optimizer moments are laid out so, like the
    /// parameters, so that one dispatch updates them all.
    pub fn packed(
        gpu: &Gpu,
        config: &RnnConfig,
        what: &'static str,
    ) -> Result<(Vec<GpuTensor>, Params<GpuTensor>)> {
        let shapes = config.param_shapes();
        let list: Vec<&[usize]> = shapes.tensors().into_iter().map(Vec::as_slice).collect();
        let (whole, parts) = GpuTensor::packed(gpu, &list, what)?;
        let mut parts = parts.into_iter();
        let views = shapes.map(|_| parts.next().expect("one view per shape"));
        Ok((whole, views))
    }
}

impl Rnn {
    /// A model with parameters initialised from `seed` (see [`RnnConfig::init_params`]).
    pub fn new(gpu: &Gpu, config: RnnConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        // Refuse what the device cannot hold before drawing the parameters on the host.
        for s in config.param_shapes().tensors() {
            crate::gpu::check_fits(gpu, "parameter", s)?;
        }
        let params = config.init_params(seed);
        Self::from_params(gpu, config, &params)
    }

    /// A model with the given host parameters.
    pub fn from_params(gpu: &Gpu, config: RnnConfig, params: &Params<Vec<f32>>) -> Result<Self> {
        config.validate()?;
        params.check(&config)?;
        let (grad_buffers, grads) = Params::packed(gpu, &config, "gradients")?;
        let (param_buffers, tensors) = Params::packed(gpu, &config, "parameters")?;
        for (t, v) in tensors.tensors().into_iter().zip(params.tensors()) {
            t.write(v)?;
        }
        Ok(Rnn {
            gpu: gpu.clone(),
            config,
            params: tensors,
            grads,
            param_buffers,
            grad_buffers,
            workspaces: Vec::new(),
            next_slot: 0,
            last_forward: None,
            stats: CallStats::default(),
            pinned_path: None,
            dropout_key: GpuTensor::empty(gpu, &[8], "dropout key")?,
        })
    }

    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The parameters on the device.
    pub fn params(&self) -> &Params<GpuTensor> {
        &self.params
    }

    /// The gradients [`Rnn::record_backward`] writes (each call overwrites them).
    pub fn grads(&self) -> &Params<GpuTensor> {
        &self.grads
    }

    /// The buffers the parameters live in, whole, as flat tensors in [`Params::tensors`]
    /// order (one unless they exceed the device's binding limit): for an optimizer that
    /// updates every parameter in one dispatch.
    pub fn param_buffers(&self) -> &[GpuTensor] {
        &self.param_buffers
    }

    /// The gradients' buffers, laid out like [`Rnn::param_buffers`].
    pub fn grad_buffers(&self) -> &[GpuTensor] {
        &self.grad_buffers
    }

    /// Downloads the parameters (native only: it blocks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn params_to_host(&self) -> Result<Params<Vec<f32>>> {
        pollster::block_on(self.params_to_host_async())
    }

    /// Async form of [`Rnn::params_to_host`].
    pub async fn params_to_host_async(&self) -> Result<Params<Vec<f32>>> {
        self.params.download_async().await
    }

    /// Replaces the parameters. A pending forward state is dropped (backward would mix
    /// old activations with new weights).
    pub fn set_params(&mut self, params: &Params<Vec<f32>>) -> Result<()> {
        params.check(&self.config)?;
        for (t, v) in self.params.tensors().into_iter().zip(params.tensors()) {
            t.write(v)?;
        }
        self.last_forward = None;
        Ok(())
    }

    /// Pins how the recurrence runs for every shape (`None`: chosen per shape and adapter,
    /// see [`RecurrencePath::choose`]). Drops every slot and any pending forward.
    pub fn set_path(&mut self, path: Option<RecurrencePath>) {
        self.pinned_path = path;
        self.workspaces.clear();
        self.last_forward = None;
    }

    /// How the recurrence of a (T, B) sequence runs (builds that shape's slot).
    pub fn path(&mut self, t: usize, b: usize) -> Result<RecurrencePath> {
        let slot = self.slot(t, b, None)?;
        Ok(self.workspace(slot)?.path)
    }

    /// Dispatches and submits made by the last `forward` or `backward`.
    pub fn last_call_stats(&self) -> CallStats {
        self.stats
    }

    /// A zero-filled state for batch `b`: h and, for LSTM, c, each (L·D, B, H).
    pub fn zero_state(&self, b: usize) -> Result<State<GpuTensor>> {
        self.fresh_state(b, "state")
    }

    fn fresh_state(&self, b: usize, what: &'static str) -> Result<State<GpuTensor>> {
        let shape = self.config.state_shape(b);
        Ok(State {
            h: GpuTensor::empty(&self.gpu, &shape, what)?,
            c: if self.config.cell.has_c() {
                Some(GpuTensor::empty(&self.gpu, &shape, what)?)
            } else {
                None
            },
        })
    }

    /// Checks a state: h (and for LSTM c) each (L·D, B, H), or (B, H) for a one-cell
    /// model; c present exactly for LSTM.
    fn check_state(&self, what: &'static str, s: &State<GpuTensor>, b: usize) -> Result<()> {
        let full = self.config.state_shape(b);
        for t in s.tensors() {
            let ok = t.shape() == full || (self.config.cells() == 1 && t.shape() == [b, full[2]]);
            if !ok {
                return Err(Error::Shape {
                    what,
                    expected: format!("{full:?} = (layers × directions, batch, hidden)"),
                    got: t.shape().to_vec(),
                });
            }
            self.check_device(what, t)?;
        }
        self.config.check_state_parts(what, s)
    }

    /// Runs the sequence: x (T, B, I) time-major, `init` the initial state (h0 and, for
    /// LSTM, c0; each (L·D, B, H)) or zeros. Keeps on the GPU what [`Rnn::backward`] needs.
    /// A model with an embedding takes token ids instead ([`Rnn::forward_tokens`]).
    pub fn forward(
        &mut self,
        x: &GpuTensor,
        init: Option<&State<GpuTensor>>,
    ) -> Result<ForwardOutput> {
        self.forward_impl(Input::Features(x), init, None)
    }

    /// [`Rnn::forward`] (with per-row `lengths`, [`Rnn::forward_with_lengths`]) of a model
    /// with an embedding: `ids` (T, B) time-major token ids, each below the vocabulary V
    /// (checked on the host first: an id ≥ V is [`Error::BadToken`]). The gradient of
    /// the embedding table comes with [`Rnn::backward`]; its `dx` is dL/d(embedded x).
    pub fn forward_tokens(
        &mut self,
        ids: &[u32],
        [t, b]: [usize; 2],
        init: Option<&State<GpuTensor>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        self.forward_impl(Input::Tokens(ids, [t, b]), init, lengths)
    }

    /// Async form of [`Rnn::forward_tokens`]: GPU errors come from awaited error scopes.
    pub async fn forward_tokens_async(
        &mut self,
        ids: &[u32],
        tb: [usize; 2],
        init: Option<&State<GpuTensor>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let gpu = self.gpu.clone();
        gpu.scoped_async("rnn forward", || {
            self.forward_impl(Input::Tokens(ids, tb), init, lengths)
        })
        .await?
    }

    /// [`Rnn::forward`] for a right-padded batch whose row b holds `lengths[b]` steps
    /// (each in 1..=T), with PyTorch's packed-sequence semantics: past a row's end its
    /// state is carried unchanged, so h_n (c_n) is its state at its own last step and the
    /// reverse direction starts there; y is zero there, and [`Rnn::backward`] ignores dy
    /// there.
    pub fn forward_with_lengths(
        &mut self,
        x: &GpuTensor,
        init: Option<&State<GpuTensor>>,
        lengths: &[usize],
    ) -> Result<ForwardOutput> {
        self.forward_impl(Input::Features(x), init, Some(lengths))
    }

    /// Async form of [`Rnn::forward_with_lengths`] (and, with `lengths` None, of
    /// [`Rnn::forward`]): GPU errors come from awaited error scopes, the browser's way.
    pub async fn forward_async(
        &mut self,
        x: &GpuTensor,
        init: Option<&State<GpuTensor>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let gpu = self.gpu.clone();
        gpu.scoped_async("rnn forward", || {
            self.forward_impl(Input::Features(x), init, lengths)
        })
        .await?
    }

    /// Async form of [`Rnn::backward`].
    pub async fn backward_async(
        &mut self,
        dy: &GpuTensor,
        d_final: Option<&State<GpuTensor>>,
    ) -> Result<Gradients> {
        let gpu = self.gpu.clone();
        gpu.scoped_async("rnn backward", || self.backward(dy, d_final))
            .await?
    }

    /// Whether the next recorded forward and backward apply dropout masks (`Some`: a
    /// training step, with its key) or pass values through (`None`: evaluation and
    /// inference), for a model whose config has dropout. [`Rnn::forward`] and
    /// [`Rnn::forward_with_lengths`] set `None` themselves; the trainer sets its step's key.
    /// The key reaches the GPU with the next submit, ahead of its commands.
    pub fn set_dropout(&self, key: Option<super::DropoutKey>) {
        self.write_dropout_key(super::dropout::key_words(key, None));
    }

    /// [`Rnn::set_dropout`] for rows `rows.start..` of a batch of `whole` rows (a
    /// data-parallel rank's share): the masks are the whole batch's for those rows.
    pub fn set_dropout_rows(
        &self,
        key: super::DropoutKey,
        rows: std::ops::Range<usize>,
        whole: usize,
    ) -> Result<()> {
        let row0 = crate::gpu::to_u32("batch rows", rows.start)?;
        let whole = crate::gpu::to_u32("batch rows", whole)?;
        self.write_dropout_key(super::dropout::key_words(Some(key), Some((row0, whole))));
        Ok(())
    }

    fn write_dropout_key(&self, words: [u32; 8]) {
        // Without dropout no plan reads the key: no write per step.
        if self.config.dropout == 0.0 && self.config.head_dropout == 0.0 {
            return;
        }
        let t = &self.dropout_key;
        self.gpu
            .queue()
            .write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(&words));
    }

    fn forward_impl(
        &mut self,
        input: Input<'_>,
        init: Option<&State<GpuTensor>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        self.set_dropout(None);
        let (t, b) = match input {
            Input::Features(x) => {
                self.check_device("x", x)?;
                self.config.check_input(x.shape())?
            }
            Input::Tokens(ids, [t, b]) => self.config.check_tokens(ids, t, b)?,
        };
        let slot = self.slot(t, b, lengths)?;
        if let Input::Tokens(ids, _) = input {
            self.write_tokens(slot, ids)?;
        }
        let gpu = self.gpu.clone();
        let out = ForwardOutput {
            y: GpuTensor::empty(&gpu, self.output(slot)?.shape(), "y")?,
            state: self.fresh_state(b, "final state")?,
        };
        let mut rec = Recorder::new(&gpu, "rnn forward");
        if let Input::Features(x) = input {
            x.record_copy_to(rec.encoder(), self.input(slot)?);
        }
        self.record_forward(slot, &mut rec, init)?;
        self.output(slot)?.record_copy_to(rec.encoder(), &out.y);
        self.record_final_state(slot, &mut rec, &out.state)?;
        let dispatches = rec.submit()?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        self.last_forward = Some(slot);
        Ok(out)
    }

    /// Backpropagates dL/dy (T, B, O), plus dL/dh_n (and dL/dc_n) if given, through the
    /// last forward. Returns the gradients of all parameters, dL/dx and dL/d(initial state).
    pub fn backward(
        &mut self,
        dy: &GpuTensor,
        d_final: Option<&State<GpuTensor>>,
    ) -> Result<Gradients> {
        let o = self.config.output_size;
        let slot = self.last_forward.ok_or(Error::NoForward(
            "call forward (after any set_params) before backward",
        ))?;
        let (t, b) = (slot.t, slot.b);
        check_shape("dy", dy.shape(), &[t, b, o])?;
        self.check_device("dy", dy)?;
        if let Some(s) = d_final {
            self.check_state("gradient of the final state", s, b)?;
        }
        let gpu = self.gpu.clone();
        let shapes = self.config.param_shapes();
        let out = Gradients {
            params: shapes.try_map(|s| GpuTensor::empty(&gpu, s, "gradient"))?,
            dx: GpuTensor::empty(&gpu, &[t, b, self.config.input_size], "dx")?,
            d_init: self.fresh_state(b, "initial state gradient")?,
        };
        // The forward's slot holds its state; if another shape evicted it since, say so
        // rather than run on a fresh, empty one.
        if !self.is_live(slot) {
            return Err(Error::NoForward(
                "the forward's state was dropped (more shapes were used since, or path/set_path \
                 rebuilt the workspaces); call forward again",
            ));
        }
        let mut rec = Recorder::new(&gpu, "rnn backward");
        let dy_in = self.output_grad(slot)?;
        rec.encoder()
            .copy_buffer_to_buffer(dy.buffer(), 0, dy_in.buffer(), 0, dy.bytes());
        self.record_backward(slot, &mut rec, d_final)?;
        let pairs = self
            .grads
            .tensors()
            .into_iter()
            .zip(out.params.tensors())
            .chain([(self.input_grad(slot)?, &out.dx)]);
        for (src, dst) in pairs {
            src.record_copy_to(rec.encoder(), dst);
        }
        self.workspace(slot)?
            .record_initial_state_grad(rec.encoder(), &out.d_init);
        let dispatches = rec.submit()?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        // The slot keeps its forward state: backward may run again with another dy.
        self.last_forward = Some(slot);
        Ok(out)
    }

    fn check_device(&self, what: &'static str, t: &GpuTensor) -> Result<()> {
        if self.gpu.same_device(t.gpu()) {
            Ok(())
        } else {
            Err(Error::WrongDevice(what))
        }
    }

    /// The slot for sequences of (T, B), with per-row `lengths` (checked, then uploaded)
    /// for a variable-length batch; built on first use. The model keeps the slots of its
    /// last eight shapes.
    pub fn slot(&mut self, t: usize, b: usize, lengths: Option<&[usize]>) -> Result<Slot> {
        if let Some(l) = lengths {
            check_lengths(l, t, b)?;
            if t > 1 << 24 {
                return Err(Error::TooLarge {
                    what: "sequence length T with per-row lengths",
                    value: t as u64,
                    limit: 1 << 24,
                    why: "lengths reach the GPU as f32, exact up to 2^24",
                });
            }
        }
        let shape = (t, b, lengths.is_some());
        let slot = match self.workspaces.iter().find(|(s, _)| s.shape() == shape) {
            Some((s, _)) => *s,
            None => self.build_slot(shape)?,
        };
        if let (Some(l), Some(buf)) = (lengths, &self.workspace(slot)?.lengths) {
            let l: Vec<f32> = l.iter().map(|&v| v as f32).collect();
            buf.write(&l)?;
        }
        Ok(slot)
    }

    fn build_slot(&mut self, (t, b, variable_length): (usize, usize, bool)) -> Result<Slot> {
        let ws = Workspace::new(
            &self.gpu,
            &self.config,
            &self.params,
            &self.grads,
            &self.dropout_key,
            (t, b, variable_length),
            self.pinned_path,
        )?;
        if self.workspaces.len() >= MAX_WORKSPACES {
            let (evicted, _) = self.workspaces.remove(0);
            if self.last_forward == Some(evicted) {
                self.last_forward = None;
            }
        }
        let slot = Slot {
            id: self.next_slot,
            t,
            b,
            variable_length,
        };
        self.next_slot += 1;
        self.workspaces.push((slot, ws));
        Ok(slot)
    }

    /// Whether `slot` is still one of this model's (not evicted or dropped).
    pub fn is_live(&self, slot: Slot) -> bool {
        self.workspaces.iter().any(|(s, _)| *s == slot)
    }

    fn workspace(&self, slot: Slot) -> Result<&Workspace> {
        self.workspaces
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, w)| w)
            .ok_or(Error::NoForward(
                "this slot's shape was dropped (more shapes were used since, or set_path \
                 rebuilt the slots); ask Rnn::slot for it again",
            ))
    }

    /// Writes the token ids (T, B) the slot's next forward embeds, for a model with an
    /// embedding (checked against the vocabulary first): its [`Rnn::input`] then.
    pub fn write_tokens(&self, slot: Slot, ids: &[u32]) -> Result<()> {
        self.workspace(slot)?.write_tokens(&self.config, ids)
    }

    /// The slot's input x (T, B, I), which its forward reads: write it (or copy into it)
    /// before the forward runs. A model with an embedding writes it itself from the ids of
    /// [`Rnn::write_tokens`].
    pub fn input(&self, slot: Slot) -> Result<&GpuTensor> {
        Ok(&self.workspace(slot)?.x)
    }

    /// The slot's output y (T, B, O), which its forward writes.
    pub fn output(&self, slot: Slot) -> Result<&GpuTensor> {
        Ok(&self.workspace(slot)?.y)
    }

    /// dL/dy (T, B, O), which the slot's backward reads: a loss writes it.
    pub fn output_grad(&self, slot: Slot) -> Result<&GpuTensor> {
        Ok(&self.workspace(slot)?.dy)
    }

    /// dL/dx (T, B, I), which the slot's backward writes.
    pub fn input_grad(&self, slot: Slot) -> Result<&GpuTensor> {
        Ok(&self.workspace(slot)?.dx)
    }

    /// Records the slot's forward (its input already written) from `init` or zeros. Its
    /// state stays in the slot for [`Rnn::record_backward`]; [`Rnn::backward`] needs a
    /// [`Rnn::forward`] of its own afterwards.
    pub fn record_forward(
        &mut self,
        slot: Slot,
        rec: &mut Recorder<'_>,
        init: Option<&State<GpuTensor>>,
    ) -> Result<()> {
        if let Some(s) = init {
            self.check_state("initial state", s, slot.b)?;
        }
        self.last_forward = None;
        let ws = self.workspace(slot)?;
        ws.record_initial_state(&self.config, rec.encoder(), init);
        rec.plans(&[&ws.forward])
    }

    /// Records the slot's backward through its last recorded forward, from dL/dy in
    /// [`Rnn::output_grad`] and dL/d(final state) `d_final` or zeros: the gradients land
    /// in [`Rnn::grads`] (and [`Rnn::grad_buffers`]), dL/dx in [`Rnn::input_grad`].
    pub fn record_backward(
        &self,
        slot: Slot,
        rec: &mut Recorder<'_>,
        d_final: Option<&State<GpuTensor>>,
    ) -> Result<()> {
        if let Some(s) = d_final {
            self.check_state("gradient of the final state", s, slot.b)?;
        }
        let ws = self.workspace(slot)?;
        ws.record_final_state_grad(rec.encoder(), d_final);
        rec.plans(&[&ws.backward])
    }

    /// Records the copy of the slot's final state (h_n, and c_n for LSTM) into `dst`
    /// (each (L·D, B, H)).
    pub fn record_final_state(
        &self,
        slot: Slot,
        rec: &mut Recorder<'_>,
        dst: &State<GpuTensor>,
    ) -> Result<()> {
        self.check_state("final state", dst, slot.b)?;
        let ws = self.workspace(slot)?;
        ws.record_final_state(&self.config, rec.encoder(), dst);
        Ok(())
    }
}
