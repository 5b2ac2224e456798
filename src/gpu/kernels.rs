//! WGSL kernels: sources, bind group layouts, the pipeline cache, and `Plan`s: sequences
//! of dispatches whose parameters and bind groups are built once per shape and then
//! replayed into any number of command encoders.

use std::collections::HashMap;
use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

const GEMM_WGSL: &str = include_str!("../../shaders/gemm.wgsl");
const REDUCE_WGSL: &str = include_str!("../../shaders/reduce.wgsl");

/// Each gemm invocation computes a TILE x TILE block of C (fixed in the WGSL).
const TILE: u32 = 4;
const GEMM_WG: (u32, u32) = (8, 8);
const COLSUM_WG: u32 = 64;

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

/// Mirrors `struct ColSum` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ColSumParams {
    rows: u32,
    cols: u32,
    in_off: u32,
    out_off: u32,
}

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

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum PipelineKey {
    Gemm {
        bias: bool,
        accumulate: bool,
        epilogue: Epilogue,
    },
    ColSum,
}

/// Shader modules, layouts and compiled pipelines for one device.
pub(crate) struct Kernels {
    gemm_module: wgpu::ShaderModule,
    reduce_module: wgpu::ShaderModule,
    gemm_layout: wgpu::BindGroupLayout,
    colsum_layout: wgpu::BindGroupLayout,
    gemm_pipeline_layout: wgpu::PipelineLayout,
    colsum_pipeline_layout: wgpu::PipelineLayout,
    /// Bound where a kernel's optional input (bias, G) is unused.
    dummy: wgpu::Buffer,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn params_entry<P>() -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<P>() as u64),
        },
        count: None,
    }
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = |label, source: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let layout = |label, entries: &[wgpu::BindGroupLayoutEntry]| {
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries,
            })
        };
        let gemm_layout = layout(
            "gemm",
            &[
                params_entry::<GemmParams>(),
                storage(1, false),
                storage(2, true),
                storage(3, false),
                storage(4, true),
                storage(5, true),
            ],
        );
        let colsum_layout = layout(
            "col_sum",
            &[
                params_entry::<ColSumParams>(),
                storage(1, true),
                storage(2, false),
            ],
        );
        let pipeline_layout = |bgl: &wgpu::BindGroupLayout| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(bgl)],
                immediate_size: 0,
            })
        };
        Kernels {
            gemm_module: module("gemm.wgsl", GEMM_WGSL),
            reduce_module: module("reduce.wgsl", REDUCE_WGSL),
            gemm_pipeline_layout: pipeline_layout(&gemm_layout),
            colsum_pipeline_layout: pipeline_layout(&colsum_layout),
            gemm_layout,
            colsum_layout,
            dummy: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unused input"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    fn pipeline(&self, gpu: &Gpu, key: PipelineKey) -> Result<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let (module, layout, entry, constants): (_, _, _, Vec<(&str, f64)>) = match key {
            PipelineKey::Gemm {
                bias,
                accumulate,
                epilogue,
            } => (
                &self.gemm_module,
                &self.gemm_pipeline_layout,
                "gemm",
                vec![
                    ("WG_X", GEMM_WG.0 as f64),
                    ("WG_Y", GEMM_WG.1 as f64),
                    ("HAS_BIAS", bias as u8 as f64),
                    ("ACCUMULATE", accumulate as u8 as f64),
                    ("EPILOGUE", epilogue.code()),
                ],
            ),
            PipelineKey::ColSum => (
                &self.reduce_module,
                &self.colsum_pipeline_layout,
                "col_sum",
                vec![("WG", COLSUM_WG as f64)],
            ),
        };
        let pipeline = gpu.scoped("compiling a compute pipeline", || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(layout),
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

struct Op {
    pipeline: wgpu::ComputePipeline,
    bind_group: usize,
    offset: u32,
    groups: [u32; 3],
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum BindGroupKey {
    Gemm([wgpu::Buffer; 5]),
    ColSum([wgpu::Buffer; 2]),
}

/// Collects dispatches; [`PlanBuilder::finish`] writes all parameters into one uniform
/// buffer (one aligned slot per dispatch, selected by dynamic offset) and creates one
/// bind group per distinct set of buffers.
pub(crate) struct PlanBuilder<'g> {
    gpu: &'g Gpu,
    align: usize,
    params: Vec<u8>,
    ops: Vec<Op>,
    bind_groups: Vec<BindGroupKey>,
}

/// A recorded-once, replayed-many sequence of dispatches.
pub(crate) struct Plan {
    ops: Vec<Op>,
    bind_groups: Vec<wgpu::BindGroup>,
    _params: wgpu::Buffer,
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
            align,
            params: Vec::new(),
            ops: Vec::new(),
            bind_groups: Vec::new(),
        }
    }

    fn push_params(&mut self, bytes: &[u8]) -> Result<u32> {
        let offset = self.params.len();
        self.params.extend_from_slice(bytes);
        self.params.resize(offset + self.align, 0);
        to_u32("uniform parameter offset", offset)
    }

    fn bind_group(&mut self, key: BindGroupKey) -> usize {
        match self.bind_groups.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                self.bind_groups.push(key);
                self.bind_groups.len() - 1
            }
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
        let kernels = self.gpu.kernels();
        let pipeline = kernels.pipeline(
            self.gpu,
            PipelineKey::Gemm {
                bias: s.bias.is_some(),
                accumulate: s.accumulate,
                epilogue: s.epilogue,
            },
        )?;
        let dummy = &kernels.dummy;
        let bind_group = self.bind_group(BindGroupKey::Gemm([
            s.a.buf.clone(),
            s.b.buf.clone(),
            s.c.buf.clone(),
            s.bias.map_or(dummy, |b| b.0).clone(),
            s.g.map_or(dummy, |g| g.0).clone(),
        ]));
        let groups = self.groups(
            s.n.div_ceil((TILE * GEMM_WG.0) as usize),
            s.m.div_ceil((TILE * GEMM_WG.1) as usize),
        )?;
        let offset = self.push_params(bytemuck::bytes_of(&p))?;
        self.ops.push(Op {
            pipeline,
            bind_group,
            offset,
            groups,
        });
        Ok(())
    }

    pub fn col_sum(&mut self, s: ColSumSpec<'_>) -> Result<()> {
        if s.cols == 0 {
            return Ok(());
        }
        let p = ColSumParams {
            rows: to_u32("column-sum rows", s.rows)?,
            cols: to_u32("column-sum columns", s.cols)?,
            in_off: to_u32("offset", s.x.1)?,
            out_off: to_u32("offset", s.out.1)?,
        };
        let pipeline = self.gpu.kernels().pipeline(self.gpu, PipelineKey::ColSum)?;
        let bind_group = self.bind_group(BindGroupKey::ColSum([s.x.0.clone(), s.out.0.clone()]));
        let groups = self.groups(s.cols.div_ceil(COLSUM_WG as usize), 1)?;
        let offset = self.push_params(bytemuck::bytes_of(&p))?;
        self.ops.push(Op {
            pipeline,
            bind_group,
            offset,
            groups,
        });
        Ok(())
    }

    pub fn finish(self) -> Result<Plan> {
        let gpu = self.gpu;
        let kernels = gpu.kernels();
        let mut contents = self.params;
        if contents.is_empty() {
            contents.resize(self.align, 0);
        }
        gpu.scoped("building a dispatch plan", || {
            let params = gpu
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("kernel parameters"),
                    contents: &contents,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let uniform = |size: usize| {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &params,
                    offset: 0,
                    size: wgpu::BufferSize::new(size as u64),
                })
            };
            let bind_groups =
                self.bind_groups
                    .iter()
                    .map(|key| {
                        let (layout, first, buffers): (_, _, &[wgpu::Buffer]) = match key {
                            BindGroupKey::Gemm(b) => (
                                &kernels.gemm_layout,
                                uniform(std::mem::size_of::<GemmParams>()),
                                b,
                            ),
                            BindGroupKey::ColSum(b) => (
                                &kernels.colsum_layout,
                                uniform(std::mem::size_of::<ColSumParams>()),
                                b,
                            ),
                        };
                        let mut entries = vec![wgpu::BindGroupEntry {
                            binding: 0,
                            resource: first,
                        }];
                        entries.extend(buffers.iter().enumerate().map(|(i, b)| {
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
                _params: params,
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

    /// Number of dispatches one [`Plan::record`] makes.
    pub fn dispatches(&self) -> usize {
        self.ops.len()
    }
}
