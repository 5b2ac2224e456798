//! The RNN on the GPU. Forward and backward each record one command encoder and make one
//! submit; the dispatches come from `Plan`s built once per (T, B) and replayed.

use super::{check_shape, Activation, Params, RnnConfig};
use crate::error::{Error, Result};
use crate::gpu::{
    ColSumSpec, Epilogue, GemmSpec, Gpu, GpuTensor, Operand, Plan, PlanBuilder, RecurrenceSpec,
    MAX_SHARED_W,
};

/// How many (T, B) shapes keep their buffers and plans alive at once.
const MAX_WORKSPACES: usize = 4;

/// What `forward` returns. Fresh tensors: later calls do not overwrite them.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// (T, B, O)
    pub y: GpuTensor,
    /// (L·D, B, H), each cell's hidden state after its last step (PyTorch's h_n).
    pub h_last: GpuTensor,
}

/// What `backward` returns. Fresh tensors: later calls do not overwrite them.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// dL/d(parameter), each with its parameter's shape.
    pub params: Params<GpuTensor>,
    /// (T, B, I)
    pub dx: GpuTensor,
    /// (L·D, B, H)
    pub dh0: GpuTensor,
}

/// GPU work done by the last `forward` or `backward` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallStats {
    pub dispatches: usize,
    pub submits: usize,
}

/// How the sequential part of forward and backward runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecurrencePath {
    /// One dispatch per time step, each a batched matrix product over all rows.
    Stepwise,
    /// One dispatch for all T steps: each workgroup owns `rows_per_workgroup` batch rows
    /// and loops over time (shaders/recurrence.wgsl). With `shared_w`, W_hh is kept in
    /// workgroup memory where H·H ≤ 4096 (ignored for larger H).
    Persistent {
        rows_per_workgroup: usize,
        shared_w: bool,
    },
}

impl std::fmt::Display for RecurrencePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecurrencePath::Stepwise => write!(f, "stepwise"),
            RecurrencePath::Persistent {
                rows_per_workgroup,
                shared_w,
            } => {
                let w = if *shared_w { ", W_hh shared" } else { "" };
                write!(f, "persistent ({rows_per_workgroup} rows/workgroup{w})")
            }
        }
    }
}

impl RecurrencePath {
    /// The path for batch `b` and hidden size `h` on `gpu`; `WGPU_RNN_PATH=stepwise` or
    /// `persistent` overrides the choice (for benchmarking).
    pub fn choose(gpu: &Gpu, b: usize, h: usize) -> Self {
        let cpu = gpu.adapter().device_type == wgpu::DeviceType::Cpu;
        let rows_per_workgroup = rows_per_workgroup(gpu, b);
        // Workgroup memory is ordinary memory on a CPU adapter: the copy is pure cost.
        // (Whether the kernel fits the device at all is checked below.)
        let fits = h * h <= MAX_SHARED_W;
        let persistent = RecurrencePath::Persistent {
            rows_per_workgroup,
            shared_w: fits && !cpu,
        };
        if !persistent_fits(gpu) {
            return RecurrencePath::Stepwise;
        }
        match std::env::var("WGPU_RNN_PATH").as_deref() {
            Ok("stepwise") => return RecurrencePath::Stepwise,
            Ok("persistent") => return persistent,
            _ => {}
        }
        // Measured on lavapipe (BENCHMARKS.md): one workgroup per core wins while a step
        // is small; from H = 256 (H = 128 at B > 4) the stepwise products, spread over many
        // workgroups, win. On GPUs (not measured yet) only where W_hh fits in workgroup
        // memory, the case the persistent kernel is built for.
        let wins = if cpu {
            h <= 64 || (h <= 128 && b <= 4)
        } else {
            fits && b <= 64
        };
        if wins {
            persistent
        } else {
            RecurrencePath::Stepwise
        }
    }
}

/// Whether the persistent kernel can run: it declares 16 KiB of workgroup memory.
fn persistent_fits(gpu: &Gpu) -> bool {
    (MAX_SHARED_W * 4) as u32 <= gpu.limits().max_compute_workgroup_storage_size
}

