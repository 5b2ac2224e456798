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
    /// (B, H), the hidden state after the last step.
    pub h_last: GpuTensor,
}

/// What `backward` returns. Fresh tensors: later calls do not overwrite them.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// dL/d(parameter), each with its parameter's shape.
    pub params: Params<GpuTensor>,
    /// (T, B, I)
    pub dx: GpuTensor,
    /// (B, H)
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
        let rows_per_workgroup = if cpu {
            // A software adapter runs one workgroup per core at a time.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            b.div_ceil(cores)
        } else {
            b.min(4)
        };
        // Workgroup memory is ordinary memory on a CPU adapter: the copy is pure cost.
        let fits = h * h <= MAX_SHARED_W
            && (MAX_SHARED_W * 4) as u32 <= gpu.limits().max_compute_workgroup_storage_size;
        let persistent = RecurrencePath::Persistent {
            rows_per_workgroup,
            shared_w: fits && !cpu,
        };
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

/// Buffers and plans for one (T, B).
pub(crate) struct Workspace {
    pub t: usize,
    pub b: usize,
    /// (T, B, I), the input of the last forward.
    pub x: GpuTensor,
    /// (T+1, B, H), h_0 at block 0. Block t first holds the input projection of step t,
    /// which the step kernel replaces by h_t in place.
    pub hs: GpuTensor,
    /// (T, B, O)
    pub y: GpuTensor,
    /// (T, B, O), dL/dy of the last backward.
    pub dy: GpuTensor,
    /// (T, B, H): W_hyᵀ dy_t (+ dL/dh_T), turned into dz_t in place by the step kernel.
    pub dz: GpuTensor,
    /// (T, B, I)
    pub dx: GpuTensor,
    /// (B, H)
    pub dh0: GpuTensor,
    pub forward: Plan,
    pub backward: Plan,
    pub path: RecurrencePath,
}

