//! The CTC loss on the GPU (shaders/ctc.wgsl): the per-batch buffers, the dispatch that
//! fills dL/dlogits and the row losses, and [`ctc_loss`] for a standalone call. The
//! reference and the options are in the parent module.

use super::{check, CtcLoss, CtcOptions, Labels, Reduction, MAX_GPU_TARGET_LEN};
use crate::error::{Error, Result};
use crate::gpu::{
    to_u32, wgsl_struct, wgsl_u32, Access::Read, Access::ReadWrite, Gpu, GpuTensor, Kernel,
    KernelDef, PlanBuilder, Recorder, StructLayout,
};

/// The longest target as a WGSL constant (`MAX_LABELS`): it sizes the kernel's
/// workgroup arrays.
fn ctc_consts() -> String {
    wgsl_u32("MAX_LABELS", MAX_GPU_TARGET_LEN as u32)
}

// 2U + 1 states of log α and of log β, as f32, in WebGPU's default 16 KiB of workgroup
// memory.
const _: () = assert!(2 * (2 * MAX_GPU_TARGET_LEN + 1) * 4 <= 16 * 1024);

wgsl_struct! {
    /// Sizes and options of a CTC dispatch (shaders/ctc.wgsl).
    pub(crate) struct CtcUniform = "Ctc" {
        t: u32, b: u32, c: u32, u_cap: u32,
        blank: u32, zero_infinity: u32, inf_bits: u32, nan_bits: u32,
    }
}

/// CTC loss, one workgroup per batch row (shaders/ctc.wgsl): y, labels, rows, dy,
/// row_loss, work.
pub(crate) const CTC: KernelDef = KernelDef {
    entry: "ctc",
    source: include_str!("../../shaders/ctc.wgsl"),
    prelude: &[],
    consts: ctc_consts,
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
    uniform: StructLayout::of::<CtcUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The kernels of this layer.
#[cfg(test)]
pub(crate) const KERNELS: &[&KernelDef] = &[&CTC];

/// Invocations per workgroup (one workgroup per batch row).
const CTC_WG: u32 = 256;

/// Row counts and indices reach the kernel as f32, exact up to 2^24.
const F32_EXACT: usize = 1 << 24;

/// Refuses a count that would not reach the kernel exactly (it travels as f32).
fn exact_in_f32(what: &'static str, value: usize) -> Result<()> {
    if value >= F32_EXACT {
        return Err(Error::TooLarge {
            what,
            value: value as u64,
            limit: F32_EXACT as u64 - 1,
            why: "lengths and labels reach the GPU as f32, exact up to 2^24",
        });
    }
    Ok(())
}

/// Buffers of the CTC loss for (T, B) and targets of up to `u_cap` labels.
pub(crate) struct CtcBuffers {
    pub t: usize,
    pub b: usize,
    pub u_cap: usize,
    /// (B, u_cap) labels, row b's first.
    labels: GpuTensor,
    /// (B, 4): input length, target length, scale, unused.
    rows: GpuTensor,
    /// (B) scale·(−log p) per row.
    pub row_loss: GpuTensor,
    /// Per row: T log-sum-exps, then (T, 2·u_cap + 1) log α (then log αβ).
    work: GpuTensor,
}

impl CtcBuffers {
    /// Room for targets of `max_u` labels, rounded up so that nearby lengths share it.
    pub fn new(gpu: &Gpu, t: usize, b: usize, max_u: usize) -> Result<Self> {
        let u_cap = max_u.max(1).next_multiple_of(8).min(MAX_GPU_TARGET_LEN);
        exact_in_f32("CTC sequence length T", t)?;
        let per_row = t * (2 * u_cap + 2);
        Ok(CtcBuffers {
            t,
            b,
            u_cap,
            labels: GpuTensor::empty(gpu, &[b, u_cap], "CTC labels")?,
            rows: GpuTensor::empty(gpu, &[b, 4], "CTC row lengths")?,
            row_loss: GpuTensor::empty(gpu, &[b], "CTC row losses")?,
            work: GpuTensor::empty(gpu, &[b, per_row], "CTC forward-backward workspace")?,
        })
    }

    /// Checks (see [`check`]) and uploads the lengths, targets and per-row scales; the
    /// mean reduction divides by `batch_rows` rows (this batch's B, or the whole batch's
    /// when these rows are one rank's share of it).
    pub fn write(
        &self,
        c: usize,
        input_lengths: &[usize],
        targets: &Labels,
        opts: &CtcOptions,
        batch_rows: usize,
    ) -> Result<()> {
        check([self.t, self.b, c], input_lengths, targets, opts.blank)?;
        check_gpu_limits(c, targets)?;
        let mut labels = vec![0.0f32; self.b * self.u_cap];
        let mut rows = vec![0.0f32; self.b * 4];
        for r in 0..self.b {
            let target = targets.row(r);
            if target.len() > self.u_cap {
                return Err(Error::CtcTarget {
                    row: r,
                    why: format!(
                        "{} labels, more than the {} these buffers were made for",
                        target.len(),
                        self.u_cap
                    ),
                });
            }
            for (dst, &k) in labels[r * self.u_cap..].iter_mut().zip(target) {
                *dst = k as f32;
            }
            rows[r * 4] = input_lengths[r] as f32;
            rows[r * 4 + 1] = target.len() as f32;
            rows[r * 4 + 2] = opts.row_scale(target.len(), batch_rows) as f32;
        }
        self.labels.write(&labels)?;
        self.rows.write(&rows)
    }

    /// Adds the loss dispatch: reads logits `y` (T, B, C), writes `dy` (T, B, C) and
    /// [`CtcBuffers::row_loss`].
    pub fn record(
        &self,
        plan: &mut PlanBuilder,
        y: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        c: usize,
        opts: &CtcOptions,
    ) -> Result<()> {
        let u = CtcUniform {
            t: to_u32("CTC T", self.t)?,
            b: to_u32("CTC B", self.b)?,
            c: to_u32("CTC classes", c)?,
            u_cap: to_u32("CTC target capacity", self.u_cap)?,
            blank: opts.blank,
            zero_infinity: opts.zero_infinity as u32,
            inf_bits: f32::INFINITY.to_bits(),
            nan_bits: f32::NAN.to_bits(),
        };
        let buffers = [
            y,
            self.labels.buffer(),
            self.rows.buffer(),
            dy,
            self.row_loss.buffer(),
            self.work.buffer(),
        ];
        let groups = plan.groups(self.b, 1)?;
        let kernel = Kernel::new(&CTC).with("WG", CTC_WG);
        plan.push(kernel, bytemuck::bytes_of(&u), &buffers.map(Some), groups)
    }
}

/// Rejects what the kernel cannot take: targets over [`MAX_GPU_TARGET_LEN`] labels, C or
/// the label count past 2^24 (they travel as f32).
pub(crate) fn check_gpu_limits(c: usize, targets: &Labels) -> Result<()> {
    exact_in_f32("CTC classes C", c)?;
    match targets.lengths.iter().position(|&u| u > MAX_GPU_TARGET_LEN) {
        Some(row) => Err(Error::CtcTarget {
            row,
            why: format!(
                "{} labels; the GPU kernel takes at most {MAX_GPU_TARGET_LEN} (2U+1 states of \
                 log α and log β in 16 KiB of workgroup memory): split the utterance",
                targets.lengths[row]
            ),
        }),
        None => Ok(()),
    }
}

/// The CTC loss of `logits` (T, B, C) on the GPU, as [`crate::ctc::ctc_loss`] (in f32):
/// the reduced loss, the per-row losses and dloss/dlogits (T, B, C). Native only (it
/// blocks); the browser awaits [`ctc_loss_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn ctc_loss(
    gpu: &Gpu,
    logits: &GpuTensor,
    input_lengths: &[usize],
    targets: &Labels,
    opts: &CtcOptions,
) -> Result<CtcLoss<f32>> {
    pollster::block_on(ctc_loss_async(gpu, logits, input_lengths, targets, opts))
}

