//! The model's buffers for one (T, B) and the dispatch plans that run it: forward and
//! backward built from per-op pairs (input projection, recurrence, head), forward in
//! order and backward in reverse.

use super::kernels::{
    DropoutUniform, EmbeddingUniform, SeqUniform, DROPOUT_COPY, DROPOUT_GRAD, EMBEDDING_GATHER,
    EMBEDDING_GRAD, RECURRENCE_BACKWARD, RECURRENCE_BACKWARD_IMMEDIATE, RECURRENCE_FORWARD,
    RECURRENCE_FORWARD_IMMEDIATE, RECURRENCE_FORWARD_SUBGROUP,
    RECURRENCE_FORWARD_SUBGROUP_IMMEDIATE,
};
use super::{Activation, Params, RnnConfig, Timeline};
use crate::error::{Error, Result};
use crate::gpu::{to_u32, GemmSpec, Gpu, GpuTensor, Kernel, Operand, Plan, PlanBuilder, WG};

/// Largest G·H·H that the persistent kernel copies into workgroup memory (16 KiB, the
/// WebGPU default limit).
pub(crate) const MAX_SHARED_W: usize = 4096;

/// Hidden units a workgroup of the stepwise path owns (of stepwise_rows batch rows).
const STEPWISE_UNITS: usize = 64;

/// Hidden units a workgroup of the stepwise path owns with the subgroup forward kernel,
/// which gives each unit a whole subgroup: fewer, so that a small batch still makes
/// many workgroups.
const SUBGROUP_STEPWISE_UNITS: usize = 8;

