//! The recurrence's kernels (shaders/recurrence_forward.wgsl, recurrence_backward.wgsl and
//! the subgroup forward), over the cells' pointwise math in shaders/cell.wgsl. The cells'
//! ids reach WGSL as constants generated from [`CellKind`], so the two languages cannot
//! disagree on them.

use super::CellKind;
use crate::gpu::{
    wgsl_struct, wgsl_u32, Access::Read, Access::ReadWrite, KernelDef, StructLayout, COMMON,
};

const CELL: &str = include_str!("../../shaders/cell.wgsl");
const RECURRENCE: &str = include_str!("../../shaders/recurrence.wgsl");
const RECURRENCE_FORWARD_COMMON: &str =
    include_str!("../../shaders/recurrence_forward_common.wgsl");
const FIRST_UNIFORM: &str = include_str!("../../shaders/first_uniform.wgsl");
const FIRST_IMMEDIATE: &str = include_str!("../../shaders/first_immediate.wgsl");

/// `const CELL_RNN: u32 = 0u;` and so on: the ids the `CELL` override takes.
fn cell_consts() -> String {
    CellKind::ALL
        .iter()
        .map(|c| wgsl_u32(&format!("CELL_{}", c.name().to_uppercase()), c.id()))
        .collect()
}

wgsl_struct! {
    /// A recurrence dispatch's sizes, iterations and offsets (shaders/recurrence.wgsl).
    pub(crate) struct SeqUniform = "Seq" {
        t: u32, b: u32, h: u32, rows_per_wg: u32,
        units_per_wg: u32, first: u32, steps: u32, state_c: u32,
        grad_h: u32, grad_c: u32, w_off: u32, b_off: u32,
    }
}

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
    consts: cell_consts,
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite, Read],
    uniform: StructLayout::of::<SeqUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// A cell's backward recurrence (shaders/recurrence_backward.wgsl): dp, W_hh, dr, states,
/// saved, lengths, dh_above, state_grad.
pub(crate) const RECURRENCE_BACKWARD: KernelDef = KernelDef {
    entry: "recurrence_backward",
    source: include_str!("../../shaders/recurrence_backward.wgsl"),
    prelude: &[COMMON, CELL, RECURRENCE, FIRST_UNIFORM],
    consts: cell_consts,
    bindings: &[
        ReadWrite, Read, ReadWrite, Read, Read, Read, Read, ReadWrite,
    ],
    uniform: StructLayout::of::<SeqUniform>(),
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

wgsl_struct! {
    /// A dropout dispatch over one cell's outputs (shaders/dropout.wgsl).
    pub(crate) struct DropoutUniform = "Dropout" {
        n: u32, h: u32, width: u32, unit0: u32,
        layer: u32, threshold: u32, scale: f32, src_off: u32,
        b: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }
}

const DROPOUT: &str = include_str!("../../shaders/dropout.wgsl");

/// Dropout of a cell's outputs into the copy the layer above or the head reads
/// (shaders/dropout_copy.wgsl): outputs, dropped, key.
pub(crate) const DROPOUT_COPY: KernelDef = KernelDef {
    entry: "dropout_copy",
    source: include_str!("../../shaders/dropout_copy.wgsl"),
    prelude: &[COMMON, DROPOUT],
    consts: crate::gpu::no_consts,
    bindings: &[Read, ReadWrite, Read],
    uniform: StructLayout::of::<DropoutUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The same mask on dL/d(outputs), in place (shaders/dropout_grad.wgsl): gradient, key.
pub(crate) const DROPOUT_GRAD: KernelDef = KernelDef {
    entry: "dropout_grad",
    source: include_str!("../../shaders/dropout_grad.wgsl"),
    prelude: &[COMMON, DROPOUT],
    consts: crate::gpu::no_consts,
    bindings: &[ReadWrite, Read],
    uniform: StructLayout::of::<DropoutUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

wgsl_struct! {
    /// An embedding dispatch (shaders/embedding.wgsl): values, dimension E, vocabulary V,
    /// the table's (or its gradient's) first value in its buffer.
    pub(crate) struct EmbeddingUniform = "Embedding" {
        n: u32, e: u32, vocab: u32, w_off: u32,
    }
}

const EMBEDDING: &str = include_str!("../../shaders/embedding.wgsl");

/// x = rows of the embedding table by token id (shaders/embedding_gather.wgsl): ids,
/// table, x.
pub(crate) const EMBEDDING_GATHER: KernelDef = KernelDef {
    entry: "embedding_gather",
    source: include_str!("../../shaders/embedding_gather.wgsl"),
    prelude: &[COMMON, EMBEDDING],
    consts: crate::gpu::no_consts,
    bindings: &[Read, Read, ReadWrite],
    uniform: StructLayout::of::<EmbeddingUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// dL/d(table) as a segmented sum of dL/dx over the rows sorted by id
/// (shaders/embedding_grad.wgsl): order, offsets, dx, gradient.
pub(crate) const EMBEDDING_GRAD: KernelDef = KernelDef {
    entry: "embedding_grad",
    source: include_str!("../../shaders/embedding_grad.wgsl"),
    prelude: &[COMMON, EMBEDDING],
    consts: crate::gpu::no_consts,
    bindings: &[Read, Read, Read, ReadWrite],
    uniform: StructLayout::of::<EmbeddingUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The kernels of this layer.
#[cfg(test)]
pub(crate) const KERNELS: &[&KernelDef] = &[
    &EMBEDDING_GATHER,
    &EMBEDDING_GRAD,
    &DROPOUT_COPY,
    &DROPOUT_GRAD,
    &RECURRENCE_FORWARD,
    &RECURRENCE_BACKWARD,
    &RECURRENCE_FORWARD_IMMEDIATE,
    &RECURRENCE_BACKWARD_IMMEDIATE,
    &RECURRENCE_FORWARD_SUBGROUP,
    &RECURRENCE_FORWARD_SUBGROUP_IMMEDIATE,
];