/// Batch rows per workgroup of the persistent kernel: a software adapter runs one
/// workgroup per core at a time, so one slice per core; on a GPU small slices.
fn rows_per_workgroup(gpu: &Gpu, b: usize) -> usize {
    if gpu.adapter().device_type == wgpu::DeviceType::Cpu {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        b.div_ceil(cores)
    } else {
        b.min(4)
    }
}

/// Buffers and plans for one (T, B).
pub(crate) struct Workspace {
    pub t: usize,
    pub b: usize,
    /// (T, B, I), the input of the last forward.
    pub x: GpuTensor,
    /// Per cell, (T+1, B, H) states. A forward cell keeps h_0 at block 0 and h_t at block
    /// t, a reverse cell h_t at block t−1 and h_0 at block T; either way the outputs of
    /// times 1..T are T consecutive blocks. Those blocks first hold the input projection,
    /// which the recurrence replaces by the states in place.
    pub hs: Vec<GpuTensor>,
    /// (T, B, O)
    pub y: GpuTensor,
    /// (T, B, O), dL/dy of the last backward.
    pub dy: GpuTensor,
    /// Per cell, (T, B, H), block t−1 for time t: dL/d(output) (+ dL/dh_n), turned into
    /// dz in place by the recurrence.
    pub dz: Vec<GpuTensor>,
    /// (T, B, I)
    pub dx: GpuTensor,
    /// (L·D, B, H)
    pub dh0: GpuTensor,
    pub forward: Plan,
    pub backward: Plan,
    pub path: RecurrencePath,
    /// Variable-length batches: per-row lengths (B, as floats) and dL/dh_n for the
    /// forward cells (L·D, B, H), which the recurrence adds at each row's last step.
    pub masked: Option<(GpuTensor, GpuTensor)>,
}

/// Where a cell keeps things, in blocks of B·H values of its state buffer.
#[derive(Clone, Copy)]
struct CellLayout {
    reverse: bool,
    t: usize,
}

impl CellLayout {
    fn new(cfg: &RnnConfig, c: usize, t: usize) -> Self {
        CellLayout {
            reverse: cfg.bidirectional && c % 2 == 1,
            t,
        }
    }
    /// First block of the outputs (times 1..T).
    fn out(self) -> usize {
        if self.reverse {
            0
        } else {
            1
        }
    }
    /// First block of the states each time reads (h_prev of times 1..T).
    fn prev(self) -> usize {
        if self.reverse {
            1
        } else {
            0
        }
    }
    fn h0(self) -> usize {
        if self.reverse {
            self.t
        } else {
            0
        }
    }
    fn h_n(self) -> usize {
        if self.reverse {
            0
        } else {
            self.t
        }
    }
    /// Block of dz (block t−1 for time t) of the step that reads h_0.
    fn first_dz(self) -> usize {
        if self.reverse {
            self.t - 1
        } else {
            0
        }
    }
    /// Block of dz that dL/dh_n enters: the step that writes h_n.
    fn last_dz(self) -> usize {
        if self.reverse {
            0
        } else {
            self.t - 1
        }
    }
}

impl Workspace {
    fn layout(&self, cfg: &RnnConfig, c: usize) -> CellLayout {
        CellLayout::new(cfg, c, self.t)
    }

    /// Copies h0 ((L·D, B, H), or (B, H) for one cell) into each cell's initial block,
    /// or zeros it.
    pub fn record_h0(
        &self,
        cfg: &RnnConfig,
        enc: &mut wgpu::CommandEncoder,
        h0: Option<&GpuTensor>,
    ) {
        let block = (self.b * cfg.hidden_size * 4) as u64;
        for (c, hs) in self.hs.iter().enumerate() {
            let at = self.layout(cfg, c).h0() as u64 * block;
            match h0 {
                Some(h0) => {
                    enc.copy_buffer_to_buffer(h0.buffer(), c as u64 * block, hs.buffer(), at, block)
                }
                None => enc.clear_buffer(hs.buffer(), at, Some(block)),
            }
        }
    }

