//! The kernel table: one [`KernelDef`] per WGSL entry point (source, entry, bindings,
//! uniform type), and the per-device cache of shader modules, bind group layouts and
//! pipelines (keyed by entry point and override constants).

use std::collections::HashMap;
use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use super::Gpu;
use crate::error::Result;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const CELL: &str = include_str!("../../shaders/cell.wgsl");
const RECURRENCE: &str = include_str!("../../shaders/recurrence.wgsl");
const RECURRENCE_FORWARD_COMMON: &str =
    include_str!("../../shaders/recurrence_forward_common.wgsl");
const FIRST_UNIFORM: &str = include_str!("../../shaders/first_uniform.wgsl");
const FIRST_IMMEDIATE: &str = include_str!("../../shaders/first_immediate.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

use Access::{Read, ReadWrite};

/// One WGSL entry point.
#[derive(Debug)]
pub(crate) struct KernelDef {
    /// The entry point's name (unique in the table).
    pub entry: &'static str,
    /// Its file; the shared prelude files in `prelude` are prepended.
    pub source: &'static str,
    pub prelude: &'static [&'static str],
    /// Storage bindings 1.. in order (binding 0 is the uniform).
    pub bindings: &'static [Access],
    /// Size of the uniform (the `#[repr(C)]` mirror of the WGSL struct).
    pub uniform_size: u64,
    /// Device features the kernel needs; it is only compiled where they are enabled.
    pub requires: wgpu::Features,
    /// Bytes of immediate data (`var<immediate>`), 0 for none.
    pub immediate_size: u32,
}

impl KernelDef {
    /// Unique among the table's records (one entry point may have an immediates twin).
    fn key(&self) -> (&'static str, u32) {
        (self.entry, self.immediate_size)
    }
}

impl KernelDef {
    fn full_source(&self) -> String {
        let mut s: String = self.prelude.concat();
        s.push_str(self.source);
        s
    }
}

const fn size<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}

const GEMM_COMMON: &str = include_str!("../../shaders/gemm_common.wgsl");

