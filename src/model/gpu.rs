//! The model on the GPU. Forward and backward each record one command encoder and make one
//! submit; the dispatches come from the `Workspace` plans built once per (T, B) and
//! replayed. The trainer records the same through [`Rnn::record_forward`] and
//! [`Rnn::record_backward`].

pub use super::plan::RecurrencePath;
use super::plan::Workspace;
use super::{Params, RnnConfig, State};
use crate::error::{Error, Result};
use crate::gpu::{record_plans, Gpu, GpuTensor, Profiler};
use crate::shapes::{check_lengths, check_shape};

/// How many (T, B) shapes keep their buffers and plans alive at once.
const MAX_WORKSPACES: usize = 8;

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
    /// (T, B, I)
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

/// Which workspace a forward used: (T, B, variable-length).
type WorkspaceKey = (usize, usize, bool);

/// A recurrent network (Elman, LSTM or GRU cells) with a linear head whose parameters
/// live on the GPU.
pub struct Rnn {
    gpu: Gpu,
    config: RnnConfig,
    /// Views of `params_flat`, and of `grads_flat` (one buffer each).
    params: Params<GpuTensor>,
    grads: Params<GpuTensor>,
    params_flat: Vec<GpuTensor>,
    grads_flat: Vec<GpuTensor>,
    workspaces: Vec<Workspace>,
    /// The workspace whose forward state backward would use.
    last_forward: Option<WorkspaceKey>,
    stats: CallStats,
    pinned_path: Option<RecurrencePath>,
}

impl std::fmt::Debug for Rnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnn").field("config", &self.config).finish()
    }
}