    /// Copies each cell's final state into `dst` (L·D, B, H).
    pub fn record_h_n(&self, cfg: &RnnConfig, enc: &mut wgpu::CommandEncoder, dst: &GpuTensor) {
        let block = (self.b * cfg.hidden_size * 4) as u64;
        for (c, hs) in self.hs.iter().enumerate() {
            let at = self.layout(cfg, c).h_n() as u64 * block;
            enc.copy_buffer_to_buffer(hs.buffer(), at, dst.buffer(), c as u64 * block, block);
        }
    }

    /// Zeros every dz and adds dL/dh_n ((L·D, B, H)) where each cell's last step is.
    pub fn record_dh_last(
        &self,
        cfg: &RnnConfig,
        enc: &mut wgpu::CommandEncoder,
        dh_last: Option<&GpuTensor>,
    ) {
        let block = (self.b * cfg.hidden_size * 4) as u64;
        if let Some((_, dh_n)) = &self.masked {
            // Forward cells take dL/dh_n at each row's own last step, in the kernel.
            match dh_last {
                Some(d) => enc.copy_buffer_to_buffer(d.buffer(), 0, dh_n.buffer(), 0, dh_n.bytes()),
                None => enc.clear_buffer(dh_n.buffer(), 0, None),
            }
        }
        for (c, dz) in self.dz.iter().enumerate() {
            enc.clear_buffer(dz.buffer(), 0, None);
            let lay = self.layout(cfg, c);
            if self.masked.is_some() && !lay.reverse {
                continue;
            }
            if let Some(d) = dh_last {
                let at = lay.last_dz() as u64 * block;
                enc.copy_buffer_to_buffer(d.buffer(), c as u64 * block, dz.buffer(), at, block);
            }
        }
    }
}

/// An Elman RNN with a linear head whose parameters live on the GPU.
pub struct Rnn {
    gpu: Gpu,
    config: RnnConfig,
    params: Params<GpuTensor>,
    grads: Params<GpuTensor>,
    workspaces: Vec<Workspace>,
    /// (T, B, variable-length) of the forward whose state backward would use.
    last_forward: Option<(usize, usize, bool)>,
    stats: CallStats,
    pinned_path: Option<RecurrencePath>,
}

