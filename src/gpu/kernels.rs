//! WGSL kernels: sources, bind group layouts, the pipeline cache, and `Plan`s: sequences
//! of dispatches whose parameters and bind groups are built once per shape and then
//! replayed into any number of command encoders.

use std::collections::HashMap;
use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

/// Each gemm invocation computes a TILE x TILE block of C (fixed in the WGSL).
const TILE: u32 = 4;

/// The gemm workgroup shape (`WG_X` x `WG_Y` invocations, each a 4x4 tile of C), an
/// override constant: 8x8 from the matmul bench (BENCHMARKS.md); `WGPU_RNN_GEMM_WG=XxY`
/// overrides it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GemmWorkgroup {
    pub x: u32,
    pub y: u32,
}

impl std::fmt::Display for GemmWorkgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.x, self.y)
    }
}

impl GemmWorkgroup {
    fn for_device(limits: &wgpu::Limits) -> Self {
        let parsed = std::env::var("WGPU_RNN_GEMM_WG").ok().and_then(|v| {
            let (x, y) = v.split_once('x')?;
            Some(GemmWorkgroup {
                x: x.trim().parse().ok()?,
                y: y.trim().parse().ok()?,
            })
        });
        let fits = |w: &GemmWorkgroup| {
            w.x >= 1
                && w.y >= 1
                && w.x <= limits.max_compute_workgroup_size_x
                && w.y <= limits.max_compute_workgroup_size_y
                && w.x * w.y <= limits.max_compute_invocations_per_workgroup
        };
        if let Some(w) = parsed.filter(fits) {
            return w;
        }
        // Measured on lavapipe, every shape from 64x1 to 16x16 is within a few percent of
        // 8x8 (BENCHMARKS.md); no GPU has been measured, so it serves every adapter kind
        // until one is, and a per-kind choice would go here.
        GemmWorkgroup { x: 8, y: 8 }
    }
}
/// Workgroup size of the one-dimensional kernels (must be a power of two: tree reductions).
const WG: u32 = 64;

/// One WGSL file each; every entry point of a file shares its bind group layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Module {
    Gemm,
    Reduce,
    Loss,
    Optim,
    Recurrence,
}

impl Module {
    const ALL: [Module; 5] = [
        Module::Gemm,
        Module::Reduce,
        Module::Loss,
        Module::Optim,
        Module::Recurrence,
    ];

    fn source(self) -> &'static str {
        match self {
            Module::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Module::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Module::Loss => include_str!("../../shaders/loss.wgsl"),
            Module::Optim => include_str!("../../shaders/optim.wgsl"),
            Module::Recurrence => include_str!("../../shaders/recurrence.wgsl"),
        }
    }

    /// read_only flag of each storage binding after the uniform at binding 0.
    fn storage(self) -> &'static [bool] {
        match self {
            // a (rw: may alias c), b, c, bias, g
            Module::Gemm => &[false, true, false, true, true],
            // x, out
            Module::Reduce => &[true, false],
            // y, target, weight, scale, dy, row_loss
            Module::Loss => &[true, true, true, true, false, false],
            // param, grad, m, v, norm_parts, hyper
            Module::Optim => &[false, true, false, false, true, true],
            // state (hs or dz), W_hh, hs (the gate in backward), lengths, aux
            Module::Recurrence => &[false, true, true, true, false],
        }
    }

    fn params_size(self) -> u64 {
        match self {
            Module::Gemm => std::mem::size_of::<GemmParams>() as u64,
            Module::Recurrence => std::mem::size_of::<SeqParams>() as u64,
            _ => std::mem::size_of::<RowParams>() as u64,
        }
    }
}

/// The optimizer an update kernel applies (the `OPT` override in shaders/optim.wgsl).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum OptKernel {
    Sgd,
    Adam,
    Adagrad,
}

