//! `Plan`s: sequences of dispatches whose uniforms and bind groups are built once per shape
//! and then replayed into any number of command encoders; and the generic matrix
//! operations (product, column sums, sums of squares, row masks) that models compose.

use bytemuck::Zeroable;
use wgpu::util::DeviceExt;

use super::kernels::{
    Access, GemmUniform, Kernel, KernelDef, MaskUniform, ReduceUniform, COL_SUM, GEMM,
    GEMM_SPLIT_SUM, GEMM_TILED, MASK_ROWS, SUM_SQUARES, SUM_SQUARES_SUBGROUP,
};
use super::profiler::Profiler;
use super::tuning::{GemmVariant, GEMM_TILE};
use super::{Gpu, GpuTensor};
use crate::error::{Error, Result};

/// Workgroup size of the one-dimensional kernels (a power of two: tree reductions).
pub(crate) const WG: u32 = 64;

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

    /// A row-major tensor with `cols` columns.
    pub fn tensor_rows(t: &'a GpuTensor, cols: usize) -> Self {
        Self::rows(t.buffer(), t.offset(), cols)
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

/// C (M,N) = A (M,K) · B (K,N) + bias (N) [+ C]. C is row-major with row stride `c.rs`.
pub(crate) struct GemmSpec<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: Operand<'a>,
    pub bias: Option<(&'a wgpu::Buffer, usize)>,
    pub accumulate: bool,
}

impl<'a> GemmSpec<'a> {
    /// C = A · B with no bias, overwriting C.
    pub fn new(
        m: usize,
        n: usize,
        k: usize,
        a: Operand<'a>,
        b: Operand<'a>,
        c: Operand<'a>,
    ) -> Self {
        GemmSpec {
            m,
            n,
            k,
            a,
            b,
            c,
            bias: None,
            accumulate: false,
        }
    }

    pub fn bias(mut self, bias: Option<&'a GpuTensor>) -> Self {
        self.bias = bias.map(|b| (b.buffer(), b.offset()));
        self
    }

    pub fn accumulate(mut self, accumulate: bool) -> Self {
        self.accumulate = accumulate;
        self
    }
}

#[derive(Clone)]
struct Op {
    section: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: usize,
    offset: u32,
    groups: [u32; 3],
    /// The kernel's immediate data (its first iteration), if it takes one.
    immediate: Option<u32>,
    /// Same pipeline, bind group and offset as the op before: recorded without setting
    /// them again.
    repeats_state: bool,
}

#[derive(Clone, PartialEq, Eq)]
struct BindGroupKey {
    def: (&'static str, u32),
    buffers: Vec<wgpu::Buffer>,
}

/// Collects dispatches; [`PlanBuilder::finish`] writes all uniforms into one buffer (one
/// aligned slot per dispatch, selected by dynamic offset) and creates one bind group per
/// distinct set of buffers.
pub(crate) struct PlanBuilder<'g> {
    gpu: &'g Gpu,
    section: &'static str,
    align: usize,
    uniforms: Vec<u8>,
    ops: Vec<Op>,
    bind_groups: Vec<(BindGroupKey, &'static KernelDef)>,
    scratch: Vec<(wgpu::Buffer, super::MemTicket)>,
}

/// A recorded-once, replayed-many sequence of dispatches.
pub(crate) struct Plan {
    ops: Vec<Op>,
    bind_groups: Vec<wgpu::BindGroup>,
    _uniforms: (wgpu::Buffer, super::MemTicket),
    _scratch: Vec<(wgpu::Buffer, super::MemTicket)>,
}

pub(crate) fn to_u32(what: &'static str, v: usize) -> Result<u32> {
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
            uniforms: Vec::new(),
            ops: Vec::new(),
            bind_groups: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A grid of x × y workgroups, refused past the device's per-dimension limit.
    pub fn groups(&self, x: usize, y: usize) -> Result<[u32; 3]> {
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

    /// Workgroups of [`WG`] covering `n` items of a one-dimensional kernel, folded into a
    /// second dimension past the per-dimension limit (the kernel recombines them).
    pub fn groups_1d(&self, n: usize) -> Result<[u32; 3]> {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension as usize;
        let total = n.div_ceil(WG as usize);
        self.groups(total.min(max), total.div_ceil(max))
    }

    /// Adds one dispatch of `kernel` with `uniform` over `buffers` (bindings 1.. in the
    /// order of its [`KernelDef::bindings`]; `None` for an unused one).
    pub fn push(
        &mut self,
        kernel: Kernel,
        uniform: &[u8],
        buffers: &[Option<&wgpu::Buffer>],
        groups: [u32; 3],
    ) -> Result<()> {
        let def = kernel.def;
        debug_assert_eq!(buffers.len(), def.bindings.len(), "{}", def.entry);
        debug_assert_eq!(uniform.len() as u64, def.uniform.size, "{}", def.entry);
        let kernels = self.gpu.kernels();
        let pipeline = kernels.pipeline(self.gpu, &kernel)?;
        let key = BindGroupKey {
            def: (def.entry, def.immediate_size),
            // An unused read-write binding gets a buffer of its own: one buffer may not be
            // bound read-only and read-write in one dispatch.
            buffers: buffers
                .iter()
                .zip(def.bindings)
                .map(|(b, &access)| {
                    b.unwrap_or(match access {
                        Access::Read => &kernels.unused_read,
                        Access::ReadWrite => &kernels.unused_write,
                    })
                    .clone()
                })
                .collect(),
        };
        let bind_group = match self.bind_groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.bind_groups.push((key, def));
                self.bind_groups.len() - 1
            }
        };
        let offset = self.uniforms.len();
        self.uniforms.extend_from_slice(uniform);
        self.uniforms.resize(offset + self.align, 0);
        self.ops.push(Op {
            section: self.section,
            pipeline,
            bind_group,
            offset: to_u32("uniform offset", offset)?,
            groups,
            immediate: None,
            repeats_state: false,
        });
        Ok(())
    }

    /// Whether the device compiled `def` (it has the features the kernel needs).
    pub fn has(&self, def: &KernelDef) -> bool {
        self.gpu.kernels().has(def)
    }

    /// Adds `steps` dispatches of a kernel that takes its first iteration as an immediate
    /// (`var<immediate>`): one uniform and bind group for all, then per step only the
    /// immediate changes.
    pub fn push_steps(
        &mut self,
        kernel: Kernel,
        uniform: &[u8],
        buffers: &[Option<&wgpu::Buffer>],
        groups: [u32; 3],
        steps: usize,
    ) -> Result<()> {
        debug_assert_eq!(kernel.def.immediate_size, 4, "{}", kernel.def.entry);
        if steps == 0 {
            return Ok(());
        }
        self.push(kernel, uniform, buffers, groups)?;
        let first = self.ops.len() - 1;
        self.ops[first].immediate = Some(0);
        for n in 1..steps {
            let op = Op {
                immediate: Some(to_u32("steps", n)?),
                repeats_state: true,
                ..self.ops[first].clone()
            };
            self.ops.push(op);
        }
        Ok(())
    }

    /// Adds C = A·B (+ bias) (+ C) with the device's gemm kernel: the register kernel, or
    /// the tiled one, which cuts a long K into pieces summed in a fixed order when the
    /// output has too few tiles to fill the device.
    pub fn gemm(&mut self, s: GemmSpec<'_>) -> Result<()> {
        if s.m == 0 || s.n == 0 {
            return Ok(());
        }
        let tuning = self.gpu.kernels().gemm;
        let u = GemmUniform {
            m: to_u32("gemm rows", s.m)?,
            n: to_u32("gemm columns", s.n)?,
            k: to_u32("gemm inner size", s.k)?,
            bias_off: to_u32("offset", s.bias.map_or(0, |b| b.1))?,
            a_off: to_u32("offset", s.a.off)?,
            a_rs: to_u32("stride", s.a.rs)?,
            a_cs: to_u32("stride", s.a.cs)?,
            b_off: to_u32("offset", s.b.off)?,
            b_rs: to_u32("stride", s.b.rs)?,
            b_cs: to_u32("stride", s.b.cs)?,
            c_off: to_u32("offset", s.c.off)?,
            c_rs: to_u32("stride", s.c.rs)?,
            ..Zeroable::zeroed()
        };
        let epilogue = |k: Kernel| {
            k.with("HAS_BIAS", s.bias.is_some() as u8)
                .with("ACCUMULATE", s.accumulate as u8)
        };
        let buffers = [
            Some(s.a.buf),
            Some(s.b.buf),
            Some(s.c.buf),
            s.bias.map(|b| b.0),
        ];
        let (bm, bn, bk) = match tuning.variant {
            GemmVariant::Register { x, y } => {
                let kernel = epilogue(Kernel::new(&GEMM).with("WG_X", x).with("WG_Y", y));
                let groups = self.groups(
                    s.n.div_ceil((GEMM_TILE * x) as usize),
                    s.m.div_ceil((GEMM_TILE * y) as usize),
                )?;
                return self.push(kernel, bytemuck::bytes_of(&u), &buffers, groups);
            }
            GemmVariant::Tiled { bm, bn, bk } => (bm, bn, bk),
        };
        self.gemm_tiled(&s, u, [bm, bn, bk], tuning.splits(s.m, s.n, s.k))
    }

    /// The tiled kernel for `s` (blocks BM x BN, K in BK slices), in `splits` pieces of K
    /// summed in a fixed order where more than one.
    fn gemm_tiled(
        &mut self,
        s: &GemmSpec<'_>,
        u: GemmUniform,
        [bm, bn, bk]: [u32; 3],
        splits: usize,
    ) -> Result<()> {
        let epilogue = |k: Kernel| {
            k.with("HAS_BIAS", s.bias.is_some() as u8)
                .with("ACCUMULATE", s.accumulate as u8)
        };
        // vec4 loads along an operand's contiguous dimension where offset and the other
        // stride keep every vec4 aligned.
        let aligned = |o: &Operand<'_>, contiguous: usize, other: usize| {
            contiguous == 1 && other.is_multiple_of(4) && o.off.is_multiple_of(4)
        };
        let vec_a = if aligned(&s.a, s.a.cs, s.a.rs) {
            1
        } else if aligned(&s.a, s.a.rs, s.a.cs) {
            2
        } else {
            0
        };
        let vec_b = if aligned(&s.b, s.b.cs, s.b.rs) {
            1
        } else if aligned(&s.b, s.b.rs, s.b.cs) {
            2
        } else {
            0
        };
        let tiled = Kernel::new(&GEMM_TILED)
            .with("BM", bm)
            .with("BN", bn)
            .with("BK", bk)
            .with("VEC_A", vec_a)
            .with("VEC_B", vec_b);
        let buffers = [
            Some(s.a.buf),
            Some(s.b.buf),
            Some(s.c.buf),
            s.bias.map(|b| b.0),
            Some(s.a.buf),
            Some(s.b.buf),
        ];
        let mut groups = self.groups(s.n.div_ceil(bn as usize), s.m.div_ceil(bm as usize))?;
        if splits == 1 {
            let kernel = epilogue(tiled.with("SPLIT", 0));
            return self.push(kernel, bytemuck::bytes_of(&u), &buffers, groups);
        }
        // Pieces of K in whole BK slices; the last may be shorter.
        let k_split = s.k.div_ceil(splits).next_multiple_of(bk as usize);
        let splits = s.k.div_ceil(k_split);
        let partials = splits * s.m * s.n;
        to_u32("split-K partial values", partials)?;
        let scratch = self.scratch(partials)?;
        let u = GemmUniform {
            k_split: to_u32("gemm inner size", k_split)?,
            splits: splits as u32,
            ..u
        };
        groups[2] = splits as u32;
        let kernel = tiled.with("SPLIT", 1);
        let split_buffers = [
            Some(s.a.buf),
            Some(s.b.buf),
            Some(&scratch),
            None,
            Some(s.a.buf),
            Some(s.b.buf),
        ];
        self.push(kernel, bytemuck::bytes_of(&u), &split_buffers, groups)?;
        let kernel = epilogue(Kernel::new(&GEMM_SPLIT_SUM));
        let groups = self.groups_1d(s.m * s.n)?;
        let sum_buffers = [
            Some(&scratch),
            None,
            Some(s.c.buf),
            s.bias.map(|b| b.0),
            None,
            None,
        ];
        self.push(kernel, bytemuck::bytes_of(&u), &sum_buffers, groups)
    }

    /// A scratch buffer of at least `len` floats, shared by the plan's split products
    /// (dispatches in one pass run in order, so one product's partials are summed before
    /// the next writes its own).
    fn scratch(&mut self, len: usize) -> Result<wgpu::Buffer> {
        let bytes = len as u64 * 4;
        if let Some((b, _)) = self.scratch.iter().find(|(b, _)| b.size() >= bytes) {
            return Ok(b.clone());
        }
        crate::gpu::check_fits(self.gpu, "split-K partials", &[len])?;
        let (b, ticket) =
            self.gpu
                .buffer("split-K partials", bytes, wgpu::BufferUsages::STORAGE)?;
        self.scratch.push((b.clone(), ticket));
        Ok(b)
    }

    /// out (cols) = column sums of x (rows, cols), row-major: `x` and `out` as (buffer,
    /// offset).
    pub fn col_sum(
        &mut self,
        rows: usize,
        cols: usize,
        x: (&wgpu::Buffer, usize),
        out: (&wgpu::Buffer, usize),
    ) -> Result<()> {
        if cols == 0 {
            return Ok(());
        }
        let u = ReduceUniform {
            rows: to_u32("column-sum rows", rows)?,
            cols: to_u32("column-sum columns", cols)?,
            in_off: to_u32("offset", x.1)?,
            out_off: to_u32("offset", out.1)?,
        };
        let groups = self.groups(cols.div_ceil(WG as usize), 1)?;
        let kernel = Kernel::new(&COL_SUM).with("WG", WG);
        self.push(
            kernel,
            bytemuck::bytes_of(&u),
            &[Some(x.0), Some(out.0)],
            groups,
        )
    }

    /// out[slot + w] = the sum of squares of chunk w of x's `n` values, for w < `parts`
    /// (one workgroup per chunk).
    pub fn sum_squares(
        &mut self,
        x: &GpuTensor,
        parts: usize,
        out: &wgpu::Buffer,
        slot: usize,
    ) -> Result<()> {
        let n = x.len();
        let u = ReduceUniform {
            rows: to_u32("values", n)?,
            cols: to_u32("values", n.div_ceil(parts.max(1)).max(1))?,
            in_off: to_u32("offset", x.offset())?,
            out_off: to_u32("offset", slot)?,
        };
        let def = if self.gpu.kernels().has(&SUM_SQUARES_SUBGROUP) {
            &SUM_SQUARES_SUBGROUP
        } else {
            &SUM_SQUARES
        };
        let kernel = Kernel::new(def).with("WG", WG);
        let groups = self.groups(parts.max(1), 1)?;
        self.push(
            kernel,
            bytemuck::bytes_of(&u),
            &[Some(x.buffer()), Some(out)],
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
        let u = MaskUniform {
            t: to_u32("sequence length", t)?,
            b: to_u32("batch", b)?,
            cols: to_u32("columns", cols)?,
            _pad0: 0,
        };
        to_u32("values", t * b * cols)?;
        let groups = self.groups_1d(t * b * cols)?;
        let kernel = Kernel::new(&MASK_ROWS).with("WG", WG);
        self.push(
            kernel,
            bytemuck::bytes_of(&u),
            &[Some(x), Some(lengths)],
            groups,
        )
    }

    pub fn finish(self) -> Result<Plan> {
        let gpu = self.gpu;
        let kernels = gpu.kernels();
        let mut contents = self.uniforms;
        if contents.is_empty() {
            contents.resize(self.align, 0);
        }
        let ticket = gpu.count_memory(contents.len() as u64);
        let layouts = self
            .bind_groups
            .iter()
            .map(|(_, def)| kernels.bind_group_layout(gpu, def))
            .collect::<Result<Vec<_>>>()?;
        gpu.scoped("building a dispatch plan", || {
            let uniforms = gpu
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("kernel uniforms"),
                    contents: &contents,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let bind_groups = self
                .bind_groups
                .iter()
                .zip(&layouts)
                .map(|((key, def), layout)| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: 0,
                            size: wgpu::BufferSize::new(def.uniform.size),
                        }),
                    }];
                    entries.extend(key.buffers.iter().enumerate().map(|(i, b)| {
                        wgpu::BindGroupEntry {
                            binding: i as u32 + 1,
                            resource: b.as_entire_binding(),
                        }
                    }));
                    gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(def.entry),
                        layout,
                        entries: &entries,
                    })
                })
                .collect();
            Plan {
                ops: self.ops,
                bind_groups,
                _uniforms: (uniforms, ticket),
                _scratch: self.scratch,
            }
        })
    }
}