impl std::fmt::Debug for Rnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnn").field("config", &self.config).finish()
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
        let shapes = config.param_shapes();
        let grads = shapes.try_map(|s| GpuTensor::empty(gpu, s, "gradient"))?;
        let tensors = shapes.try_map(|s| GpuTensor::empty(gpu, s, "parameter"))?;
        for (t, v) in tensors.tensors().into_iter().zip(params.tensors()) {
            t.write(v)?;
        }
        Ok(Rnn {
            gpu: gpu.clone(),
            config,
            params: tensors,
            grads,
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
        let i = self.workspace(t, b)?;
        Ok(self.workspaces[i].path)
    }

    /// Dispatches and submits made by the last `forward` or `backward`.
    pub fn last_call_stats(&self) -> CallStats {
        self.stats
    }

    /// Checks a state tensor: (L·D, B, H), or (B, H) for a one-cell model.
    fn check_state(&self, what: &'static str, s: &GpuTensor, b: usize) -> Result<()> {
        let full = self.config.state_shape(b);
        let ok = s.shape() == full || (self.config.cells() == 1 && s.shape() == [b, full[2]]);
        if !ok {
            return Err(Error::Shape {
                what,
                expected: format!("{full:?} = (layers × directions, batch, hidden)"),
                got: s.shape().to_vec(),
            });
        }
        self.check_device(what, s)
    }

    /// Runs the sequence: x (T, B, I) time-major, h0 (L·D, B, H) or zeros. Keeps on the
    /// GPU what [`Rnn::backward`] needs.
    pub fn forward(&mut self, x: &GpuTensor, h0: Option<&GpuTensor>) -> Result<ForwardOutput> {
        self.forward_impl(x, h0, None)
    }

    /// [`Rnn::forward`] for a right-padded batch whose row b holds `lengths[b]` steps
    /// (each in 1..=T), with PyTorch's packed-sequence semantics: past a row's end its
    /// state is carried unchanged, so h_n is its state at its own last step and the
    /// reverse direction starts there; y is zero there, and [`Rnn::backward`] ignores dy
    /// there. The lengths go to the GPU with the call; the recurrence runs in one dispatch
    /// per cell (the persistent path) whatever [`RecurrencePath`] says.
    pub fn forward_with_lengths(
        &mut self,
        x: &GpuTensor,
        h0: Option<&GpuTensor>,
        lengths: &[usize],
    ) -> Result<ForwardOutput> {
        self.forward_impl(x, h0, Some(lengths))
    }

    fn forward_impl(
        &mut self,
        x: &GpuTensor,
        h0: Option<&GpuTensor>,
        lengths: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let (t, b) = self.config.check_input(x.shape())?;
        self.check_device("x", x)?;
        if let Some(h0) = h0 {
            self.check_state("h0", h0, b)?;
        }
        if let Some(l) = lengths {
            crate::cpu::check_lengths(l, t, b)?;
            if t > 1 << 24 {
                return Err(Error::TooLarge {
                    what: "sequence length T with per-row lengths",
                    value: t as u64,
                    limit: 1 << 24,
                    why: "lengths reach the GPU as f32, exact up to 2^24",
                });
            }
        }
        self.last_forward = None;
        let ws = self.workspace_for(t, b, lengths.is_some())?;
        let ws = &self.workspaces[ws];
        if let (Some(l), Some((buf, _))) = (lengths, &ws.masked) {
            let l: Vec<f32> = l.iter().map(|&v| v as f32).collect();
            buf.write(&l)?;
        }
        let gpu = self.gpu.clone();
        let out = ForwardOutput {
            y: GpuTensor::empty(&gpu, ws.y.shape(), "y")?,
            h_last: GpuTensor::empty(&gpu, &self.config.state_shape(b), "h_n")?,
        };
        let mut enc = encoder(&gpu, "rnn forward");
        enc.copy_buffer_to_buffer(x.buffer(), 0, ws.x.buffer(), 0, x.bytes());
        ws.record_h0(&self.config, &mut enc, h0);
        record(&mut enc, &ws.forward);
        enc.copy_buffer_to_buffer(ws.y.buffer(), 0, out.y.buffer(), 0, ws.y.bytes());
        ws.record_h_n(&self.config, &mut enc, &out.h_last);
        let dispatches = ws.forward.dispatches();
        gpu.submit("rnn forward", enc)?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        self.last_forward = Some((t, b, lengths.is_some()));
        Ok(out)
    }

    /// Backpropagates dL/dy (T, B, O), plus dL/dh_n (L·D, B, H) if given, through the
    /// last forward. Returns the gradients of all parameters, dL/dx and dL/dh0.
    pub fn backward(&mut self, dy: &GpuTensor, dh_last: Option<&GpuTensor>) -> Result<Gradients> {
        let o = self.config.output_size;
        let (t, b, masked) = self.last_forward.ok_or(Error::NoForward(
            "call forward (after any set_params) before backward",
        ))?;
        check_shape("dy", dy.shape(), &[t, b, o])?;
        self.check_device("dy", dy)?;
        if let Some(d) = dh_last {
            self.check_state("dh_last", d, b)?;
        }
        let gpu = self.gpu.clone();
        let shapes = self.config.param_shapes();
        let out = Gradients {
            params: shapes.try_map(|s| GpuTensor::empty(&gpu, s, "gradient"))?,
            dx: GpuTensor::empty(&gpu, &[t, b, self.config.input_size], "dx")?,
            dh0: GpuTensor::empty(&gpu, &self.config.state_shape(b), "dh0")?,
        };
        // The forward's workspace holds its state; if another shape evicted it since,
        // say so rather than run on a fresh, empty one.
        let ws = self
            .workspaces
            .iter()
            .position(|w| w.t == t && w.b == b && w.masked.is_some() == masked)
            .ok_or(Error::NoForward(
                "the forward's state was dropped (more shapes were used since, or path/set_path \
                 rebuilt the workspaces); call forward again",
            ))?;
        let ws = &self.workspaces[ws];
        let mut enc = encoder(&gpu, "rnn backward");
        enc.copy_buffer_to_buffer(dy.buffer(), 0, ws.dy.buffer(), 0, dy.bytes());
        ws.record_dh_last(&self.config, &mut enc, dh_last);
        record(&mut enc, &ws.backward);
        let pairs = self
            .grads
            .tensors()
            .into_iter()
            .zip(out.params.tensors())
            .chain([(&ws.dx, &out.dx), (&ws.dh0, &out.dh0)]);
        for (src, dst) in pairs {
            enc.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.bytes());
        }
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

    pub(crate) fn grads(&self) -> &Params<GpuTensor> {
        &self.grads
    }

    pub(crate) fn ws(&self, index: usize) -> &Workspace {
        &self.workspaces[index]
    }

    /// Marks the state of workspace (T, B) as the one backward would use (the trainer
    /// records forward itself).
    pub(crate) fn set_last_forward(&mut self, tb: Option<(usize, usize)>) {
        self.last_forward = tb.map(|(t, b)| (t, b, false));
    }

    /// Index of the (full-length) workspace for (T, B), built on first use.
    pub(crate) fn workspace(&mut self, t: usize, b: usize) -> Result<usize> {
        self.workspace_for(t, b, false)
    }

    /// Index of the workspace for (T, B), variable-length or not, built on first use.
    fn workspace_for(&mut self, t: usize, b: usize, masked: bool) -> Result<usize> {
        let found = self
            .workspaces
            .iter()
            .position(|w| w.t == t && w.b == b && w.masked.is_some() == masked);
        let pos = match found {
            Some(p) => p,
            None => {
                let ws = Workspace::new(
                    &self.gpu,
                    &self.config,
                    &self.params,
                    &self.grads,
                    (t, b, masked),
                    self.pinned_path,
                )?;
                if self.workspaces.len() >= MAX_WORKSPACES {
                    self.workspaces.remove(0);
                }
                self.workspaces.push(ws);
                self.workspaces.len() - 1
            }
        };
        Ok(pos)
    }
}