/// How the sequential part of forward and backward runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecurrencePath {
    /// One dispatch per time step, each over many workgroups (rows × units).
    Stepwise,
    /// One dispatch for all T steps: each workgroup owns `rows_per_workgroup` batch rows
    /// and loops over time (shaders/recurrence.wgsl). With `shared_w`, W_hh is kept in
    /// workgroup memory where G·H·H ≤ 4096 (ignored for larger H).
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
    /// The path for batch `b` and `g`·`h` recurrent outputs on `gpu`;
    /// `WGPU_RNN_PATH=stepwise` or `persistent` overrides the choice (for benchmarking).
    pub fn choose(gpu: &Gpu, b: usize, g: usize, h: usize) -> Self {
        let cpu = gpu.adapter().device_type == wgpu::DeviceType::Cpu;
        // Workgroup memory is ordinary memory on a CPU adapter: the copy is pure cost.
        let fits = shared_w_fits(gpu, g, h);
        let persistent = RecurrencePath::Persistent {
            rows_per_workgroup: rows_per_workgroup(gpu, b),
            shared_w: fits && !cpu,
        };
        match std::env::var("WGPU_RNN_PATH").as_deref() {
            Ok("stepwise") => return RecurrencePath::Stepwise,
            Ok("persistent") => return persistent,
            _ => {}
        }
        // Measured on lavapipe (BENCHMARKS.md): one workgroup per core wins while a step
        // is small; past G·H·H = 128² recurrent multiply-adds per row and step (64² at
        // B > 4) the stepwise dispatches, spread over many workgroups, win. On GPUs (not measured
        // yet) only where W_hh fits in workgroup memory, the case the persistent kernel is
        // built for.
        let work = g * h * h;
        let wins = if cpu {
            work <= 64 * 64 || (work <= 128 * 128 && b <= 4)
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

/// Whether W_hh ((G·H, H)) fits the persistent kernel's workgroup copy on `gpu`.
fn shared_w_fits(gpu: &Gpu, g: usize, h: usize) -> bool {
    let n = g * h * h;
    n <= MAX_SHARED_W && (n * 4) as u64 <= gpu.limits().max_compute_workgroup_storage_size as u64
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

/// One cell's buffers.
pub(crate) struct CellBuffers {
    /// (T, B, G·H): the input projection x W_ihᵀ + b_ih in forward, dL/d(it) (dP) after
    /// backward.
    pre: GpuTensor,
    /// (T, B, G·H): GRU's dL/d(h_prev W_hhᵀ + b_hh) (dR); the other cells' dR is dP.
    dr: Option<GpuTensor>,
    /// h (T+1, B, H), then for LSTM c in the same layout: a forward cell keeps the
    /// initial state at block 0 and time t at block t, a reverse cell time t at block
    /// t−1 and the initial state at block T.
    states: GpuTensor,
    /// (T, B, S·H): what each step saves for backward (see `CellKind::saved_slots`).
    saved: GpuTensor,
    /// (T, B, H): dL/d(this cell's outputs) from the head or the layer above.
    dh: GpuTensor,
    /// (T, B, H): the outputs after dropout, what the layer above or the head reads, where
    /// the config drops this layer's outputs ([`RnnConfig::dropout_after`]).
    dropped: Option<GpuTensor>,
}

/// The token inputs of a model with an embedding, written per call
/// ([`Buffers::write_tokens`]); u32 values in f32-typed buffers.
pub(crate) struct TokenBuffers {
    /// (T, B) token ids.
    ids: GpuTensor,
    /// (T·B) rows sorted by id, stably (rows in (t, b) order within an id).
    order: GpuTensor,
    /// (V + 1): id v's rows are order[offsets[v]..offsets[v + 1]].
    offsets: GpuTensor,
}

/// Rows 0..ids.len() sorted by id, stably, and where each id's run starts: a counting sort,
/// O(V + T·B). The ids are below `vocab` (checked by the caller).
pub(crate) fn token_order(ids: &[u32], vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; vocab + 1];
    for &id in ids {
        offsets[id as usize + 1] += 1;
    }
    for v in 0..vocab {
        offsets[v + 1] += offsets[v];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; ids.len()];
    for (row, &id) in ids.iter().enumerate() {
        order[next[id as usize] as usize] = row as u32;
        next[id as usize] += 1;
    }
    (order, offsets)
}

/// Buffers and plans for one (T, B), full-length or variable-length. It dereferences to
/// its buffers.
pub(crate) struct Workspace {
    buffers: Buffers,
    pub forward: Plan,
    pub backward: Plan,
}

impl std::ops::Deref for Workspace {
    type Target = Buffers;

    fn deref(&self) -> &Buffers {
        &self.buffers
    }
}

/// The buffers of one (T, B) and how its recurrence runs.
pub(crate) struct Buffers {
    pub t: usize,
    pub b: usize,
    /// (T, B, I), the input of the last forward.
    pub x: GpuTensor,
    cells: Vec<CellBuffers>,
    /// (T, B, O)
    pub y: GpuTensor,
    /// (T, B, O), dL/dy of the last backward.
    pub dy: GpuTensor,
    /// (T, B, I)
    pub dx: GpuTensor,
    /// The state gradient dL/dh, then for LSTM dL/dc, each (L·D, B, H), carried between
    /// the steps of the backward recurrence: dL/dh_n in, dL/dh0 out.
    state_grad: GpuTensor,
    /// Per-row lengths (B, as floats) of a variable-length batch.
    pub lengths: Option<GpuTensor>,
    /// The token ids and their order, for a model with an embedding.
    tokens: Option<TokenBuffers>,
    pub path: RecurrencePath,
    /// Batch rows of a stepwise workgroup (this device's choice, [`Gpu::stepwise_rows`]).
    stepwise_rows: usize,
    /// Whether the forward recurrence runs the subgroup kernel ([`Gpu::subgroup_recurrence`]).
    subgroup_recurrence: bool,
}

impl Workspace {
    pub fn new(
        gpu: &Gpu,
        cfg: &RnnConfig,
        p: &Params<GpuTensor>,
        g: &Params<GpuTensor>,
        dropout_key: &GpuTensor,
        (t, b, variable_length): (usize, usize, bool),
        path: Option<RecurrencePath>,
    ) -> Result<Self> {
        let path = match path {
            None => RecurrencePath::choose(gpu, b, cfg.gates(), cfg.hidden_size),
            Some(p) => {
                if let RecurrencePath::Persistent { shared_w: true, .. } = p {
                    check_shared_w(gpu, cfg)?;
                }
                p
            }
        };
        let (i, h, o) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
        let gh = cfg.gates() * h;
        let lstm = cfg.cell.has_c();
        let cells = (0..cfg.cells())
            .map(|c| {
                Ok(CellBuffers {
                    pre: GpuTensor::empty(gpu, &[t, b, gh], "input projection")?,
                    dr: match cfg.cell.separate_dr() {
                        true => Some(GpuTensor::empty(gpu, &[t, b, gh], "dR")?),
                        false => None,
                    },
                    states: GpuTensor::empty(
                        gpu,
                        &[if lstm { 2 } else { 1 }, t + 1, b, h],
                        "hidden states",
                    )?,
                    saved: GpuTensor::empty(
                        gpu,
                        &[t, b, cfg.cell.saved_slots() * h],
                        "saved gates",
                    )?,
                    dh: GpuTensor::empty(gpu, &[t, b, h], "dL/d(outputs)")?,
                    dropped: match cfg.dropout_after(c / cfg.directions()) > 0.0 {
                        true => Some(GpuTensor::empty(gpu, &[t, b, h], "dropped outputs")?),
                        false => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let state_grad_shape = [if lstm { 2 } else { 1 }, cfg.cells(), b, h];
        let ws = Buffers {
            t,
            b,
            x: GpuTensor::empty(gpu, &[t, b, i], "x")?,
            cells,
            y: GpuTensor::empty(gpu, &[t, b, o], "y")?,
            dy: GpuTensor::empty(gpu, &[t, b, o], "dy")?,
            dx: GpuTensor::empty(gpu, &[t, b, i], "dx")?,
            state_grad: GpuTensor::empty(gpu, &state_grad_shape, "state gradient")?,
            lengths: if variable_length {
                Some(GpuTensor::empty(gpu, &[b], "lengths")?)
            } else {
                None
            },
            tokens: match cfg.embedding {
                Some(vocab) => Some(TokenBuffers {
                    ids: GpuTensor::empty(gpu, &[t, b], "token ids")?,
                    order: GpuTensor::empty(gpu, &[t * b], "token order")?,
                    offsets: GpuTensor::empty(gpu, &[vocab + 1], "token offsets")?,
                }),
                None => None,
            },
            path,
            stepwise_rows: gpu.stepwise_rows(),
            subgroup_recurrence: gpu.subgroup_recurrence(),
        };
        let ctx = Ctx {
            cfg,
            p,
            g,
            ws: &ws,
            key: dropout_key.buffer(),
        };
        let mut fwd = PlanBuilder::new(gpu);
        ctx.embedding(&mut fwd, false)?;
        for layer in 0..cfg.num_layers {
            for dir in 0..cfg.directions() {
                let c = layer * cfg.directions() + dir;
                ctx.input_projection_forward(&mut fwd, c)?;
                ctx.recurrence_forward(&mut fwd, c)?;
            }
            for dir in 0..cfg.directions() {
                ctx.dropout(&mut fwd, layer * cfg.directions() + dir, false)?;
            }
        }
        ctx.head_forward(&mut fwd)?;
        let mut bwd = PlanBuilder::new(gpu);
        ctx.head_backward(&mut bwd)?;
        for layer in (0..cfg.num_layers).rev() {
            for dir in 0..cfg.directions() {
                ctx.dropout(&mut bwd, layer * cfg.directions() + dir, true)?;
            }
            for dir in 0..cfg.directions() {
                ctx.recurrence_backward(&mut bwd, layer * cfg.directions() + dir)?;
            }
            for dir in 0..cfg.directions() {
                ctx.input_projection_backward(&mut bwd, layer * cfg.directions() + dir)?;
            }
        }
        ctx.embedding(&mut bwd, true)?;
        Ok(Workspace {
            forward: fwd.finish()?,
            backward: bwd.finish()?,
            buffers: ws,
        })
    }
}

impl Buffers {
    /// Writes the token ids (T, B) of the next forward and their order for its backward,
    /// after checking each against the vocabulary.
    pub fn write_tokens(&self, cfg: &RnnConfig, ids: &[u32]) -> Result<()> {
        cfg.check_tokens(ids, self.t, self.b)?;
        let (Some(tok), Some(vocab)) = (&self.tokens, cfg.embedding) else {
            return Err(Error::IncompatibleArgs(
                "this workspace was built for a model without an embedding".into(),
            ));
        };
        to_u32("token rows", ids.len())?;
        let (order, offsets) = token_order(ids, vocab);
        tok.ids.write(bytemuck::cast_slice(ids))?;
        tok.order.write(bytemuck::cast_slice(&order))?;
        tok.offsets.write(bytemuck::cast_slice(&offsets))
    }

    fn timeline(&self, cfg: &RnnConfig, c: usize) -> Timeline {
        Timeline::new(self.t, cfg.is_reverse(c))
    }

    /// Bytes of one (B, H) block of states.
    fn block_bytes(&self, cfg: &RnnConfig) -> u64 {
        (self.b * cfg.hidden_size * 4) as u64
    }

    /// Offset in bytes of the c half of a cell's states.
    fn c_bytes(&self, cfg: &RnnConfig) -> u64 {
        (self.t as u64 + 1) * self.block_bytes(cfg)
    }

    /// Copies the initial state (h0 and c0, each (L·D, B, H), or (B, H) for one cell)
    /// into each cell's initial block, or zeros it.
    pub fn record_initial_state(
        &self,
        cfg: &RnnConfig,
        enc: &mut wgpu::CommandEncoder,
        init: Option<&super::State<GpuTensor>>,
    ) {
        let block = self.block_bytes(cfg);
        for (c, cell) in self.cells.iter().enumerate() {
            let at = self.timeline(cfg, c).initial_block() as u64 * block;
            let parts = [
                (init.map(|s| &s.h), 0),
                (init.and_then(|s| s.c.as_ref()), 1),
            ];
            for (src, half) in parts.into_iter().take(if cfg.cell.has_c() { 2 } else { 1 }) {
                let dst = at + half * self.c_bytes(cfg);
                match src {
                    Some(s) => enc.copy_buffer_to_buffer(
                        s.buffer(),
                        c as u64 * block,
                        cell.states.buffer(),
                        dst,
                        block,
                    ),
                    None => enc.clear_buffer(cell.states.buffer(), dst, Some(block)),
                }
            }
        }
    }

    /// Copies each cell's final state (h_n, and c_n for LSTM) into `dst`.
    pub fn record_final_state(
        &self,
        cfg: &RnnConfig,
        enc: &mut wgpu::CommandEncoder,
        dst: &super::State<GpuTensor>,
    ) {
        let block = self.block_bytes(cfg);
        for (c, cell) in self.cells.iter().enumerate() {
            let at = self.timeline(cfg, c).final_block() as u64 * block;
            for (half, d) in dst.tensors().into_iter().enumerate() {
                let src = at + half as u64 * self.c_bytes(cfg);
                enc.copy_buffer_to_buffer(
                    cell.states.buffer(),
                    src,
                    d.buffer(),
                    c as u64 * block,
                    block,
                );
            }
        }
    }

    /// Sets the state gradient to dL/dh_n (and dL/dc_n), or zeros.
    pub fn record_final_state_grad(
        &self,
        enc: &mut wgpu::CommandEncoder,
        d_final: Option<&super::State<GpuTensor>>,
    ) {
        enc.clear_buffer(self.state_grad.buffer(), 0, None);
        for (k, t) in d_final.iter().flat_map(|s| s.tensors()).enumerate() {
            let at = k as u64 * t.bytes();
            enc.copy_buffer_to_buffer(t.buffer(), 0, self.state_grad.buffer(), at, t.bytes());
        }
    }

    /// Copies dL/dh0 (and dL/dc0) out of the state gradient.
    pub fn record_initial_state_grad(
        &self,
        enc: &mut wgpu::CommandEncoder,
        dst: &super::State<GpuTensor>,
    ) {
        for (k, t) in dst.tensors().into_iter().enumerate() {
            enc.copy_buffer_to_buffer(
                self.state_grad.buffer(),
                k as u64 * t.bytes(),
                t.buffer(),
                0,
                t.bytes(),
            );
        }
    }
}

/// Refuses a pinned shared-W_hh path that this device or model cannot take.
fn check_shared_w(gpu: &Gpu, cfg: &RnnConfig) -> Result<()> {
    let n = cfg.gates() * cfg.hidden_size * cfg.hidden_size;
    if n > MAX_SHARED_W {
        return Ok(()); // ignored for large H, as documented
    }
    let limit = gpu.limits().max_compute_workgroup_storage_size;
    if (n * 4) as u64 > limit as u64 {
        return Err(Error::DeviceLimit {
            what: "the persistent recurrence with W_hh in workgroup memory".into(),
            limit: "max_compute_workgroup_storage_size",
            value: limit as u64,
            asked: (n * 4) as u64,
            advice: "use Persistent { shared_w: false } or the stepwise path (set_path(None) \
                     chooses one that fits), or a device with more workgroup memory",
        });
    }
    Ok(())
}

/// A piece of a cell's input: its rows (T·B, cols), where dL/d(it) goes, and the first of
/// the `cols` columns of W_ih it meets.
struct Input<'a> {
    x: Operand<'a>,
    dx: Operand<'a>,
    cols: usize,
    w_off: usize,
}

/// What the op pairs read: the model, its parameters and gradients, the workspace.
struct Ctx<'a> {
    cfg: &'a RnnConfig,
    p: &'a Params<GpuTensor>,
    g: &'a Params<GpuTensor>,
    ws: &'a Buffers,
    /// The model's dropout key ([`super::dropout::key_words`]), written before each call.
    key: &'a wgpu::Buffer,
}

impl<'a> Ctx<'a> {
    fn block(&self) -> usize {
        self.ws.b * self.cfg.hidden_size
    }

    /// Outputs of cell c (times 1..T) as a (T·B, H) row-major operand.
    fn out(&self, c: usize) -> Operand<'a> {
        let first = self.ws.timeline(self.cfg, c).out_block(1);
        Operand::rows(
            self.ws.cells[c].states.buffer(),
            first * self.block(),
            self.cfg.hidden_size,
        )
    }

    /// Outputs of cell c as the layer above or the head reads them: after dropout where
    /// the config drops them.
    fn layer_out(&self, c: usize) -> Operand<'a> {
        match &self.ws.cells[c].dropped {
            Some(d) => Operand::rows(d.buffer(), 0, self.cfg.hidden_size),
            None => self.out(c),
        }
    }

    /// Dropout of cell c's outputs into its dropped copy (forward), or the same mask on
    /// dL/d(outputs) in place (`grad`), where the config drops them; the key decides per
    /// call whether masks apply (a training step) or values pass through.
    fn dropout(&self, plan: &mut PlanBuilder, c: usize, grad: bool) -> Result<()> {
        let Some(dropped) = &self.ws.cells[c].dropped else {
            return Ok(());
        };
        let (cfg, ws) = (self.cfg, self.ws);
        let (d, h) = (cfg.directions(), cfg.hidden_size);
        let layer = c / d;
        let n = ws.t * ws.b * h;
        to_u32("dropout elements", ws.t * ws.b * d * h)?;
        let p = cfg.dropout_after(layer);
        let src_off = ws.timeline(cfg, c).out_block(1) * self.block();
        let u = DropoutUniform {
            n: to_u32("dropout elements", n)?,
            h: to_u32("hidden size", h)?,
            width: to_u32("layer width", d * h)?,
            unit0: to_u32("layer width", (c % d) * h)?,
            layer: to_u32("layers", layer)?,
            threshold: super::dropout::threshold(p),
            scale: super::dropout::scale(p),
            src_off: to_u32("state offset", src_off)?,
            b: to_u32("batch", ws.b)?,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let groups = plan.groups_1d(n)?;
        plan.section(if grad { "dropout backward" } else { "dropout" });
        if grad {
            let kernel = Kernel::new(&DROPOUT_GRAD).with("WG", WG);
            let buffers = [Some(ws.cells[c].dh.buffer()), Some(self.key)];
            plan.push(kernel, bytemuck::bytes_of(&u), &buffers, groups)
        } else {
            let kernel = Kernel::new(&DROPOUT_COPY).with("WG", WG);
            let src = ws.cells[c].states.buffer();
            let buffers = [Some(src), Some(dropped.buffer()), Some(self.key)];
            plan.push(kernel, bytemuck::bytes_of(&u), &buffers, groups)
        }
    }

    /// The embedding's gather of x from the table (forward), or the segmented sum of dL/dx
    /// into dL/d(table) (`grad`), for a model with one.
    fn embedding(&self, plan: &mut PlanBuilder, grad: bool) -> Result<()> {
        let Some(vocab) = self.cfg.embedding else {
            return Ok(());
        };
        let (Some(tok), Some(table), Some(dtable)) =
            (&self.ws.tokens, &self.p.embedding, &self.g.embedding)
        else {
            return Err(Error::IncompatibleArgs(
                "the model has an embedding but its table, gradient or token buffers are \
                 missing (parameters built for another config)"
                    .into(),
            ));
        };
        let (ws, e) = (self.ws, self.cfg.input_size);
        let mut u = EmbeddingUniform {
            n: to_u32("embedded values (T·B·I)", ws.t * ws.b * e)?,
            e: to_u32("embedding dimension", e)?,
            vocab: to_u32("embedding vocabulary", vocab)?,
            w_off: to_u32("embedding offset", table.offset())?,
        };
        if grad {
            plan.section("embedding gradient");
            u.n = to_u32("embedding values (V·I)", vocab * e)?;
            u.w_off = to_u32("embedding offset", dtable.offset())?;
            let buffers = [
                Some(tok.order.buffer()),
                Some(tok.offsets.buffer()),
                Some(ws.dx.buffer()),
                Some(dtable.buffer()),
            ];
            let kernel = Kernel::new(&EMBEDDING_GRAD).with("WG", WG);
            plan.push(
                kernel,
                bytemuck::bytes_of(&u),
                &buffers,
                plan.groups_1d(vocab * e)?,
            )
        } else {
            plan.section("embedding");
            let buffers = [
                Some(tok.ids.buffer()),
                Some(table.buffer()),
                Some(ws.x.buffer()),
            ];
            let kernel = Kernel::new(&EMBEDDING_GATHER).with("WG", WG);
            plan.push(
                kernel,
                bytemuck::bytes_of(&u),
                &buffers,
                plan.groups_1d(ws.t * ws.b * e)?,
            )
        }
    }

    /// What cell c reads, each piece with the columns of W_ih it meets: x (T·B, I) for
    /// layer 0; above it the outputs of the D cells of the layer below, H columns each.
    /// One product per piece in forward and backward, so nothing is concatenated.
    fn inputs(&self, c: usize) -> Vec<Input<'a>> {
        let (cfg, ws) = (self.cfg, self.ws);
        let (d, h) = (cfg.directions(), cfg.hidden_size);
        let layer = c / d;
        if layer == 0 {
            let i = cfg.input_size;
            return vec![Input {
                x: Operand::rows(ws.x.buffer(), 0, i),
                dx: Operand::rows(ws.dx.buffer(), 0, i),
                cols: i,
                w_off: 0,
            }];
        }
        ((layer - 1) * d..layer * d)
            .map(|below| Input {
                x: self.layer_out(below),
                dx: Operand::rows(ws.cells[below].dh.buffer(), 0, h),
                cols: h,
                w_off: (below % d) * h,
            })
            .collect()
    }

    /// pre(c) = Σ_pieces in W_ih[:, piece]ᵀ + b_ih, (T·B, G·H).
    fn input_projection_forward(&self, plan: &mut PlanBuilder, c: usize) -> Result<()> {
        plan.section("input projection");
        let (cfg, ws) = (self.cfg, self.ws);
        let (tb, gh) = (ws.t * ws.b, cfg.gates() * cfg.hidden_size);
        let pc = &self.p.cells[c];
        let width = cfg.layer_input_size(c / cfg.directions());
        let pre = Operand::rows(ws.cells[c].pre.buffer(), 0, gh);
        for (k, input) in self.inputs(c).into_iter().enumerate() {
            let w = column_slice_t(&pc.w_ih, input.w_off, width);
            plan.gemm(
                GemmSpec::new(tb, gh, input.cols, input.x, w, pre)
                    .bias(if k == 0 { pc.b_ih.as_ref() } else { None })
                    .accumulate(k > 0),
            )?;
        }
        Ok(())
    }

    /// dW_ih[:, piece] = dPᵀ in, db_ih = Σ_rows dP, and d in += dP W_ih[:, piece]: into dx
    /// for layer 0, else into the dh of the cells below (both accumulated over this
    /// layer's directions).
    fn input_projection_backward(&self, plan: &mut PlanBuilder, c: usize) -> Result<()> {
        let (cfg, ws) = (self.cfg, self.ws);
        let (tb, gh) = (ws.t * ws.b, cfg.gates() * cfg.hidden_size);
        let (pc, gc) = (&self.p.cells[c], &self.g.cells[c]);
        let width = cfg.layer_input_size(c / cfg.directions());
        let dp = ws.cells[c].pre.buffer();
        let first_dir = c.is_multiple_of(cfg.directions());
        let inputs = self.inputs(c);
        plan.section("weight gradients");
        for input in &inputs {
            plan.gemm(GemmSpec::new(
                gh,
                input.cols,
                tb,
                Operand::transposed(dp, 0, gh),
                input.x,
                column_slice(&gc.w_ih, input.w_off, width),
            ))?;
        }
        if let Some(db) = &gc.b_ih {
            plan.section("bias gradients");
            plan.col_sum(tb, gh, (dp, 0), (db.buffer(), db.offset()))?;
        }
        plan.section("dX and dh");
        for input in inputs {
            plan.gemm(
                GemmSpec::new(
                    tb,
                    input.cols,
                    gh,
                    Operand::rows(dp, 0, gh),
                    column_slice(&pc.w_ih, input.w_off, width),
                    input.dx,
                )
                .accumulate(!first_dir),
            )?;
        }
        Ok(())
    }

    /// The recurrence kernel of cell c with its override constants.
    fn recurrence_kernel(&self, c: usize, backward: bool) -> Kernel {
        let cfg = self.cfg;
        let (tile_rows, shared) = match self.ws.path {
            RecurrencePath::Persistent {
                rows_per_workgroup,
                shared_w,
            } => {
                let n = cfg.gates() * cfg.hidden_size * cfg.hidden_size;
                let share = shared_w && n <= MAX_SHARED_W;
                (
                    if rows_per_workgroup.min(self.ws.b) >= 4 {
                        4
                    } else {
                        1
                    },
                    if share { n.max(1) } else { 1 },
                )
            }
            // A stepwise workgroup owns STEPWISE_UNITS units of its rows: 64 tiles of 4
            // units, of 4 rows each (16 rows) or of one row (4 rows: 4x the workgroups).
            RecurrencePath::Stepwise => (if self.ws.stepwise_rows >= 16 { 4 } else { 1 }, 1),
        };
        let def = if backward {
            &RECURRENCE_BACKWARD
        } else if self.ws.subgroup_recurrence {
            &RECURRENCE_FORWARD_SUBGROUP
        } else {
            &RECURRENCE_FORWARD
        };
        let kernel = Kernel::new(def)
            .with("WG", WG)
            .with("TILE_ROWS", tile_rows as u32)
            .with("G", cfg.gates() as u32)
            .with("S", cfg.cell.saved_slots() as u32)
            .with("REVERSE", cfg.is_reverse(c) as u8)
            .with("VARIABLE_LENGTH", self.ws.lengths.is_some() as u8)
            .with("SHARED_LEN", shared as u32)
            .with("CELL", cfg.cell.id())
            .with("HAS_C", cfg.cell.has_c() as u8)
            .with("RELU", (cfg.activation == Activation::Relu) as u8);
        if backward {
            kernel.with("SEPARATE_DR", cfg.cell.separate_dr() as u8)
        } else {
            kernel.with("HAS_BIAS", cfg.bias as u8)
        }
    }

    /// Dispatches `iterations` iterations of the recurrence over `buffers`: one
    /// dispatch for all (persistent) or one per iteration (stepwise).
    fn recurrence(
        &self,
        plan: &mut PlanBuilder,
        c: usize,
        backward: bool,
        iterations: usize,
        buffers: &[Option<&wgpu::Buffer>],
    ) -> Result<()> {
        let (cfg, ws) = (self.cfg, self.ws);
        let (b, h) = (ws.b, cfg.hidden_size);
        let block = b * h;
        let mut u = SeqUniform {
            t: to_u32("sequence length", ws.t)?,
            b: to_u32("batch", b)?,
            h: to_u32("hidden size", h)?,
            rows_per_wg: 0,
            units_per_wg: 0,
            first: 0,
            steps: 0,
            state_c: to_u32("offset", (ws.t + 1) * block)?,
            grad_h: to_u32("offset", c * block)?,
            grad_c: to_u32("offset", (cfg.cells() + c) * block)?,
            w_off: to_u32("offset", self.p.cells[c].w_hh.offset())?,
            b_off: to_u32(
                "offset",
                self.p.cells[c].b_hh.as_ref().map_or(0, GpuTensor::offset),
            )?,
        };
        let kernel = self.recurrence_kernel(c, backward);
        match ws.path {
            RecurrencePath::Persistent {
                rows_per_workgroup, ..
            } => {
                let rows = rows_per_workgroup.clamp(1, b);
                u.rows_per_wg = rows as u32;
                u.units_per_wg = u.h;
                u.steps = to_u32("steps", iterations)?;
                let groups = plan.groups(1, b.div_ceil(rows))?;
                plan.push(kernel, bytemuck::bytes_of(&u), buffers, groups)
            }
            RecurrencePath::Stepwise => {
                let rows = ws.stepwise_rows;
                let subgroup = !backward && ws.subgroup_recurrence;
                let units = if subgroup {
                    SUBGROUP_STEPWISE_UNITS
                } else {
                    STEPWISE_UNITS
                };
                u.rows_per_wg = rows as u32;
                u.units_per_wg = units as u32;
                u.steps = 1;
                let groups = plan.groups(h.div_ceil(units), b.div_ceil(rows))?;
                let twin = if backward {
                    &RECURRENCE_BACKWARD_IMMEDIATE
                } else if subgroup {
                    &RECURRENCE_FORWARD_SUBGROUP_IMMEDIATE
                } else {
                    &RECURRENCE_FORWARD_IMMEDIATE
                };
                if plan.has(twin) {
                    let kernel = Kernel {
                        def: twin,
                        ..kernel
                    };
                    return plan.push_steps(
                        kernel,
                        bytemuck::bytes_of(&u),
                        buffers,
                        groups,
                        iterations,
                    );
                }
                for n in 0..iterations {
                    u.first = n as u32;
                    plan.push(kernel.clone(), bytemuck::bytes_of(&u), buffers, groups)?;
                }
                Ok(())
            }
        }
    }

    /// h_t (and c_t) of cell c for t in its order, from pre(c), W_hh and b_hh.
    fn recurrence_forward(&self, plan: &mut PlanBuilder, c: usize) -> Result<()> {
        plan.section("recurrence");
        let cell = &self.ws.cells[c];
        let pc = &self.p.cells[c];
        let buffers = [
            Some(cell.pre.buffer()),
            Some(pc.w_hh.buffer()),
            pc.b_hh.as_ref().map(GpuTensor::buffer),
            Some(cell.states.buffer()),
            Some(cell.saved.buffer()),
            self.ws.lengths.as_ref().map(GpuTensor::buffer),
        ];
        self.recurrence(plan, c, false, self.ws.t, &buffers)
    }

    /// dP and dR of cell c (and dL/dh0, dL/dc0 in the state gradient), then the recurrent weight
    /// gradients dW_hh = dRᵀ H_prev and db_hh = Σ_rows dR.
    fn recurrence_backward(&self, plan: &mut PlanBuilder, c: usize) -> Result<()> {
        plan.section("recurrence backward");
        let (cfg, ws) = (self.cfg, self.ws);
        let cell = &ws.cells[c];
        let dp = cell.pre.buffer();
        let dr = cell.dr.as_ref().map_or(dp, GpuTensor::buffer);
        let buffers = [
            Some(dp),
            Some(self.p.cells[c].w_hh.buffer()),
            // None for the cells whose dR is dP: the plan binds a placeholder (WebGPU
            // refuses one buffer bound twice in a dispatch where either binding writes).
            cell.dr.as_ref().map(GpuTensor::buffer),
            Some(cell.states.buffer()),
            Some(cell.saved.buffer()),
            ws.lengths.as_ref().map(GpuTensor::buffer),
            Some(cell.dh.buffer()),
            Some(ws.state_grad.buffer()),
        ];
        self.recurrence(plan, c, true, ws.t + 1, &buffers)?;
        let (tb, h, gh) = (ws.t * ws.b, cfg.hidden_size, cfg.gates() * cfg.hidden_size);
        let gc = &self.g.cells[c];
        plan.section("weight gradients");
        let prev = ws.timeline(cfg, c).prev_block(1) * self.block();
        plan.gemm(GemmSpec::new(
            gh,
            h,
            tb,
            Operand::transposed(dr, 0, gh),
            Operand::rows(cell.states.buffer(), prev, h),
            Operand::tensor_rows(&gc.w_hh, h),
        ))?;
        if let Some(db) = &gc.b_hh {
            plan.section("bias gradients");
            plan.col_sum(tb, gh, (dr, 0), (db.buffer(), db.offset()))?;
        }
        Ok(())
    }

    /// The top layer's directions.
    fn top(&self) -> std::ops::Range<usize> {
        let d = self.cfg.directions();
        self.cfg.cells() - d..self.cfg.cells()
    }

    /// y = Σ_d out(top, d) W_hy[:, d slice]ᵀ + b_y, (T·B, O), zero past a row's length.
    fn head_forward(&self, plan: &mut PlanBuilder) -> Result<()> {
        plan.section("output projection");
        let (cfg, ws) = (self.cfg, self.ws);
        let (tb, h, o) = (ws.t * ws.b, cfg.hidden_size, cfg.output_size);
        let width = cfg.directions() * h;
        for (k, c) in self.top().enumerate() {
            plan.gemm(
                GemmSpec::new(
                    tb,
                    o,
                    h,
                    self.layer_out(c),
                    column_slice_t(&self.p.w_hy, k * h, width),
                    Operand::rows(ws.y.buffer(), 0, o),
                )
                .bias((k == 0).then_some(&self.p.b_y))
                .accumulate(k > 0),
            )?;
        }
        if let Some(lengths) = &ws.lengths {
            plan.mask_rows(ws.y.buffer(), (ws.t, ws.b, o), lengths.buffer())?;
        }
        Ok(())
    }

    /// dh(top, d) = dY W_hy[:, d slice], dW_hy[:, d slice] = dYᵀ out(top, d),
    /// db_y = Σ_rows dY; dY is first zeroed past each row's length.
    fn head_backward(&self, plan: &mut PlanBuilder) -> Result<()> {
        plan.section("output projection backward");
        let (cfg, ws) = (self.cfg, self.ws);
        let (tb, h, o) = (ws.t * ws.b, cfg.hidden_size, cfg.output_size);
        let width = cfg.directions() * h;
        let dy = ws.dy.buffer();
        if let Some(lengths) = &ws.lengths {
            plan.mask_rows(dy, (ws.t, ws.b, o), lengths.buffer())?;
        }
        for (k, c) in self.top().enumerate() {
            plan.gemm(GemmSpec::new(
                tb,
                h,
                o,
                Operand::rows(dy, 0, o),
                column_slice(&self.p.w_hy, k * h, width),
                Operand::rows(ws.cells[c].dh.buffer(), 0, h),
            ))?;
        }
        plan.section("weight gradients");
        for (k, c) in self.top().enumerate() {
            plan.gemm(GemmSpec::new(
                o,
                h,
                tb,
                Operand::transposed(dy, 0, o),
                self.layer_out(c),
                column_slice(&self.g.w_hy, k * h, width),
            ))?;
        }
        plan.section("bias gradients");
        plan.col_sum(tb, o, (dy, 0), (self.g.b_y.buffer(), self.g.b_y.offset()))
    }
}

/// Columns [off, off + K) of a row-major (rows, width) weight W, transposed: the B
/// operand (K, N = rows) with B(p, j) = W[j, off + p].
fn column_slice_t(w: &GpuTensor, off: usize, width: usize) -> Operand<'_> {
    Operand {
        buf: w.buffer(),
        off: w.offset() + off,
        rs: 1,
        cs: width,
    }
}

/// Columns [off, off + N) of a row-major (rows, width) weight, untransposed: a B (K = rows,
/// N) or C operand with (p, j) = W[p, off + j].
fn column_slice(w: &GpuTensor, off: usize, width: usize) -> Operand<'_> {
    Operand {
        buf: w.buffer(),
        off: w.offset() + off,
        rs: width,
        cs: 1,
    }
}