/// Every pipeline this crate builds: an entry point plus its override constants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Kernel {
    Gemm {
        wg: GemmWorkgroup,
        bias: bool,
        accumulate: bool,
        epilogue: Epilogue,
    },
    ColSum,
    SumSquares,
    SoftmaxXent,
    Mse,
    Update(OptKernel),
    Recurrence {
        backward: bool,
        reverse: bool,
        relu: bool,
        tile_rows: u32,
        shared_w: bool,
        masked: bool,
    },
    MaskRows,
}

impl Kernel {
    fn module(self) -> Module {
        match self {
            Kernel::Gemm { .. } => Module::Gemm,
            Kernel::ColSum | Kernel::SumSquares => Module::Reduce,
            Kernel::SoftmaxXent | Kernel::Mse => Module::Loss,
            Kernel::Update(_) => Module::Optim,
            Kernel::Recurrence { .. } | Kernel::MaskRows => Module::Recurrence,
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Kernel::Gemm { .. } => "gemm",
            Kernel::ColSum => "col_sum",
            Kernel::SumSquares => "sum_squares",
            Kernel::SoftmaxXent => "softmax_xent",
            Kernel::Mse => "mse",
            Kernel::Update(_) => "update",
            Kernel::Recurrence { .. } => "recurrence",
            Kernel::MaskRows => "mask_rows",
        }
    }

    fn constants(self) -> Vec<(&'static str, f64)> {
        match self {
            Kernel::Gemm {
                wg,
                bias,
                accumulate,
                epilogue,
            } => vec![
                ("WG_X", wg.x as f64),
                ("WG_Y", wg.y as f64),
                ("HAS_BIAS", bias as u8 as f64),
                ("ACCUMULATE", accumulate as u8 as f64),
                ("EPILOGUE", epilogue.code()),
            ],
            Kernel::Update(opt) => vec![("WG", WG as f64), ("OPT", opt as u8 as f64)],
            Kernel::Recurrence {
                backward,
                reverse,
                relu,
                tile_rows,
                shared_w,
                masked,
            } => vec![
                ("MASKED", masked as u8 as f64),
                ("REVERSE", reverse as u8 as f64),
                ("WG", WG as f64),
                ("TILE_ROWS", tile_rows as f64),
                ("BACKWARD", backward as u8 as f64),
                ("ACT", relu as u8 as f64),
                ("SHARED_W", shared_w as u8 as f64),
            ],
            _ => vec![("WG", WG as f64)],
        }
    }
}

/// Mirrors `struct Gemm` in shaders/gemm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    bias_off: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    g_off: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    _pad0: u32,
    c_off: u32,
    c_rs: u32,
    _pad1: u32,
    _pad2: u32,
}

/// Mirrors `struct ColSum` in shaders/reduce.wgsl, `struct Rows` in shaders/loss.wgsl and
/// `struct Update` in shaders/optim.wgsl (all four u32).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct RowParams {
    pub rows: u32,
    pub cols: u32,
    pub in_off: u32,
    pub out_off: u32,
}

/// Mirrors `struct Seq` in shaders/recurrence.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SeqParams {
    t: u32,
    b: u32,
    h: u32,
    rows_per_wg: u32,
    aux_off: u32,
    _pad: [u32; 3],
}

/// The whole recurrence in one dispatch: hs (T+1, B, H) forward, or dz (T, B, H) gated by
/// hs backward (shaders/recurrence.wgsl).
pub(crate) struct RecurrenceSpec<'a> {
    pub t: usize,
    pub b: usize,
    pub h: usize,
    pub backward: bool,
    /// A reverse-direction cell (see `CellLayout` in the model).
    pub reverse: bool,
    pub relu: bool,
    pub state: &'a wgpu::Buffer,
    pub w_hh: &'a wgpu::Buffer,
    /// hs, read in backward only.
    pub hs: Option<&'a wgpu::Buffer>,
    /// Per-row lengths (B floats) for a variable-length batch, and the aux buffer and
    /// offset (dL/dh_n in, or dL/dh0 out; see shaders/recurrence.wgsl).
    pub masked: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, usize)>,
    pub rows_per_wg: usize,
    pub shared_w: bool,
}