/// C (M,N) = A (M,K) · B (K,N) + bias (N) [+ C] over strided views, a 4x4 register tile
/// per invocation (shaders/gemm.wgsl).
pub(crate) const GEMM: KernelDef = KernelDef {
    entry: "gemm",
    source: include_str!("../../shaders/gemm.wgsl"),
    prelude: &[COMMON, GEMM_COMMON],
    bindings: &[Read, Read, ReadWrite, Read],
    uniform_size: size::<GemmUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The same product with workgroup-memory tiles (shaders/gemm_tiled.wgsl); with `SPLIT`,
/// one partial per workgroup z into a scratch buffer bound as C.
pub(crate) const GEMM_TILED: KernelDef = KernelDef {
    entry: "gemm_tiled",
    source: include_str!("../../shaders/gemm_tiled.wgsl"),
    // a, b, c, bias, then a and b again as vec4s.
    bindings: &[Read, Read, ReadWrite, Read, Read, Read],
    ..GEMM
};

/// Sums split-K partials (bound as A) into C with the epilogue (shaders/gemm_tiled.wgsl;
/// bound like [`GEMM_TILED`], the vec4 views unused).
pub(crate) const GEMM_SPLIT_SUM: KernelDef = KernelDef {
    entry: "gemm_split_sum",
    ..GEMM_TILED
};

/// Column sums of a row-major matrix (shaders/reduce.wgsl).
pub(crate) const COL_SUM: KernelDef = KernelDef {
    entry: "col_sum",
    source: REDUCE,
    prelude: &[COMMON],
    bindings: &[Read, ReadWrite],
    uniform_size: size::<ReduceUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// Sum of squares of a vector, by one workgroup (shaders/reduce.wgsl).
pub(crate) const SUM_SQUARES: KernelDef = KernelDef {
    entry: "sum_squares",
    ..COL_SUM
};

/// [`SUM_SQUARES`] with subgroup sums (shaders/reduce_subgroup.wgsl).
pub(crate) const SUM_SQUARES_SUBGROUP: KernelDef = KernelDef {
    entry: "sum_squares_subgroup",
    source: include_str!("../../shaders/reduce_subgroup.wgsl"),
    prelude: &[COMMON, REDUCE],
    requires: wgpu::Features::SUBGROUP,
    ..COL_SUM
};

/// Zeros rows past each batch row's length (shaders/mask.wgsl).
pub(crate) const MASK_ROWS: KernelDef = KernelDef {
    entry: "mask_rows",
    source: include_str!("../../shaders/mask.wgsl"),
    prelude: &[COMMON],
    bindings: &[ReadWrite, Read],
    uniform_size: size::<MaskUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// A cell's forward recurrence (shaders/recurrence_forward.wgsl): pre, W_hh, b_hh,
/// states, saved, lengths.
pub(crate) const RECURRENCE_FORWARD: KernelDef = KernelDef {
    entry: "recurrence_forward",
    source: include_str!("../../shaders/recurrence_forward.wgsl"),
    prelude: &[
        COMMON,
        CELL,
        RECURRENCE,
        FIRST_UNIFORM,
        RECURRENCE_FORWARD_COMMON,
    ],
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite, Read],
    uniform_size: size::<SeqUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// A cell's backward recurrence (shaders/recurrence_backward.wgsl): dp, W_hh, dr, states,
/// saved, lengths, dh_above, carry.
pub(crate) const RECURRENCE_BACKWARD: KernelDef = KernelDef {
    entry: "recurrence_backward",
    source: include_str!("../../shaders/recurrence_backward.wgsl"),
    prelude: &[COMMON, CELL, RECURRENCE, FIRST_UNIFORM],
    bindings: &[
        ReadWrite, Read, ReadWrite, Read, Read, Read, Read, ReadWrite,
    ],
    uniform_size: size::<SeqUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The forward recurrence's prelude with the first iteration read from an immediate.
const FORWARD_IMMEDIATE_PRELUDE: &[&str] = &[
    COMMON,
    CELL,
    RECURRENCE,
    FIRST_IMMEDIATE,
    RECURRENCE_FORWARD_COMMON,
];

/// [`RECURRENCE_FORWARD`] taking its first iteration from an immediate, so that the
/// stepwise path changes only that between steps.
pub(crate) const RECURRENCE_FORWARD_IMMEDIATE: KernelDef = KernelDef {
    prelude: FORWARD_IMMEDIATE_PRELUDE,
    requires: wgpu::Features::IMMEDIATES,
    immediate_size: 4,
    ..RECURRENCE_FORWARD
};

/// [`RECURRENCE_FORWARD`] with subgroup operations
/// (shaders/recurrence_forward_subgroup.wgsl): a subgroup's lanes split each unit's dot
/// products along k, so that neighbouring invocations read neighbouring weights.
pub(crate) const RECURRENCE_FORWARD_SUBGROUP: KernelDef = KernelDef {
    entry: "recurrence_forward_subgroup",
    source: include_str!("../../shaders/recurrence_forward_subgroup.wgsl"),
    requires: wgpu::Features::SUBGROUP,
    ..RECURRENCE_FORWARD
};

/// [`RECURRENCE_FORWARD_SUBGROUP`] taking its first iteration from an immediate.
pub(crate) const RECURRENCE_FORWARD_SUBGROUP_IMMEDIATE: KernelDef = KernelDef {
    prelude: FORWARD_IMMEDIATE_PRELUDE,
    requires: wgpu::Features::SUBGROUP.union(wgpu::Features::IMMEDIATES),
    immediate_size: 4,
    ..RECURRENCE_FORWARD_SUBGROUP
};

/// [`RECURRENCE_BACKWARD`] likewise.
pub(crate) const RECURRENCE_BACKWARD_IMMEDIATE: KernelDef = KernelDef {
    prelude: &[COMMON, CELL, RECURRENCE, FIRST_IMMEDIATE],
    requires: wgpu::Features::IMMEDIATES,
    immediate_size: 4,
    ..RECURRENCE_BACKWARD
};

/// Softmax cross-entropy rows (shaders/loss.wgsl): y, target, weight, scale, dy, row_loss.
pub(crate) const SOFTMAX_XENT: KernelDef = KernelDef {
    entry: "softmax_xent",
    source: include_str!("../../shaders/loss.wgsl"),
    prelude: &[COMMON],
    bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite],
    uniform_size: size::<RowsUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// Squared-error rows (shaders/loss.wgsl), bound like [`SOFTMAX_XENT`].
pub(crate) const MSE: KernelDef = KernelDef {
    entry: "mse",
    ..SOFTMAX_XENT
};

/// CTC loss, one workgroup per batch row (shaders/ctc.wgsl): y, labels, rows, dy,
/// row_loss, work.
pub(crate) const CTC: KernelDef = KernelDef {
    entry: "ctc",
    source: include_str!("../../shaders/ctc.wgsl"),
    prelude: &[],
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
    uniform_size: size::<CtcUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// Clip and optimizer update of one tensor (shaders/optim.wgsl): param, grad, m, v,
/// norm_parts, hyper.
pub(crate) const UPDATE: KernelDef = KernelDef {
    entry: "update",
    source: include_str!("../../shaders/optim.wgsl"),
    prelude: &[COMMON],
    bindings: &[ReadWrite, Read, ReadWrite, ReadWrite, Read, Read],
    uniform_size: size::<UpdateUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// Every kernel, for the device check and for compiling them all up front.
pub(crate) const ALL: [&KernelDef; 17] = [
    &GEMM,
    &GEMM_TILED,
    &GEMM_SPLIT_SUM,
    &COL_SUM,
    &SUM_SQUARES,
    &SUM_SQUARES_SUBGROUP,
    &MASK_ROWS,
    &RECURRENCE_FORWARD,
    &RECURRENCE_BACKWARD,
    &RECURRENCE_FORWARD_IMMEDIATE,
    &RECURRENCE_BACKWARD_IMMEDIATE,
    &RECURRENCE_FORWARD_SUBGROUP,
    &RECURRENCE_FORWARD_SUBGROUP_IMMEDIATE,
    &SOFTMAX_XENT,
    &MSE,
    &CTC,
    &UPDATE,
];

/// The most storage buffers any kernel binds.
pub(crate) fn max_storage_bindings() -> usize {
    ALL.iter().map(|k| k.bindings.len()).max().unwrap_or(0)
}

/// Mirrors `struct Gemm` in shaders/gemm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct GemmUniform {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub bias_off: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub k_split: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub splits: u32,
    pub c_off: u32,
    pub c_rs: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Mirrors `struct Reduce` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct ReduceUniform {
    pub rows: u32,
    pub cols: u32,
    pub in_off: u32,
    pub out_off: u32,
}

/// Mirrors `struct Mask` in shaders/mask.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct MaskUniform {
    pub t: u32,
    pub b: u32,
    pub cols: u32,
    pub _pad0: u32,
}

/// Mirrors `struct Seq` in shaders/recurrence.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct SeqUniform {
    pub t: u32,
    pub b: u32,
    pub h: u32,
    pub rows_per_wg: u32,
    pub units_per_wg: u32,
    pub first: u32,
    pub steps: u32,
    pub state_c: u32,
    pub carry: u32,
    pub carry_c: u32,
    pub w_off: u32,
    pub b_off: u32,
}

/// Mirrors `struct Rows` in shaders/loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct RowsUniform {
    pub rows: u32,
    pub cols: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Mirrors `struct Ctc` in shaders/ctc.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct CtcUniform {
    pub t: u32,
    pub b: u32,
    pub c: u32,
    pub u_cap: u32,
    pub blank: u32,
    pub zero_infinity: u32,
    pub inf_bits: u32,
    pub nan_bits: u32,
}

/// Mirrors `struct Update` in shaders/optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct UpdateUniform {
    pub n: u32,
    pub parts: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// A kernel with its override constants: what one pipeline is built from.
#[derive(Clone, Debug)]
pub(crate) struct Kernel {
    pub def: &'static KernelDef,
    pub constants: Vec<(&'static str, f64)>,
}

impl Kernel {
    pub fn new(def: &'static KernelDef) -> Self {
        Kernel {
            def,
            constants: Vec::new(),
        }
    }

    /// Adds an override constant (booleans as 0 or 1).
    pub fn with(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into()));
        self
    }

    fn key(&self) -> PipelineKey {
        (
            self.def.key(),
            self.constants
                .iter()
                .map(|(n, v)| (*n, v.to_bits()))
                .collect(),
        )
    }
}

type PipelineKey = ((&'static str, u32), Vec<(&'static str, u64)>);

/// Shader modules, layouts and compiled pipelines for one device.
pub(crate) struct Kernels {
    /// Per entry point: its module, bind group layout and pipeline layout.
    layouts: HashMap<
        (&'static str, u32),
        (
            wgpu::ShaderModule,
            wgpu::BindGroupLayout,
            wgpu::PipelineLayout,
        ),
    >,
    /// Bound where a kernel's optional input is unused.
    pub(crate) unused_read: wgpu::Buffer,
    /// The same for an unused read-write binding.
    pub(crate) unused_write: wgpu::Buffer,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    pub gemm: super::GemmTuning,
    /// Batch rows per workgroup of the stepwise recurrence (16 or 4).
    pub stepwise_rows: usize,
    /// Whether the forward recurrence runs [`RECURRENCE_FORWARD_SUBGROUP`].
    pub subgroup_recurrence: bool,
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
    pub fn new(device: &wgpu::Device, gemm: super::GemmTuning, stepwise_rows: usize) -> Self {
        let layouts = ALL
            .iter()
            .filter(|def| device.features().contains(def.requires))
            .map(|def| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(def.entry),
                    source: wgpu::ShaderSource::Wgsl(def.full_source().into()),
                });
                let mut entries = vec![layout_entry(
                    0,
                    wgpu::BufferBindingType::Uniform,
                    def.uniform_size,
                )];
                entries.extend(def.bindings.iter().enumerate().map(|(i, &access)| {
                    layout_entry(
                        i as u32 + 1,
                        wgpu::BufferBindingType::Storage {
                            read_only: access == Read,
                        },
                        0,
                    )
                }));
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(def.entry),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(def.entry),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: def.immediate_size,
                });
                (def.key(), (module, bgl, pl))
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
            layouts,
            unused_read: unused("unused input"),
            unused_write: unused("unused output"),
            pipelines: Mutex::new(HashMap::new()),
            gemm,
            stepwise_rows,
            subgroup_recurrence: false,
        }
    }

    /// Whether `def` was compiled for this device (its features are enabled).
    pub fn has(&self, def: &KernelDef) -> bool {
        self.layouts.contains_key(&def.key())
    }

    pub fn bind_group_layout(&self, def: &KernelDef) -> &wgpu::BindGroupLayout {
        &self.layouts[&def.key()].1
    }

    pub fn pipeline(&self, gpu: &Gpu, kernel: &Kernel) -> Result<wgpu::ComputePipeline> {
        let key = kernel.key();
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let (module, _, layout) = &self.layouts[&kernel.def.key()];
        let pipeline = gpu.scoped("compiling a compute pipeline", || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.def.entry),
                    layout: Some(layout),
                    module,
                    entry_point: Some(kernel.def.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &kernel.constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each uniform mirror has as many u32 fields as its WGSL struct, in a size the
    /// uniform address space accepts (a multiple of 16 bytes).
    #[test]
    fn uniform_mirrors_match_their_wgsl_structs() {
        for def in ALL {
            let src = def.full_source();
            let start = src.find("var<uniform> p: ").expect("a uniform named p") + 16;
            let name: String = src[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            let body_at = src.find(&format!("struct {name} {{")).expect("its struct");
            let body = &src[body_at..src[body_at..].find('}').unwrap() + body_at];
            let fields = body.matches(": u32").count() + body.matches(": f32").count();
            assert_eq!(
                fields as u64 * 4,
                def.uniform_size,
                "{}: struct {name} has {fields} fields",
                def.entry
            );
            assert_eq!(def.uniform_size % 16, 0, "{}", def.entry);
        }
    }

    #[test]
    fn every_entry_point_is_in_its_source() {
        for def in ALL {
            assert!(
                def.source.contains(&format!("fn {}(", def.entry)),
                "{}",
                def.entry
            );
            let bindings = def.full_source().matches("@binding(").count();
            assert_eq!(bindings, def.bindings.len() + 1, "{}", def.entry);
        }
    }
}