fn encoder(gpu: &Gpu, label: &'static str) -> wgpu::CommandEncoder {
    gpu.device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
}

fn record(enc: &mut wgpu::CommandEncoder, plan: &Plan) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: None,
    });
    plan.record(&mut pass);
}

/// The column slice [d·H, (d+1)·H) of a row-major (rows, D·H) weight, as the B operand
/// (K = H, N = rows) of a product with it transposed: B(p, j) = W[j, d·H + p].
fn slice_t(buf: &wgpu::Buffer, d: usize, h: usize, width: usize) -> Operand<'_> {
    Operand {
        buf,
        off: d * h,
        rs: 1,
        cs: width,
    }
}

/// The same slice untransposed, as a B (K = rows, N = H) or C operand: (p, j) = W[p, d·H + j].
fn slice(buf: &wgpu::Buffer, d: usize, h: usize, width: usize) -> Operand<'_> {
    Operand {
        buf,
        off: d * h,
        rs: width,
        cs: 1,
    }
}

fn plain<'a>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'a>,
    b: Operand<'a>,
    c: Operand<'a>,
) -> GemmSpec<'a> {
    GemmSpec {
        m,
        n,
        k,
        a,
        b,
        c,
        bias: None,
        g: None,
        accumulate: false,
        epilogue: Epilogue::None,
    }
}