/// Largest H·H that `SHARED_W` can hold (MAX_SHARED in the WGSL).
pub(crate) const MAX_SHARED_W: usize = 4096;

/// What the gemm kernel applies to each output before storing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Epilogue {
    None,
    Tanh,
    Relu,
    /// Multiply by tanh'(G) = 1 - G^2, G the stored tanh outputs.
    TanhGrad,
    /// Multiply by relu'(G) = [G > 0].
    ReluGrad,
}

impl Epilogue {
    fn code(self) -> f64 {
        match self {
            Epilogue::None => 0.0,
            Epilogue::Tanh => 1.0,
            Epilogue::Relu => 2.0,
            Epilogue::TanhGrad => 3.0,
            Epilogue::ReluGrad => 4.0,
        }
    }
}

/// A strided view of a matrix inside a buffer: element (i, p) is at
/// `off + i * rs + p * cs` (in f32 elements).
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Operand<'a> {
    /// Row-major matrix with `cols` columns starting at `off`.
    pub fn rows(buf: &'a wgpu::Buffer, off: usize, cols: usize) -> Self {
        Operand {
            buf,
            off,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns starting at `off`.
    pub fn transposed(buf: &'a wgpu::Buffer, off: usize, cols: usize) -> Self {
        Operand {
            buf,
            off,
            rs: 1,
            cs: cols,
        }
    }
}

/// C (M,N) = epilogue(A (M,K) · B (K,N) + bias (N) [+ C]). C is row-major with row
/// stride `c.rs`; G, if any, is read with C's layout at its own offset.
pub(crate) struct GemmSpec<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: Operand<'a>,
    pub bias: Option<(&'a wgpu::Buffer, usize)>,
    pub g: Option<(&'a wgpu::Buffer, usize)>,
    pub accumulate: bool,
    pub epilogue: Epilogue,
}

/// out (cols) = column sums of x (rows, cols), row-major at `x_off`.
pub(crate) struct ColSumSpec<'a> {
    pub rows: usize,
    pub cols: usize,
    pub x: (&'a wgpu::Buffer, usize),
    pub out: (&'a wgpu::Buffer, usize),
}

/// Shader modules, layouts and compiled pipelines for one device.
pub(crate) struct Kernels {
    modules: HashMap<
        Module,
        (
            wgpu::ShaderModule,
            wgpu::BindGroupLayout,
            wgpu::PipelineLayout,
        ),
    >,
    /// Bound where a kernel's optional input (bias, G) is unused.
    dummy: wgpu::Buffer,
    /// The same for an unused read-write binding.
    dummy_rw: wgpu::Buffer,
    pipelines: Mutex<HashMap<Kernel, wgpu::ComputePipeline>>,
    pub gemm_wg: GemmWorkgroup,
}

fn layout_entry(binding: u32, ty: wgpu::BufferBindingType, min: u64) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: binding == 0,
            min_binding_size: wgpu::BufferSize::new(min),
        },
        count: None,
    }
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        let modules = Module::ALL
            .into_iter()
            .map(|m| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&format!("{m:?}")),
                    source: wgpu::ShaderSource::Wgsl(m.source().into()),
                });
                let mut entries = vec![layout_entry(
                    0,
                    wgpu::BufferBindingType::Uniform,
                    m.params_size(),
                )];
                entries.extend(m.storage().iter().enumerate().map(|(i, &read_only)| {
                    layout_entry(
                        i as u32 + 1,
                        wgpu::BufferBindingType::Storage { read_only },
                        0,
                    )
                }));
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(&format!("{m:?}")),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (m, (module, bgl, pl))
            })
            .collect();
        let unused = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 64,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Kernels {
            modules,
            dummy: unused("unused input"),
            dummy_rw: unused("unused output"),
            pipelines: Mutex::new(HashMap::new()),
            gemm_wg: GemmWorkgroup::for_device(&device.limits()),
        }
    }

    fn pipeline(&self, gpu: &Gpu, kernel: Kernel) -> Result<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&kernel) {
            return Ok(p.clone());
        }
        let (module, _, layout) = &self.modules[&kernel.module()];
        let constants = kernel.constants();
        let pipeline = gpu.scoped("compiling a compute pipeline", || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry()),
                    layout: Some(layout),
                    module,
                    entry_point: Some(kernel.entry()),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        cache.insert(kernel, pipeline.clone());
        Ok(pipeline)
    }
}