impl Plan {
    /// Records every dispatch into `pass`, in order.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for op in &self.ops {
            self.record_op(pass, op, op.repeats_state);
        }
    }

    fn record_op(&self, pass: &mut wgpu::ComputePass<'_>, op: &Op, state_is_set: bool) {
        if !state_is_set {
            pass.set_pipeline(&op.pipeline);
            pass.set_bind_group(0, &self.bind_groups[op.bind_group], &[op.offset]);
        }
        if let Some(v) = op.immediate {
            pass.set_immediates(0, bytemuck::bytes_of(&v));
        }
        pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
    }

    /// Records every dispatch in a compute pass of its own, timed by `profiler`.
    pub fn record_profiled(
        &self,
        enc: &mut wgpu::CommandEncoder,
        profiler: &mut Profiler,
    ) -> Result<()> {
        for op in &self.ops {
            let mut pass = profiler.pass(enc, op.section)?;
            self.record_op(&mut pass, op, false);
        }
        Ok(())
    }

    /// Number of dispatches one [`Plan::record`] makes.
    pub fn dispatches(&self) -> usize {
        self.ops.len()
    }
}

/// Records GPU work into one command encoder, for one submit: dispatch plans (each call
/// one compute pass, or with a profiler each dispatch in a timed pass of its own) and,
/// through [`Recorder::encoder`], copies. It counts the dispatches it records.
pub struct Recorder<'p> {
    gpu: Gpu,
    label: &'static str,
    enc: wgpu::CommandEncoder,
    profiler: Option<&'p mut Profiler>,
    dispatches: usize,
}