/// Zeroed buffers for tensors of `shapes`, as few as fit (usually one): (each buffer as a
/// flat tensor, a view per tensor).
pub(crate) fn packed(
    gpu: &Gpu,
    shapes: &Params<Vec<usize>>,
    what: &'static str,
) -> Result<(Vec<GpuTensor>, Params<GpuTensor>)> {
    let list: Vec<&[usize]> = shapes.tensors().into_iter().map(Vec::as_slice).collect();
    let (whole, parts) = GpuTensor::packed(gpu, &list, what)?;
    let mut parts = parts.into_iter();
    let views = shapes.map(|_| parts.next().expect("one view per shape"));
    Ok((whole, views))
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
        let shapes = config.param_shapes();
        let (grads_flat, grads) = packed(gpu, &shapes, "gradients")?;
        let (params_flat, tensors) = packed(gpu, &shapes, "parameters")?;
        for (t, v) in tensors.tensors().into_iter().zip(params.tensors()) {
            t.write(v)?;
        }
        Ok(Rnn {
            gpu: gpu.clone(),
            config,
            params: tensors,
            grads,
            params_flat,
            grads_flat,
            workspaces: Vec::new(),
            last_forward: None,
            stats: CallStats::default(),
            pinned_path: None,
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

    /// Downloads the parameters.
    pub fn params_to_host(&self) -> Result<Params<Vec<f32>>> {
        self.params.try_map(|t| t.download())
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
    /// see [`RecurrencePath::choose`]). Drops cached workspaces and any pending forward.
    pub fn set_path(&mut self, path: Option<RecurrencePath>) {
        self.pinned_path = path;
        self.workspaces.clear();
        self.last_forward = None;
    }

    /// How the recurrence of a (T, B) sequence runs (builds that shape's workspace).
    pub fn path(&mut self, t: usize, b: usize) -> Result<RecurrencePath> {
        let i = self.workspace((t, b, false))?;
        Ok(self.workspaces[i].path)
    }

    /// Dispatches and submits made by the last `forward` or `backward`.
    pub fn last_call_stats(&self) -> CallStats {
        self.stats
    }

    /// A state of zeros-shaped fresh tensors for batch `b`: h and, for LSTM, c.
    pub(crate) fn empty_state(&self, b: usize, what: &'static str) -> Result<State<GpuTensor>> {
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
    pub fn forward(
        &mut self,
        x: &GpuTensor,
        init: Option<&State<GpuTensor>>,
    ) -> Result<ForwardOutput> {
        self.forward_impl(x, init, None)
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
        self.forward_impl(x, init, Some(lengths))
    }

    fn forward_impl(
        &mut self,
        x: &GpuTensor,
        init: Option<&State<GpuTensor>>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let (t, b) = self.config.check_input(x.shape())?;
        self.check_device("x", x)?;
        if let Some(s) = init {
            self.check_state("initial state", s, b)?;
        }
        self.last_forward = None;
        let wi = self.prepare(t, b, lengths)?;
        let ws = &self.workspaces[wi];
        let gpu = self.gpu.clone();
        let out = ForwardOutput {
            y: GpuTensor::empty(&gpu, ws.y.shape(), "y")?,
            state: self.empty_state(b, "final state")?,
        };
        let mut enc = encoder(&gpu, "rnn forward");
        x.record_copy_to(&mut enc, &ws.x);
        self.record_forward(wi, &mut enc, init, None)?;
        ws.y.record_copy_to(&mut enc, &out.y);
        ws.record_final_state(&self.config, &mut enc, &out.state);
        let dispatches = ws.forward.dispatches();
        gpu.submit("rnn forward", enc)?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        self.last_forward = Some((t, b, lengths.is_some()));
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
        let key = self.last_forward.ok_or(Error::NoForward(
            "call forward (after any set_params) before backward",
        ))?;
        let (t, b, _) = key;
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
            d_init: self.empty_state(b, "initial state gradient")?,
        };
        // The forward's workspace holds its state; if another shape evicted it since,
        // say so rather than run on a fresh, empty one.
        let wi = self.find_workspace(key).ok_or(Error::NoForward(
            "the forward's state was dropped (more shapes were used since, or path/set_path \
             rebuilt the workspaces); call forward again",
        ))?;
        let ws = &self.workspaces[wi];
        let mut enc = encoder(&gpu, "rnn backward");
        enc.copy_buffer_to_buffer(dy.buffer(), 0, ws.dy.buffer(), 0, dy.bytes());
        self.record_backward(wi, &mut enc, d_final, None)?;
        let pairs = self
            .grads
            .tensors()
            .into_iter()
            .zip(out.params.tensors())
            .chain([(&ws.dx, &out.dx)]);
        for (src, dst) in pairs {
            src.record_copy_to(&mut enc, dst);
        }
        ws.record_initial_state_grad(&mut enc, &out.d_init);
        let dispatches = ws.backward.dispatches();
        gpu.submit("rnn backward", enc)?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        Ok(out)
    }

    fn check_device(&self, what: &'static str, t: &GpuTensor) -> Result<()> {
        if self.gpu.same_device(t.gpu()) {
            Ok(())
        } else {
            Err(Error::WrongDevice(what))
        }
    }

    /// The parameters' buffers as flat tensors, in [`Params::tensors`] order (one unless
    /// they exceed the device's binding limit).
    pub(crate) fn params_flat(&self) -> &[GpuTensor] {
        &self.params_flat
    }

    /// The gradients' buffers, laid out like [`Rnn::params_flat`].
    pub(crate) fn grads_flat(&self) -> &[GpuTensor] {
        &self.grads_flat
    }

    /// How many (T, B) workspaces are cached.
    pub(crate) fn workspace_count(&self) -> usize {
        self.workspaces.len()
    }

    pub(crate) fn ws(&self, index: usize) -> &Workspace {
        &self.workspaces[index]
    }

    /// The workspace for (T, B) and per-row `lengths` (checked, then uploaded), built on
    /// first use; returns its index.
    pub(crate) fn prepare(
        &mut self,
        t: usize,
        b: usize,
        lengths: Option<&[usize]>,
    ) -> Result<usize> {
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
        let wi = self.workspace((t, b, lengths.is_some()))?;
        if let (Some(l), Some(buf)) = (lengths, &self.workspaces[wi].lengths) {
            let l: Vec<f32> = l.iter().map(|&v| v as f32).collect();
            buf.write(&l)?;
        }
        Ok(wi)
    }

    /// Records the forward of workspace `wi` (its x already in place) from `init` or
    /// zeros, into `enc`; with a profiler, each dispatch in a timed pass.
    pub(crate) fn record_forward(
        &self,
        wi: usize,
        enc: &mut wgpu::CommandEncoder,
        init: Option<&State<GpuTensor>>,
        profiler: Option<&mut Profiler>,
    ) -> Result<()> {
        let ws = &self.workspaces[wi];
        ws.record_initial_state(&self.config, enc, init);
        record_plans(enc, &[&ws.forward], profiler)
    }

    /// Records the backward of workspace `wi` (its dy already in place) with dL/d(final
    /// state) `d_final` or zeros; the gradients land in [`Rnn::grads`].
    pub(crate) fn record_backward(
        &self,
        wi: usize,
        enc: &mut wgpu::CommandEncoder,
        d_final: Option<&State<GpuTensor>>,
        profiler: Option<&mut Profiler>,
    ) -> Result<()> {
        let ws = &self.workspaces[wi];
        ws.record_final_state_grad(enc, d_final);
        record_plans(enc, &[&ws.backward], profiler)
    }

    /// Marks the forward state as unusable for backward (the trainer's update changed
    /// the weights it was computed with).
    pub(crate) fn forget_forward(&mut self) {
        self.last_forward = None;
    }

    fn find_workspace(&self, key: WorkspaceKey) -> Option<usize> {
        self.workspaces
            .iter()
            .position(|w| (w.t, w.b, w.lengths.is_some()) == key)
    }

    /// Index of the workspace for `key`, built on first use.
    fn workspace(&mut self, key: WorkspaceKey) -> Result<usize> {
        if let Some(i) = self.find_workspace(key) {
            return Ok(i);
        }
        let ws = Workspace::new(
            &self.gpu,
            &self.config,
            &self.params,
            &self.grads,
            key,
            self.pinned_path,
        )?;
        if self.workspaces.len() >= MAX_WORKSPACES {
            let evicted = self.workspaces.remove(0);
            if self.last_forward == Some((evicted.t, evicted.b, evicted.lengths.is_some())) {
                self.last_forward = None;
            }
        }
        self.workspaces.push(ws);
        Ok(self.workspaces.len() - 1)
    }
}

fn encoder(gpu: &Gpu, label: &'static str) -> wgpu::CommandEncoder {
    gpu.device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
}