struct Op {
    section: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: usize,
    offset: u32,
    groups: [u32; 3],
}

#[derive(Clone, PartialEq, Eq)]
struct BindGroupKey {
    module: Module,
    buffers: Vec<wgpu::Buffer>,
}

/// Collects dispatches; [`PlanBuilder::finish`] writes all parameters into one uniform
/// buffer (one aligned slot per dispatch, selected by dynamic offset) and creates one
/// bind group per distinct set of buffers.
pub(crate) struct PlanBuilder<'g> {
    gpu: &'g Gpu,
    section: &'static str,
    align: usize,
    params: Vec<u8>,
    ops: Vec<Op>,
    bind_groups: Vec<BindGroupKey>,
}

/// A recorded-once, replayed-many sequence of dispatches.
pub(crate) struct Plan {
    ops: Vec<Op>,
    bind_groups: Vec<wgpu::BindGroup>,
    _params: (wgpu::Buffer, super::MemTicket),
}

fn to_u32(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::TooLarge {
        what,
        value: v as u64,
        limit: u32::MAX as u64,
        why: "kernels index with 32-bit integers",
    })
}

impl<'g> PlanBuilder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        let align = gpu.limits().min_uniform_buffer_offset_alignment.max(64) as usize;
        PlanBuilder {
            gpu,
            section: "",
            align,
            params: Vec::new(),
            ops: Vec::new(),
            bind_groups: Vec::new(),
        }
    }

    fn groups(&self, x: usize, y: usize) -> Result<[u32; 3]> {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension as usize;
        for v in [x, y] {
            if v > max {
                return Err(Error::TooLarge {
                    what: "workgroups in one dispatch dimension",
                    value: v as u64,
                    limit: max as u64,
                    why: "the device's max_compute_workgroups_per_dimension; use a smaller batch \
                          or sequence length",
                });
            }
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Names the dispatches added from now on, for [`Plan::record_profiled`].
    pub fn section(&mut self, name: &'static str) {
        self.section = name;
    }

    /// Workgroups covering `n` items of a one-dimensional kernel, folded into a second
    /// dimension past the per-dimension limit (the kernel recombines them).
    fn groups_1d(&self, n: usize) -> Result<[u32; 3]> {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension as usize;
        let total = n.div_ceil(WG as usize);
        self.groups(total.min(max), total.div_ceil(max))
    }

    /// Adds one dispatch of `kernel` with uniform `params` over `buffers` (bindings 1..,
    /// `None` for an unused optional input).
    fn push(
        &mut self,
        kernel: Kernel,
        params: &[u8],
        buffers: &[Option<&wgpu::Buffer>],
        groups: [u32; 3],
    ) -> Result<()> {
        let kernels = self.gpu.kernels();
        let pipeline = kernels.pipeline(self.gpu, kernel)?;
        let key = BindGroupKey {
            module: kernel.module(),
            // An unused read-write binding gets a buffer of its own: one buffer may not be
            // bound read-only and read-write in one dispatch.
            buffers: buffers
                .iter()
                .zip(kernel.module().storage())
                .map(|(b, &read_only)| {
                    b.unwrap_or(if read_only {
                        &kernels.dummy
                    } else {
                        &kernels.dummy_rw
                    })
                    .clone()
                })
                .collect(),
        };
        let bind_group = match self.bind_groups.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                self.bind_groups.push(key);
                self.bind_groups.len() - 1
            }
        };
        let offset = self.params.len();
        self.params.extend_from_slice(params);
        self.params.resize(offset + self.align, 0);
        self.ops.push(Op {
            section: self.section,
            pipeline,
            bind_group,
            offset: to_u32("uniform parameter offset", offset)?,
            groups,
        });
        Ok(())
    }

    pub fn gemm(&mut self, s: GemmSpec<'_>) -> Result<()> {
        if s.m == 0 || s.n == 0 {
            return Ok(());
        }
        let p = GemmParams {
            m: to_u32("gemm rows", s.m)?,
            n: to_u32("gemm columns", s.n)?,
            k: to_u32("gemm inner size", s.k)?,
            bias_off: to_u32("offset", s.bias.map_or(0, |b| b.1))?,
            a_off: to_u32("offset", s.a.off)?,
            a_rs: to_u32("stride", s.a.rs)?,
            a_cs: to_u32("stride", s.a.cs)?,
            g_off: to_u32("offset", s.g.map_or(0, |g| g.1))?,
            b_off: to_u32("offset", s.b.off)?,
            b_rs: to_u32("stride", s.b.rs)?,
            b_cs: to_u32("stride", s.b.cs)?,
            c_off: to_u32("offset", s.c.off)?,
            c_rs: to_u32("stride", s.c.rs)?,
            ..Zeroable::zeroed()
        };
        let wg = self.gpu.kernels().gemm_wg;
        let kernel = Kernel::Gemm {
            wg,
            bias: s.bias.is_some(),
            accumulate: s.accumulate,
            epilogue: s.epilogue,
        };
        let groups = self.groups(
            s.n.div_ceil((TILE * wg.x) as usize),
            s.m.div_ceil((TILE * wg.y) as usize),
        )?;
        let buffers = [
            Some(s.a.buf),
            Some(s.b.buf),
            Some(s.c.buf),
            s.bias.map(|b| b.0),
            s.g.map(|g| g.0),
        ];
        self.push(kernel, bytemuck::bytes_of(&p), &buffers, groups)
    }

    pub fn recurrence(&mut self, s: RecurrenceSpec<'_>) -> Result<()> {
        if s.t == 0 || s.b == 0 {
            return Ok(());
        }
        let rows_per_wg = s.rows_per_wg.clamp(1, s.b);
        let p = SeqParams {
            t: to_u32("sequence length", s.t)?,
            b: to_u32("batch", s.b)?,
            h: to_u32("hidden size", s.h)?,
            rows_per_wg: to_u32("rows per workgroup", rows_per_wg)?,
            aux_off: to_u32("offset", s.masked.map_or(0, |m| m.2))?,
            _pad: [0; 3],
        };
        let kernel = Kernel::Recurrence {
            backward: s.backward,
            reverse: s.reverse,
            relu: s.relu,
            tile_rows: if rows_per_wg >= 4 { 4 } else { 1 },
            shared_w: s.shared_w && s.h * s.h <= MAX_SHARED_W,
            masked: s.masked.is_some(),
        };
        let groups = self.groups(s.b.div_ceil(rows_per_wg), 1)?;
        self.push(
            kernel,
            bytemuck::bytes_of(&p),
            &[
                Some(s.state),
                Some(s.w_hh),
                s.hs,
                s.masked.map(|m| m.0),
                s.masked.map(|m| m.1),
            ],
            groups,
        )
    }

    /// Zeros the rows of x (T, B, cols) past each batch row's length (B floats).
    pub fn mask_rows(
        &mut self,
        x: &wgpu::Buffer,
        (t, b, cols): (usize, usize, usize),
        lengths: &wgpu::Buffer,
    ) -> Result<()> {
        let p = SeqParams {
            t: to_u32("sequence length", t)?,
            b: to_u32("batch", b)?,
            h: to_u32("columns", cols)?,
            rows_per_wg: 0,
            aux_off: 0,
            _pad: [0; 3],
        };
        to_u32("values", t * b * cols)?;
        let groups = self.groups_1d(t * b * cols)?;
        self.push(
            Kernel::MaskRows,
            bytemuck::bytes_of(&p),
            &[Some(x), None, None, Some(lengths), None],
            groups,
        )
    }

    pub fn col_sum(&mut self, s: ColSumSpec<'_>) -> Result<()> {
        if s.cols == 0 {
            return Ok(());
        }
        let p = RowParams {
            rows: to_u32("column-sum rows", s.rows)?,
            cols: to_u32("column-sum columns", s.cols)?,
            in_off: to_u32("offset", s.x.1)?,
            out_off: to_u32("offset", s.out.1)?,
        };
        let groups = self.groups(s.cols.div_ceil(WG as usize), 1)?;
        self.push(
            Kernel::ColSum,
            bytemuck::bytes_of(&p),
            &[Some(s.x.0), Some(s.out.0)],
            groups,
        )
    }

    /// out[slot] = sum of squares of the first `n` values of x (one workgroup).
    pub fn sum_squares(
        &mut self,
        x: &wgpu::Buffer,
        n: usize,
        out: &wgpu::Buffer,
        slot: usize,
    ) -> Result<()> {
        let p = RowParams {
            rows: to_u32("values", n)?,
            cols: 1,
            in_off: 0,
            out_off: to_u32("offset", slot)?,
        };
        self.push(
            Kernel::SumSquares,
            bytemuck::bytes_of(&p),
            &[Some(x), Some(out)],
            [1, 1, 1],
        )
    }

    /// A loss over y (rows, cols) writing dy and the per-row losses; `buffers` are
    /// y, target, weight, scale, dy, row_loss as in shaders/loss.wgsl.
    pub fn loss(
        &mut self,
        kernel: Kernel,
        rows: usize,
        cols: usize,
        buffers: [&wgpu::Buffer; 6],
    ) -> Result<()> {
        let p = RowParams {
            rows: to_u32("loss rows", rows)?,
            cols: to_u32("loss columns", cols)?,
            in_off: 0,
            out_off: 0,
        };
        let groups = self.groups(rows.div_ceil(WG as usize), 1)?;
        self.push(kernel, bytemuck::bytes_of(&p), &buffers.map(Some), groups)
    }

    /// The clip-and-update kernel over one parameter tensor of `n` values; `buffers` are
    /// param, grad, m, v, norm_parts (holding `parts` partial sums), hyper.
    pub fn update(
        &mut self,
        opt: OptKernel,
        n: usize,
        parts: usize,
        buffers: [&wgpu::Buffer; 6],
    ) -> Result<()> {
        let p = RowParams {
            rows: to_u32("parameter size", n)?,
            cols: to_u32("norm parts", parts)?,
            in_off: 0,
            out_off: 0,
        };
        let groups = self.groups_1d(n)?;
        self.push(
            Kernel::Update(opt),
            bytemuck::bytes_of(&p),
            &buffers.map(Some),
            groups,
        )
    }

    pub fn finish(self) -> Result<Plan> {
        let gpu = self.gpu;
        let kernels = gpu.kernels();
        let mut contents = self.params;
        if contents.is_empty() {
            contents.resize(self.align, 0);
        }
        let ticket = gpu.count_memory(contents.len() as u64);
        gpu.scoped("building a dispatch plan", || {
            let params = gpu
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("kernel parameters"),
                    contents: &contents,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let bind_groups = self
                .bind_groups
                .iter()
                .map(|key| {
                    let (_, layout, _) = &kernels.modules[&key.module];
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: 0,
                            size: wgpu::BufferSize::new(key.module.params_size()),
                        }),
                    }];
                    entries.extend(key.buffers.iter().enumerate().map(|(i, b)| {
                        wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: b.as_entire_binding(),
                        }
                    }));
                    gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout,
                        entries: &entries,
                    })
                })
                .collect();
            Plan {
                ops: self.ops,
                bind_groups,
                _params: (params, ticket),
            }
        })
    }
}