impl<'p> Recorder<'p> {
    /// An empty recording on `gpu`; `label` names it in GPU errors and debuggers.
    pub fn new(gpu: &Gpu, label: &'static str) -> Self {
        let enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Recorder {
            gpu: gpu.clone(),
            label,
            enc,
            profiler: None,
            dispatches: 0,
        }
    }

    /// The same, timing every dispatch with `profiler`.
    pub(crate) fn profiled(gpu: &Gpu, label: &'static str, profiler: &'p mut Profiler) -> Self {
        Recorder {
            profiler: Some(profiler),
            ..Self::new(gpu, label)
        }
    }

    /// The encoder, for copies and clears between the dispatches.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.enc
    }

    /// Dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Records `plans` in order.
    pub(crate) fn plans(&mut self, plans: &[&Plan]) -> Result<()> {
        match self.profiler.as_deref_mut() {
            Some(p) => plans
                .iter()
                .try_for_each(|plan| plan.record_profiled(&mut self.enc, p))?,
            None => {
                let mut pass = self.enc.begin_compute_pass(&Default::default());
                for plan in plans {
                    plan.record(&mut pass);
                }
            }
        }
        self.dispatches += plans.iter().map(|p| p.dispatches()).sum::<usize>();
        Ok(())
    }

    /// Submits the recording (resolving a profiler's timestamps first), checking for GPU
    /// errors; returns the dispatches it made.
    pub fn submit(mut self) -> Result<usize> {
        if let Some(p) = &self.profiler {
            p.resolve(&mut self.enc);
        }
        self.gpu.submit(self.label, self.enc)?;
        Ok(self.dispatches)
    }
}