/// Async form of [`ctc_loss`].
pub async fn ctc_loss_async(
    gpu: &Gpu,
    logits: &GpuTensor,
    input_lengths: &[usize],
    targets: &Labels,
    opts: &CtcOptions,
) -> Result<CtcLoss<f32>> {
    let &[t, b, c] = logits.shape() else {
        return Err(Error::Shape {
            what: "CTC logits",
            expected: "(T, B, C)".into(),
            got: logits.shape().to_vec(),
        });
    };
    if !gpu.same_device(logits.gpu()) {
        return Err(Error::WrongDevice("the CTC logits"));
    }
    if logits.offset() != 0 {
        return Err(Error::IncompatibleArgs(
            "CTC logits must start their buffer (offset 0)".into(),
        ));
    }
    check([t, b, c], input_lengths, targets, opts.blank)?;
    check_gpu_limits(c, targets)?;
    let bufs = CtcBuffers::new(gpu, t, b, targets.max_len())?;
    bufs.write(c, input_lengths, targets, opts, b)?;
    let grad = GpuTensor::empty(gpu, &[t, b, c], "CTC gradient")?;
    let mut plan = PlanBuilder::new(gpu);
    plan.section("ctc loss");
    bufs.record(&mut plan, logits.buffer(), grad.buffer(), c, opts)?;
    let plan = plan.finish()?;
    let mut rec = Recorder::new(gpu, "ctc loss");
    rec.plans(&[&plan])?;
    rec.submit()?;
    let scaled = bufs.row_loss.download_async().await?;
    let loss = scaled.iter().sum();
    let rows = scaled
        .iter()
        .zip(&targets.lengths)
        .map(|(&l, &u)| match opts.reduction {
            Reduction::Mean => (l as f64 / opts.row_scale(u, b)) as f32,
            Reduction::Sum | Reduction::None => l,
        })
        .collect();
    Ok(CtcLoss {
        loss,
        rows,
        grad: grad.download_async().await?,
    })
}