impl Plan {
    /// Records every dispatch into `pass`, in order.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for op in &self.ops {
            pass.set_pipeline(&op.pipeline);
            pass.set_bind_group(0, &self.bind_groups[op.bind_group], &[op.offset]);
            pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
        }
    }

    /// Records every dispatch in a compute pass of its own, timed by `profiler`.
    pub fn record_profiled(
        &self,
        enc: &mut wgpu::CommandEncoder,
        profiler: &mut Profiler,
    ) -> Result<()> {
        for op in &self.ops {
            let mut pass = profiler.pass(enc, op.section)?;
            pass.set_pipeline(&op.pipeline);
            pass.set_bind_group(0, &self.bind_groups[op.bind_group], &[op.offset]);
            pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
        }
        Ok(())
    }

    /// Number of dispatches one [`Plan::record`] makes.
    pub fn dispatches(&self) -> usize {
        self.ops.len()
    }
}

/// GPU time of dispatches, from timestamps written at the start and end of one compute
/// pass per dispatch (the adapter must offer `TIMESTAMP_QUERY`).
pub(crate) struct Profiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    sections: Vec<&'static str>,
    capacity: usize,
}

impl Profiler {
    /// Room for `dispatches` timed dispatches.
    pub fn new(gpu: &Gpu, dispatches: usize) -> Result<Self> {
        if !gpu
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Err(Error::Unsupported(
                "GPU timestamps (TIMESTAMP_QUERY): this adapter cannot profile dispatches",
            ));
        }
        let queries = dispatches * 2;
        if queries > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return Err(Error::TooLarge {
                what: "timed dispatches",
                value: dispatches as u64,
                limit: wgpu::QUERY_SET_MAX_QUERIES as u64 / 2,
                why: "timestamps in one query set; profile a shorter sequence",
            });
        }
        let bytes = (queries * 8) as u64;
        gpu.scoped("creating a profiler", || Profiler {
            query_set: gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dispatch timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries as u32,
            }),
            resolve: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            sections: Vec::new(),
            capacity: dispatches,
        })
    }

    fn pass<'e>(
        &mut self,
        enc: &'e mut wgpu::CommandEncoder,
        section: &'static str,
    ) -> Result<wgpu::ComputePass<'e>> {
        let i = self.sections.len();
        if i >= self.capacity {
            return Err(Error::TooLarge {
                what: "timed dispatches",
                value: i as u64 + 1,
                limit: self.capacity as u64,
                why: "the profiler's capacity",
            });
        }
        self.sections.push(section);
        Ok(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(section),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.query_set,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        }))
    }

    /// Resolves the timestamps into `enc`; call [`Profiler::read`] after submitting it.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = 2 * self.sections.len() as u32;
        if n > 0 {
            enc.resolve_query_set(&self.query_set, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, n as u64 * 8);
        }
    }

    /// Milliseconds per section, summed over its dispatches, in order of first use.
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<(&'static str, f64)>> {
        if self.sections.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = pollster::block_on(gpu.read_mapped_bytes(&self.readback))?;
        // A Vec<u8> need not be 8-byte aligned: copy into u64s.
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let period_ns = gpu.queue().get_timestamp_period() as f64;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (i, &section) in self.sections.iter().enumerate() {
            let ms = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6;
            match out.iter_mut().find(|(s, _)| *s == section) {
                Some(entry) => entry.1 += ms,
                None => out.push((section, ms)),
            }
        }
        Ok(out)
    }
}
