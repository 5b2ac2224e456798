//! The losses: which one a model trains with, and its plan on the GPU (softmax
//! cross-entropy and squared error per row, shaders/loss.wgsl; CTC, `crate::ctc::gpu`).
//! Their f64 references are `crate::cpu::{softmax_xent, mse}` and `crate::ctc::ctc_loss`.

use super::{Batch, Targets};
use crate::ctc::gpu::{check_gpu_limits, CtcBuffers};
use crate::error::{Error, Result};
use crate::gpu::{
    no_consts, to_u32, wgsl_struct, Access::Read, Access::ReadWrite, Gpu, GpuTensor, Kernel,
    KernelDef, Plan, PlanBuilder, StructLayout, COMMON, WG,
};

/// Which loss the output head is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy over O classes; targets are class indices.
    CrossEntropy,
    /// Mean squared error; targets are values (T, B, O).
    Mse,
    /// Connectionist temporal classification over the O outputs (one of them the blank),
    /// as PyTorch's `nn.CTCLoss(blank, reduction='mean', zero_infinity)` on
    /// `log_softmax(y, 2)`: targets are label sequences ([`Targets::Labels`]); each row
    /// reads its first [`Batch::lengths`] steps (all T without them); the batch weights
    /// must be ones. See [`crate::ctc`].
    Ctc { blank: u32, zero_infinity: bool },
}

impl LossKind {
    /// The options of the CTC loss this is, if it is one (reduction mean).
    pub fn ctc_options(self) -> Option<crate::ctc::CtcOptions> {
        match self {
            LossKind::Ctc {
                blank,
                zero_infinity,
            } => Some(crate::ctc::CtcOptions {
                blank,
                reduction: crate::ctc::Reduction::Mean,
                zero_infinity,
            }),
            _ => None,
        }
    }
}

wgsl_struct! {
    /// The rows and columns of a row loss (shaders/loss.wgsl).
    pub(crate) struct RowsUniform = "Rows" {
        rows: u32, cols: u32, _pad0: u32, _pad1: u32,
    }
}

/// Softmax cross-entropy rows (shaders/loss.wgsl): y, target, weight, scale, dy, row_loss.
pub(crate) const SOFTMAX_XENT: KernelDef = KernelDef {
    entry: "softmax_xent",
    source: include_str!("../../shaders/loss.wgsl"),
    prelude: &[COMMON],
    consts: no_consts,
    bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite],
    uniform: StructLayout::of::<RowsUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// Squared-error rows (shaders/loss.wgsl), bound like [`SOFTMAX_XENT`].
pub(crate) const MSE: KernelDef = KernelDef {
    entry: "mse",
    ..SOFTMAX_XENT
};

/// The kernels of this layer.
#[cfg(test)]
pub(crate) const KERNELS: &[&KernelDef] = &[&SOFTMAX_XENT, &MSE];

/// What a loss plan reads besides y.
enum LossInputs {
    /// Cross-entropy and MSE (shaders/loss.wgsl).
    Rows {
        targets: GpuTensor,
        weights: GpuTensor,
        scale: GpuTensor,
        /// Bound by the plan; kept here as the owner.
        _row_loss: GpuTensor,
    },
    /// CTC (shaders/ctc.wgsl), for targets of up to its `u_cap` labels.
    Ctc(CtcBuffers),
}

/// The loss of batches of one (T, B) on the GPU: reads the model's y (T, B, O), writes
/// dL/dy into its dy and the batch's normalized loss into one slot of a stats buffer
/// (the per-row losses summed in a fixed order).
pub(crate) struct LossPlan {
    loss: LossKind,
    inputs: LossInputs,
    pub plan: Plan,
}