impl Workspace {
    fn new(
        gpu: &Gpu,
        cfg: &RnnConfig,
        p: &Params<GpuTensor>,
        g: &Params<GpuTensor>,
        (t, b, masked): (usize, usize, bool),
        path: Option<RecurrencePath>,
    ) -> Result<Self> {
        let (i, h, o) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
        let (nd, cells) = (cfg.directions(), cfg.cells());
        let x = GpuTensor::empty(gpu, &[t, b, i], "x")?;
        let hs = (0..cells)
            .map(|_| GpuTensor::empty(gpu, &[t + 1, b, h], "hidden states"))
            .collect::<Result<Vec<_>>>()?;
        let dz = (0..cells)
            .map(|_| GpuTensor::empty(gpu, &[t, b, h], "dz"))
            .collect::<Result<Vec<_>>>()?;
        let y = GpuTensor::empty(gpu, &[t, b, o], "y")?;
        let dy = GpuTensor::empty(gpu, &[t, b, o], "dy")?;
        let dx = GpuTensor::empty(gpu, &[t, b, i], "dx")?;
        let dh0 = GpuTensor::empty(gpu, &cfg.state_shape(b), "dh0")?;
        let (act, act_grad) = match cfg.activation {
            Activation::Tanh => (Epilogue::Tanh, Epilogue::TanhGrad),
            Activation::Relu => (Epilogue::Relu, Epilogue::ReluGrad),
        };
        let tb = t * b;
        let block = b * h;
        let width = nd * h;
        let rows = Operand::rows;
        let tr = Operand::transposed;
        let lay = |c: usize| CellLayout::new(cfg, c, t);
        let mut path = path.unwrap_or_else(|| RecurrencePath::choose(gpu, b, h));
        if !persistent_fits(gpu) {
            // Pinned by the caller, or needed for lengths: refuse, naming the limit.
            if masked || path != RecurrencePath::Stepwise {
                return Err(Error::DeviceLimit {
                    what: "the persistent recurrence kernel (also needed for per-row lengths)"
                        .into(),
                    limit: "max_compute_workgroup_storage_size",
                    value: gpu.limits().max_compute_workgroup_storage_size as u64,
                    asked: (MAX_SHARED_W * 4) as u64,
                    advice: "use the stepwise path (set_path(None) chooses it here) and \
                             full-length batches, or a device with more workgroup memory",
                });
            }
        }
        // Per-row lengths are handled inside the persistent kernel only.
        let masked = if masked {
            if path == RecurrencePath::Stepwise {
                path = RecurrencePath::Persistent {
                    rows_per_workgroup: rows_per_workgroup(gpu, b),
                    shared_w: false,
                };
            }
            Some((
                GpuTensor::empty(gpu, &[b], "lengths")?,
                GpuTensor::empty(gpu, &cfg.state_shape(b), "dh_n")?,
            ))
        } else {
            None
        };
        let seq = |c: usize, backward: bool| RecurrenceSpec {
            t,
            b,
            h,
            backward,
            reverse: lay(c).reverse,
            relu: cfg.activation == Activation::Relu,
            state: if backward {
                dz[c].buffer()
            } else {
                hs[c].buffer()
            },
            w_hh: p.cells[c].w_hh.buffer(),
            hs: backward.then(|| hs[c].buffer()),
            rows_per_wg: match path {
                RecurrencePath::Persistent {
                    rows_per_workgroup, ..
                } => rows_per_workgroup,
                RecurrencePath::Stepwise => b,
            },
            // The plan builder drops it where H·H does not fit; a kernel that does not
            // fit the device at all was refused above.
            shared_w: matches!(path, RecurrencePath::Persistent { shared_w: true, .. }),
            // aux: dL/dh_n in for forward cells, dL/dh0 out for reverse cells (backward)
            masked: masked.as_ref().map(|(lengths, dh_n)| {
                let aux = if backward && lay(c).reverse {
                    &dh0
                } else {
                    dh_n
                };
                (lengths.buffer(), aux.buffer(), c * block)
            }),
        };
        // Outputs of cell c as a (T·B, H) row-major operand.
        let out = |c: usize| rows(hs[c].buffer(), lay(c).out() * block, h);

        // Forward: per cell one input-projection product (one per direction below it for
        // layers > 0), the recurrence, then the head (one product per top direction).
        let mut fwd = PlanBuilder::new(gpu);
        for layer in 0..cfg.num_layers {
            for dir in 0..nd {
                let c = layer * nd + dir;
                let pc = &p.cells[c];
                fwd.section("input projection");
                if layer == 0 {
                    // out blocks = X W_ihᵀ + b_h                      (T·B, H)
                    fwd.gemm(GemmSpec {
                        bias: Some((pc.b_h.buffer(), 0)),
                        ..plain(
                            tb,
                            h,
                            i,
                            rows(x.buffer(), 0, i),
                            tr(pc.w_ih.buffer(), 0, i),
                            out(c),
                        )
                    })?;
                } else {
                    // out blocks = Σ_d' out(below, d') W_ih[:, d' slice]ᵀ + b_h
                    for d2 in 0..nd {
                        fwd.gemm(GemmSpec {
                            bias: (d2 == 0).then(|| (pc.b_h.buffer(), 0)),
                            accumulate: d2 > 0,
                            ..plain(
                                tb,
                                h,
                                h,
                                out((layer - 1) * nd + d2),
                                slice_t(pc.w_ih.buffer(), d2, h, width),
                                out(c),
                            )
                        })?;
                    }
                }
                // h_t = act(proj_t + W_hh h_prev), in time order for the cell
                fwd.section("recurrence");
                if let RecurrencePath::Persistent { .. } = path {
                    fwd.recurrence(seq(c, false))?;
                } else {
                    for n in 0..t {
                        let (cur, prev) = if lay(c).reverse {
                            (t - 1 - n, t - n)
                        } else {
                            (n + 1, n)
                        };
                        fwd.gemm(GemmSpec {
                            accumulate: true,
                            epilogue: act,
                            ..plain(
                                b,
                                h,
                                h,
                                rows(hs[c].buffer(), prev * block, h),
                                tr(pc.w_hh.buffer(), 0, h),
                                rows(hs[c].buffer(), cur * block, h),
                            )
                        })?;
                    }
                }
            }
        }
        // y = Σ_d out(top, d) W_hy[:, d slice]ᵀ + b_y             (T·B, O)
        fwd.section("output projection");
        let top = (cfg.num_layers - 1) * nd;
        for d2 in 0..nd {
            fwd.gemm(GemmSpec {
                bias: (d2 == 0).then(|| (p.b_y.buffer(), 0)),
                accumulate: d2 > 0,
                ..plain(
                    tb,
                    o,
                    h,
                    out(top + d2),
                    slice_t(p.w_hy.buffer(), d2, h, width),
                    rows(y.buffer(), 0, o),
                )
            })?;
        }
        if let Some((lengths, _)) = &masked {
            fwd.mask_rows(y.buffer(), (t, b, o), lengths.buffer())?;
        }

        // Backward: every dz starts as dL/dh_n at its cell's last step (or zeros).
        let mut bwd = PlanBuilder::new(gpu);
        bwd.section("output projection backward");
        if let Some((lengths, _)) = &masked {
            bwd.mask_rows(dy.buffer(), (t, b, o), lengths.buffer())?;
        }
        for d2 in 0..nd {
            // dz(top, d) += dY W_hy[:, d slice]                   (T·B, H)
            bwd.gemm(GemmSpec {
                accumulate: true,
                ..plain(
                    tb,
                    h,
                    o,
                    rows(dy.buffer(), 0, o),
                    slice(p.w_hy.buffer(), d2, h, width),
                    rows(dz[top + d2].buffer(), 0, h),
                )
            })?;
        }
        bwd.section("weight gradients");
        for d2 in 0..nd {
            // dW_hy[:, d slice] = dYᵀ out(top, d)                 (O, H)
            bwd.gemm(plain(
                o,
                h,
                tb,
                tr(dy.buffer(), 0, o),
                out(top + d2),
                slice(g.w_hy.buffer(), d2, h, width),
            ))?;
        }
        bwd.section("bias gradients");
        bwd.col_sum(ColSumSpec {
            rows: tb,
            cols: o,
            x: (dy.buffer(), 0),
            out: (g.b_y.buffer(), 0),
        })?;
        for layer in (0..cfg.num_layers).rev() {
            for dir in 0..nd {
                let c = layer * nd + dir;
                // dz_t = (dz_t + W_hhᵀ dz of the step that read h_t) ⊙ act'(h_t)
                bwd.section("recurrence backward");
                if let RecurrencePath::Persistent { .. } = path {
                    bwd.recurrence(seq(c, true))?;
                } else {
                    for n in 0..t {
                        // dz block and the dz block of the step that read this state
                        let (cur, next) = if lay(c).reverse {
                            (n, n.wrapping_sub(1))
                        } else {
                            (t - 1 - n, t - n)
                        };
                        let k = if n == 0 { 0 } else { h };
                        let next = if n == 0 { 0 } else { next * block };
                        bwd.gemm(GemmSpec {
                            accumulate: true,
                            epilogue: act_grad,
                            g: Some((hs[c].buffer(), (cur + lay(c).out()) * block)),
                            ..plain(
                                b,
                                h,
                                k,
                                rows(dz[c].buffer(), next, h),
                                rows(p.cells[c].w_hh.buffer(), 0, h),
                                rows(dz[c].buffer(), cur * block, h),
                            )
                        })?;
                    }
                }
            }
            for dir in 0..nd {
                let c = layer * nd + dir;
                let (pc, gc) = (&p.cells[c], &g.cells[c]);
                bwd.section("weight gradients");
                if layer == 0 {
                    // dW_ih = dZᵀ X                                   (H, I)
                    bwd.gemm(plain(
                        h,
                        i,
                        tb,
                        tr(dz[c].buffer(), 0, h),
                        rows(x.buffer(), 0, i),
                        rows(gc.w_ih.buffer(), 0, i),
                    ))?;
                } else {
                    for d2 in 0..nd {
                        // dW_ih[:, d' slice] = dZᵀ out(below, d')     (H, H)
                        bwd.gemm(plain(
                            h,
                            h,
                            tb,
                            tr(dz[c].buffer(), 0, h),
                            out((layer - 1) * nd + d2),
                            slice(gc.w_ih.buffer(), d2, h, width),
                        ))?;
                    }
                }
                // dW_hh = dZᵀ H_prev                                  (H, H)
                bwd.gemm(plain(
                    h,
                    h,
                    tb,
                    tr(dz[c].buffer(), 0, h),
                    rows(hs[c].buffer(), lay(c).prev() * block, h),
                    rows(gc.w_hh.buffer(), 0, h),
                ))?;
                bwd.section("bias gradients");
                bwd.col_sum(ColSumSpec {
                    rows: tb,
                    cols: h,
                    x: (dz[c].buffer(), 0),
                    out: (gc.b_h.buffer(), 0),
                })?;
                // dh0 = dz of the step that read h_0, times W_hh      (B, H); with
                // lengths a reverse cell's kernel wrote it (h_0 feeds a per-row step)
                bwd.section("dX and dh0");
                if masked.is_some() && lay(c).reverse {
                    continue;
                }
                bwd.gemm(plain(
                    b,
                    h,
                    h,
                    rows(dz[c].buffer(), lay(c).first_dz() * block, h),
                    rows(pc.w_hh.buffer(), 0, h),
                    rows(dh0.buffer(), c * block, h),
                ))?;
            }
            bwd.section("dX and dh0");
            for dir in 0..nd {
                let c = layer * nd + dir;
                let w_ih = p.cells[c].w_ih.buffer();
                if layer == 0 {
                    // dX (+)= dZ W_ih                                 (T·B, I)
                    bwd.gemm(GemmSpec {
                        accumulate: dir > 0,
                        ..plain(
                            tb,
                            i,
                            h,
                            rows(dz[c].buffer(), 0, h),
                            rows(w_ih, 0, i),
                            rows(dx.buffer(), 0, i),
                        )
                    })?;
                } else {
                    for d2 in 0..nd {
                        // dz(below, d') += dZ W_ih[:, d' slice]       (T·B, H)
                        bwd.gemm(GemmSpec {
                            accumulate: true,
                            ..plain(
                                tb,
                                h,
                                h,
                                rows(dz[c].buffer(), 0, h),
                                slice(w_ih, d2, h, width),
                                rows(dz[(layer - 1) * nd + d2].buffer(), 0, h),
                            )
                        })?;
                    }
                }
            }
        }

        Ok(Workspace {
            t,
            b,
            x,
            hs,
            y,
            dy,
            dz,
            dx,
            dh0,
            forward: fwd.finish()?,
            backward: bwd.finish()?,
            path,
            masked,
        })
    }
}
