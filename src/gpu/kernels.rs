//! The kernel table's machinery: a [`KernelDef`] per WGSL entry point (source, entry,
//! bindings, uniform type, generated constants), the per-device cache of shader modules,
//! bind group layouts and pipelines (keyed by entry point and override constants), and the
//! records of the generic matrix kernels (products, reductions, row masks). The kernels of
//! the layers above sit with what they compute: the recurrence with the model
//! (`model::kernels`), the losses and the optimizer update with training, CTC with `ctc`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Gpu;
use crate::error::Result;

/// Shared by every kernel (tanh and the logistic function without overflow, folded
/// indices); prepended to each source.
pub(crate) const COMMON: &str = include_str!("../../shaders/common.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
const GEMM_COMMON: &str = include_str!("../../shaders/gemm_common.wgsl");

/// The most storage buffers a kernel binds: WebGPU's default
/// `max_storage_buffers_per_shader_stage`, which every device offers (tested for every
/// kernel).
pub(crate) const MAX_STORAGE_BINDINGS: u32 = 8;

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

pub(crate) use Access::{Read, ReadWrite};

/// A `#[repr(C)]` mirror of a WGSL `struct`: its name there and its fields in order, as
/// `wgsl_struct!` declares them (a test compares them with the WGSL source).
pub(crate) trait WgslStruct: bytemuck::Pod {
    const NAME: &'static str;
    /// (field, type) in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// The layout of a uniform struct, for a [`KernelDef`].
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct StructLayout {
    pub name: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
    pub size: u64,
}

impl StructLayout {
    pub const fn of<T: WgslStruct>() -> Self {
        StructLayout {
            name: T::NAME,
            fields: T::FIELDS,
            size: std::mem::size_of::<T>() as u64,
        }
    }
}

/// Declares a `#[repr(C)]` Pod struct of u32/f32 fields that mirrors the WGSL struct
/// named by the string, with its [`WgslStruct`] description.
macro_rules! wgsl_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident = $wgsl:literal {
        $($field:ident: $ty:ident),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $(pub $field: $ty),*
        }

        impl $crate::gpu::WgslStruct for $name {
            const NAME: &'static str = $wgsl;
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}
pub(crate) use wgsl_struct;

/// One WGSL entry point.
#[derive(Debug)]
pub(crate) struct KernelDef {
    /// The entry point's name (unique among the kernels).
    pub entry: &'static str,
    /// Its file; the shared prelude files in `prelude` are prepended.
    pub source: &'static str,
    pub prelude: &'static [&'static str],
    /// WGSL `const` declarations generated from the Rust definitions the kernel shares
    /// (cell and optimizer ids, caps, epsilons), prepended before the prelude.
    pub consts: fn() -> String,
    /// Storage bindings 1.. in order (binding 0 is the uniform).
    pub bindings: &'static [Access],
    /// The uniform (the `#[repr(C)]` mirror of the WGSL struct bound as `p`).
    pub uniform: StructLayout,
    /// Device features the kernel needs; it runs only where they are enabled.
    pub requires: wgpu::Features,
    /// Bytes of immediate data (`var<immediate>`), 0 for none.
    pub immediate_size: u32,
}

/// [`KernelDef::consts`] of a kernel that shares no numbers with Rust.
pub(crate) fn no_consts() -> String {
    String::new()
}

impl KernelDef {
    /// Unique among the kernels (one entry point may have an immediates twin).
    fn key(&self) -> (&'static str, u32) {
        (self.entry, self.immediate_size)
    }

    /// The source the device compiles: generated constants, prelude, file.
    pub(crate) fn full_source(&self) -> String {
        let mut s = (self.consts)();
        s.push_str(&self.prelude.concat());
        s.push_str(self.source);
        s
    }
}

/// `const NAME: u32 = value;` for the generated part of a kernel's source.
pub(crate) fn wgsl_u32(name: &str, value: u32) -> String {
    format!("const {name}: u32 = {value}u;\n")
}

/// A row or column of the gemm kernels' register tile is one vec4, so the tile is 4 x 4
/// values (the host's workgroup arithmetic uses the same constant).
fn gemm_consts() -> String {
    wgsl_u32("TILE", super::tuning::GEMM_TILE)
}

/// C (M,N) = A (M,K) · B (K,N) + bias (N) [+ C] over strided views, a 4x4 register tile
/// per invocation (shaders/gemm.wgsl).
pub(crate) const GEMM: KernelDef = KernelDef {
    entry: "gemm",
    source: include_str!("../../shaders/gemm.wgsl"),
    prelude: &[COMMON, GEMM_COMMON],
    consts: gemm_consts,
    bindings: &[Read, Read, ReadWrite, Read],
    uniform: StructLayout::of::<GemmUniform>(),
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
    consts: no_consts,
    bindings: &[Read, ReadWrite],
    uniform: StructLayout::of::<ReduceUniform>(),
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
    consts: no_consts,
    bindings: &[ReadWrite, Read],
    uniform: StructLayout::of::<MaskUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The kernels of this layer (the whole table is gathered for the tests in
/// `crate::kernel_table`).
#[cfg(test)]
pub(crate) const KERNELS: &[&KernelDef] = &[
    &GEMM,
    &GEMM_TILED,
    &GEMM_SPLIT_SUM,
    &COL_SUM,
    &SUM_SQUARES,
    &SUM_SQUARES_SUBGROUP,
    &MASK_ROWS,
];

wgsl_struct! {
    /// The strided product's sizes, views and split (shaders/gemm_common.wgsl).
    pub(crate) struct GemmUniform = "Gemm" {
        m: u32, n: u32, k: u32, bias_off: u32,
        a_off: u32, a_rs: u32, a_cs: u32, k_split: u32,
        b_off: u32, b_rs: u32, b_cs: u32, splits: u32,
        c_off: u32, c_rs: u32, _pad0: u32, _pad1: u32,
    }
}

wgsl_struct! {
    /// Shapes and offsets of the reductions (shaders/reduce.wgsl).
    pub(crate) struct ReduceUniform = "Reduce" {
        rows: u32, cols: u32, in_off: u32, out_off: u32,
    }
}

wgsl_struct! {
    /// Shape of the masked rows (shaders/mask.wgsl).
    pub(crate) struct MaskUniform = "Mask" {
        t: u32, b: u32, cols: u32, _pad0: u32,
    }
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

/// A kernel's shader module, bind group layout and pipeline layout.
struct Compiled {
    module: wgpu::ShaderModule,
    bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

/// Shader modules, layouts and pipelines for one device, each made on first use.
pub(crate) struct Kernels {
    compiled: Mutex<HashMap<(&'static str, u32), std::sync::Arc<Compiled>>>,
    /// Bound where a kernel's optional input is unused.
    pub(crate) unused_read: wgpu::Buffer,
    /// The same for an unused read-write binding.
    pub(crate) unused_write: wgpu::Buffer,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    features: wgpu::Features,
    pub gemm: super::GemmTuning,
    /// Batch rows per workgroup of the stepwise recurrence (16 or 4).
    pub stepwise_rows: usize,
    /// Whether the forward recurrence runs its subgroup kernel.
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
        let unused = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 64,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Kernels {
            compiled: Mutex::new(HashMap::new()),
            unused_read: unused("unused input"),
            unused_write: unused("unused output"),
            pipelines: Mutex::new(HashMap::new()),
            features: device.features(),
            gemm,
            stepwise_rows,
            subgroup_recurrence: false,
        }
    }

    /// Whether `def` can run on this device (its features are enabled).
    pub fn has(&self, def: &KernelDef) -> bool {
        self.features.contains(def.requires)
    }

    /// `def`'s module and layouts, compiled on first use.
    fn compiled(&self, gpu: &Gpu, def: &'static KernelDef) -> Result<std::sync::Arc<Compiled>> {
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&def.key()) {
            return Ok(c.clone());
        }
        let device = gpu.device();
        let compiled = gpu.scoped("compiling the WGSL kernels", || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(def.entry),
                source: wgpu::ShaderSource::Wgsl(def.full_source().into()),
            });
            let mut entries = vec![layout_entry(
                0,
                wgpu::BufferBindingType::Uniform,
                def.uniform.size,
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
            let bind_group_layout =
                device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(def.entry),
                    entries: &entries,
                });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(def.entry),
                bind_group_layouts: &[Some(&bind_group_layout)],
                immediate_size: def.immediate_size,
            });
            Compiled {
                module,
                bind_group_layout,
                pipeline_layout,
            }
        })?;
        let compiled = std::sync::Arc::new(compiled);
        cache.insert(def.key(), compiled.clone());
        Ok(compiled)
    }

    pub fn bind_group_layout(
        &self,
        gpu: &Gpu,
        def: &'static KernelDef,
    ) -> Result<wgpu::BindGroupLayout> {
        Ok(self.compiled(gpu, def)?.bind_group_layout.clone())
    }

    pub fn pipeline(&self, gpu: &Gpu, kernel: &Kernel) -> Result<wgpu::ComputePipeline> {
        let key = kernel.key();
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let compiled = self.compiled(gpu, kernel.def)?;
        let pipeline = gpu.scoped("compiling a compute pipeline", || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.def.entry),
                    layout: Some(&compiled.pipeline_layout),
                    module: &compiled.module,
                    entry_point: Some(kernel.def.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &kernel.constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