impl LossPlan {
    /// The plan for (T, B, O) = `shape`, CTC targets of up to `max_u` labels, the loss
    /// into `out` (buffer, slot).
    pub fn new(
        gpu: &Gpu,
        loss: LossKind,
        shape: [usize; 3],
        [y, dy]: [&GpuTensor; 2],
        max_u: usize,
        out: (&wgpu::Buffer, usize),
    ) -> Result<Self> {
        let [t, b, o] = shape;
        let mut plan = PlanBuilder::new(gpu);
        plan.section("loss");
        let inputs = match loss.ctc_options() {
            Some(opts) => {
                let bufs = CtcBuffers::new(gpu, t, b, max_u)?;
                bufs.record(&mut plan, y.buffer(), dy.buffer(), o, &opts)?;
                plan.col_sum(b, 1, (bufs.row_loss.buffer(), 0), out)?;
                LossInputs::Ctc(bufs)
            }
            None => {
                let targets = GpuTensor::empty(gpu, &[t, b, o], "targets")?;
                let weights = GpuTensor::empty(gpu, &[t, b], "weights")?;
                let scale = GpuTensor::empty(gpu, &[1], "loss scale")?;
                let row_loss = GpuTensor::empty(gpu, &[t, b], "row losses")?;
                let def = match loss {
                    LossKind::CrossEntropy => &SOFTMAX_XENT,
                    _ => &MSE,
                };
                let buffers = [
                    y.buffer(),
                    targets.buffer(),
                    weights.buffer(),
                    scale.buffer(),
                    dy.buffer(),
                    row_loss.buffer(),
                ];
                let u = RowsUniform {
                    rows: to_u32("loss rows", t * b)?,
                    cols: to_u32("loss columns", o)?,
                    _pad0: 0,
                    _pad1: 0,
                };
                let groups = plan.groups((t * b).div_ceil(WG as usize), 1)?;
                let kernel = Kernel::new(def).with("WG", WG);
                plan.push(kernel, bytemuck::bytes_of(&u), &buffers.map(Some), groups)?;
                plan.col_sum(t * b, 1, (row_loss.buffer(), 0), out)?;
                LossInputs::Rows {
                    targets,
                    weights,
                    scale,
                    _row_loss: row_loss,
                }
            }
        };
        Ok(LossPlan {
            loss,
            inputs,
            plan: plan.finish()?,
        })
    }

    /// Whether a batch of its shape whose longest CTC target has `max_u` labels fits.
    pub fn fits(&self, max_u: usize) -> bool {
        match &self.inputs {
            LossInputs::Rows { .. } => true,
            LossInputs::Ctc(c) => max_u <= c.u_cap,
        }
    }

    /// Uploads the batch's targets: weights and the normalizer `scale` for the row losses;
    /// lengths and labels for CTC, whose mean divides by `rows` rows (the batch's, or the
    /// whole batch's when these rows are a rank's share of it). `o` is the model's output
    /// size.
    pub fn write(&self, batch: &Batch, o: usize, scale: f32, rows: usize) -> Result<()> {
        match (&self.inputs, &batch.targets) {
            (LossInputs::Ctc(bufs), Targets::Labels(l)) => {
                let opts = self.loss.ctc_options().ok_or(Error::LossMismatch)?;
                bufs.write(o, &batch.input_lengths(), l, &opts, rows)
            }
            (
                LossInputs::Rows {
                    targets,
                    weights,
                    scale: s,
                    ..
                },
                t,
            ) => {
                match t {
                    Targets::Classes(c) => {
                        let c: Vec<f32> = c.iter().map(|&k| k as f32).collect();
                        targets.write_prefix(&c)?;
                    }
                    Targets::Values(v) => targets.write_prefix(v)?,
                    Targets::Labels(_) => return Err(Error::LossMismatch),
                }
                weights.write(&batch.weights)?;
                s.write(&[scale])
            }
            _ => Err(Error::LossMismatch),
        }
    }
}

/// The longest CTC target of a batch, checked against the GPU kernel's limits (0 for the
/// other losses): the capacity a loss plan needs.
pub(crate) fn label_capacity(batch: &Batch, o: usize) -> Result<usize> {
    match &batch.targets {
        Targets::Labels(l) => {
            check_gpu_limits(o, l)?;
            Ok(l.max_len())
        }
        _ => Ok(0),
    }
}