/// An Elman RNN with a linear head whose parameters live on the GPU.
pub struct Rnn {
    gpu: Gpu,
    config: RnnConfig,
    params: Params<GpuTensor>,
    grads: Params<GpuTensor>,
    workspaces: Vec<Workspace>,
    /// (T, B) of the forward whose state backward would use.
    last_forward: Option<(usize, usize)>,
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
        for (t, v) in tensors.as_array().into_iter().zip(params.as_array()) {
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
        for (t, v) in self.params.as_array().into_iter().zip(params.as_array()) {
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

    /// Runs the sequence: x (T, B, I) time-major, h0 (B, H) or zeros. Keeps on the GPU
    /// what [`Rnn::backward`] needs.
    pub fn forward(&mut self, x: &GpuTensor, h0: Option<&GpuTensor>) -> Result<ForwardOutput> {
        let (t, b) = self.config.check_input(x.shape())?;
        let h = self.config.hidden_size;
        self.check_device("x", x)?;
        if let Some(h0) = h0 {
            check_shape("h0", h0.shape(), &[b, h])?;
            self.check_device("h0", h0)?;
        }
        self.last_forward = None;
        let ws = self.workspace(t, b)?;
        let ws = &self.workspaces[ws];
        let gpu = self.gpu.clone();
        let out = ForwardOutput {
            y: GpuTensor::empty(&gpu, ws.y.shape(), "y")?,
            h_last: GpuTensor::empty(&gpu, &[b, h], "h_last")?,
        };
        let block = (b * h * 4) as u64;
        let mut enc = encoder(&gpu, "rnn forward");
        enc.copy_buffer_to_buffer(x.buffer(), 0, ws.x.buffer(), 0, x.bytes());
        match h0 {
            Some(h0) => enc.copy_buffer_to_buffer(h0.buffer(), 0, ws.hs.buffer(), 0, block),
            None => enc.clear_buffer(ws.hs.buffer(), 0, Some(block)),
        }
        record(&mut enc, &ws.forward);
        enc.copy_buffer_to_buffer(ws.y.buffer(), 0, out.y.buffer(), 0, ws.y.bytes());
        enc.copy_buffer_to_buffer(
            ws.hs.buffer(),
            t as u64 * block,
            out.h_last.buffer(),
            0,
            block,
        );
        let dispatches = ws.forward.dispatches();
        gpu.submit("rnn forward", enc)?;
        self.stats = CallStats {
            dispatches,
            submits: 1,
        };
        self.last_forward = Some((t, b));
        Ok(out)
    }

    /// Backpropagates dL/dy (T, B, O), plus dL/dh_T (B, H) if given, through the last
    /// forward. Returns the gradients of all five parameters, dL/dx and dL/dh0.
    pub fn backward(&mut self, dy: &GpuTensor, dh_last: Option<&GpuTensor>) -> Result<Gradients> {
        let (h, o) = (self.config.hidden_size, self.config.output_size);
        let (t, b) = self.last_forward.ok_or(Error::NoForward(
            "call forward (after any set_params) before backward",
        ))?;
        check_shape("dy", dy.shape(), &[t, b, o])?;
        self.check_device("dy", dy)?;
        if let Some(d) = dh_last {
            check_shape("dh_last", d.shape(), &[b, h])?;
            self.check_device("dh_last", d)?;
        }
        let gpu = self.gpu.clone();
        let shapes = self.config.param_shapes();
        let out = Gradients {
            params: Params {
                w_xh: GpuTensor::empty(&gpu, &shapes.w_xh, "dw_xh")?,
                w_hh: GpuTensor::empty(&gpu, &shapes.w_hh, "dw_hh")?,
                b_h: GpuTensor::empty(&gpu, &shapes.b_h, "db_h")?,
                w_hy: GpuTensor::empty(&gpu, &shapes.w_hy, "dw_hy")?,
                b_y: GpuTensor::empty(&gpu, &shapes.b_y, "db_y")?,
            },
            dx: GpuTensor::empty(&gpu, &[t, b, self.config.input_size], "dx")?,
            dh0: GpuTensor::empty(&gpu, &[b, h], "dh0")?,
        };
        let ws = self.workspace(t, b)?;
        let ws = &self.workspaces[ws];
        let mut enc = encoder(&gpu, "rnn backward");
        enc.copy_buffer_to_buffer(dy.buffer(), 0, ws.dy.buffer(), 0, dy.bytes());
        enc.clear_buffer(ws.dz.buffer(), 0, None);
        if let Some(d) = dh_last {
            let block = (b * h * 4) as u64;
            enc.copy_buffer_to_buffer(d.buffer(), 0, ws.dz.buffer(), (t as u64 - 1) * block, block);
        }
        record(&mut enc, &ws.backward);
        let pairs = self
            .grads
            .as_array()
            .into_iter()
            .zip(out.params.as_array())
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
        self.last_forward = tb;
    }

    /// Index of the workspace for (T, B), built on first use.
    pub(crate) fn workspace(&mut self, t: usize, b: usize) -> Result<usize> {
        let pos = match self.workspaces.iter().position(|w| w.t == t && w.b == b) {
            Some(p) => p,
            None => {
                let ws = Workspace::new(
                    &self.gpu,
                    &self.config,
                    &self.params,
                    &self.grads,
                    (t, b),
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

impl Workspace {
    fn new(
        gpu: &Gpu,
        cfg: &RnnConfig,
        p: &Params<GpuTensor>,
        g: &Params<GpuTensor>,
        (t, b): (usize, usize),
        path: Option<RecurrencePath>,
    ) -> Result<Self> {
        let (i, h, o) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
        let x = GpuTensor::empty(gpu, &[t, b, i], "x")?;
        let hs = GpuTensor::empty(gpu, &[t + 1, b, h], "hidden states")?;
        let y = GpuTensor::empty(gpu, &[t, b, o], "y")?;
        let dy = GpuTensor::empty(gpu, &[t, b, o], "dy")?;
        let dz = GpuTensor::empty(gpu, &[t, b, h], "dz")?;
        let dx = GpuTensor::empty(gpu, &[t, b, i], "dx")?;
        let dh0 = GpuTensor::empty(gpu, &[b, h], "dh0")?;
        let (act, act_grad) = match cfg.activation {
            Activation::Tanh => (Epilogue::Tanh, Epilogue::TanhGrad),
            Activation::Relu => (Epilogue::Relu, Epilogue::ReluGrad),
        };
        let tb = t * b;
        let block = b * h;
        let rows = Operand::rows;
        let tr = Operand::transposed;
        let plain = |m, n, k, a, bm, c| GemmSpec {
            m,
            n,
            k,
            a,
            b: bm,
            c,
            bias: None,
            g: None,
            accumulate: false,
            epilogue: Epilogue::None,
        };

        // Forward: one product for all input projections, T fused steps, one output product.
        let mut fwd = PlanBuilder::new(gpu);
        fwd.section("input projection");
        // hs[1..] = X W_xhᵀ + b_h                       (T·B, H)
        fwd.gemm(GemmSpec {
            bias: Some((p.b_h.buffer(), 0)),
            ..plain(
                tb,
                h,
                i,
                rows(x.buffer(), 0, i),
                tr(p.w_xh.buffer(), 0, i),
                rows(hs.buffer(), block, h),
            )
        })?;
        fwd.section("recurrence");
        // hs[s] = act(hs[s] + hs[s-1] W_hhᵀ)            (B, H) per step
        let path = path.unwrap_or_else(|| RecurrencePath::choose(gpu, b, h));
        let seq = |backward, state, hs| RecurrenceSpec {
            t,
            b,
            h,
            backward,
            relu: cfg.activation == Activation::Relu,
            state,
            w_hh: p.w_hh.buffer(),
            hs,
            rows_per_wg: match path {
                RecurrencePath::Persistent {
                    rows_per_workgroup, ..
                } => rows_per_workgroup,
                RecurrencePath::Stepwise => b,
            },
            shared_w: matches!(path, RecurrencePath::Persistent { shared_w: true, .. })
                && h * h <= MAX_SHARED_W
                && (MAX_SHARED_W * 4) as u32 <= gpu.limits().max_compute_workgroup_storage_size,
        };
        if let RecurrencePath::Persistent { .. } = path {
            fwd.recurrence(seq(false, hs.buffer(), None))?;
        } else {
            for s in 1..=t {
                fwd.gemm(GemmSpec {
                    accumulate: true,
                    epilogue: act,
                    ..plain(
                        b,
                        h,
                        h,
                        rows(hs.buffer(), (s - 1) * block, h),
                        tr(p.w_hh.buffer(), 0, h),
                        rows(hs.buffer(), s * block, h),
                    )
                })?;
            }
        }
        fwd.section("output projection");
        // y = hs[1..] W_hyᵀ + b_y                        (T·B, O)
        fwd.gemm(GemmSpec {
            bias: Some((p.b_y.buffer(), 0)),
            ..plain(
                tb,
                o,
                h,
                rows(hs.buffer(), block, h),
                tr(p.w_hy.buffer(), 0, h),
                rows(y.buffer(), 0, o),
            )
        })?;

        // Backward: dz starts as dL/dh_T in its last block (or zeros).
        let mut bwd = PlanBuilder::new(gpu);
        bwd.section("output projection backward");
        // dz += dY W_hy                                  (T·B, H)
        bwd.gemm(GemmSpec {
            accumulate: true,
            ..plain(
                tb,
                h,
                o,
                rows(dy.buffer(), 0, o),
                rows(p.w_hy.buffer(), 0, h),
                rows(dz.buffer(), 0, h),
            )
        })?;
        bwd.section("recurrence backward");
        // dz[s] = (dz[s] + dz[s+1] W_hh) ⊙ act'(h_s), s = T..1; no dz[T+1] term at s = T.
        if let RecurrencePath::Persistent { .. } = path {
            bwd.recurrence(seq(true, dz.buffer(), Some(hs.buffer())))?;
        } else {
            for s in (1..=t).rev() {
                let k = if s == t { 0 } else { h };
                let next = if s == t { 0 } else { s * block };
                bwd.gemm(GemmSpec {
                    accumulate: true,
                    epilogue: act_grad,
                    g: Some((hs.buffer(), s * block)),
                    ..plain(
                        b,
                        h,
                        k,
                        rows(dz.buffer(), next, h),
                        rows(p.w_hh.buffer(), 0, h),
                        rows(dz.buffer(), (s - 1) * block, h),
                    )
                })?;
            }
        }
        bwd.section("weight gradients");
        // dW_xh = dZᵀ X                                  (H, I)
        bwd.gemm(plain(
            h,
            i,
            tb,
            tr(dz.buffer(), 0, h),
            rows(x.buffer(), 0, i),
            rows(g.w_xh.buffer(), 0, i),
        ))?;
        // dW_hh = dZᵀ hs[0..T]                           (H, H)
        bwd.gemm(plain(
            h,
            h,
            tb,
            tr(dz.buffer(), 0, h),
            rows(hs.buffer(), 0, h),
            rows(g.w_hh.buffer(), 0, h),
        ))?;
        // dW_hy = dYᵀ hs[1..]                            (O, H)
        bwd.gemm(plain(
            o,
            h,
            tb,
            tr(dy.buffer(), 0, o),
            rows(hs.buffer(), block, h),
            rows(g.w_hy.buffer(), 0, h),
        ))?;
        bwd.section("bias gradients");
        // db_h, db_y: column sums over all T·B rows
        bwd.col_sum(ColSumSpec {
            rows: tb,
            cols: h,
            x: (dz.buffer(), 0),
            out: (g.b_h.buffer(), 0),
        })?;
        bwd.col_sum(ColSumSpec {
            rows: tb,
            cols: o,
            x: (dy.buffer(), 0),
            out: (g.b_y.buffer(), 0),
        })?;
        bwd.section("dX and dh0");
        // dX = dZ W_xh                                   (T·B, I)
        bwd.gemm(plain(
            tb,
            i,
            h,
            rows(dz.buffer(), 0, h),
            rows(p.w_xh.buffer(), 0, i),
            rows(dx.buffer(), 0, i),
        ))?;
        // dh0 = dz_1 W_hh                                (B, H)
        bwd.gemm(plain(
            b,
            h,
            h,
            rows(dz.buffer(), 0, h),
            rows(p.w_hh.buffer(), 0, h),
            rows(dh0.buffer(), 0, h),
        ))?;

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
        })
    }
}
