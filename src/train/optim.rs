//! The optimizers: their settings, the learning-rate schedules, the update on the GPU
//! (shaders/optim.wgsl: the gradient norm's partial sums, then clip and update of every
//! parameter in one dispatch over the flat buffers) and its f64 reference
//! ([`clip_and_update`]). The optimizer and the clip epsilon reach WGSL as constants
//! generated from the definitions here.

use super::TrainConfig;
use crate::error::{Error, Result};
use crate::gpu::{
    to_u32, wgsl_struct, wgsl_u32, Access::Read, Access::ReadWrite, Gpu, GpuTensor, Kernel,
    KernelDef, MemTicket, Plan, PlanBuilder, StructLayout, COMMON, WG,
};
use crate::model::{Params, RnnConfig};

/// ε in PyTorch's `clip_grad_norm_` scale min(1, max_norm / (norm + ε)).
pub const CLIP_EPS: f64 = 1e-6;

/// Which update rule; each is `torch.optim`'s with the same name (dampening 0, no
/// nesterov, amsgrad or maximize; Adagrad's `lr_decay` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptimizerKind {
    /// `torch.optim.SGD`: g += wd·w; with momentum μ > 0, m = μ m + g and g = m; w -= lr g.
    Sgd = 0,
    /// `torch.optim.Adam`, with bias correction; weight decay is L2 (g += wd·w before the
    /// moments).
    Adam = 1,
    /// `torch.optim.AdamW`: Adam whose weight decay is decoupled, w -= lr·wd·w, outside the
    /// moments.
    AdamW = 3,
    /// `torch.optim.Adagrad` (the classic min-char-rnn choice): g += wd·w; v += g²;
    /// w -= lr g / (√v + eps).
    Adagrad = 2,
}

/// Optimizer hyperparameters; fields not used by the chosen kind are ignored. The
/// defaults of [`OptimizerConfig::new`] are `torch.optim`'s.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// The base learning rate (`lr`); a [`LrSchedule`] scales it per step.
    pub lr: f32,
    /// SGD's `momentum`; default 0 (plain SGD).
    pub momentum: f32,
    /// Adam's and AdamW's `betas[0]`; default 0.9.
    pub beta1: f32,
    /// Adam's and AdamW's `betas[1]`; default 0.999.
    pub beta2: f32,
    /// `eps`: 1e-8 for Adam and AdamW, 1e-10 for Adagrad (unused by SGD).
    pub eps: f32,
    /// `weight_decay`: L2 (added to the clipped gradient) for SGD, Adam and Adagrad,
    /// decoupled for AdamW; default 0 (PyTorch's AdamW defaults to 0.01, set it for that).
    pub weight_decay: f32,
}

impl OptimizerConfig {
    /// `kind` at learning rate `lr` with PyTorch's defaults for the rest (see the
    /// fields). Adagrad's accumulator starts at 0 (`initial_accumulator_value=0`).
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        OptimizerConfig {
            kind,
            lr,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: if kind == OptimizerKind::Adagrad {
                1e-10
            } else {
                1e-8
            },
            weight_decay: 0.0,
        }
    }

    /// The same with SGD momentum `momentum`.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// The same with weight decay `weight_decay` (see [`OptimizerConfig::weight_decay`]).
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// How the learning rate changes over training, as a factor of the base lr by the number
/// of updates already taken, s (0 for the first: PyTorch's `last_epoch` when
/// `scheduler.step()` follows each `optimizer.step()`). Trainers apply it from their step
/// counter, so a restored run continues it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum LrSchedule {
    /// lr at every step.
    #[default]
    Constant,
    /// Linear warmup from 0, then a half cosine down to `min_lr`, as transformers'
    /// `get_cosine_with_min_lr_schedule_with_warmup`: lr·s/warmup for s < warmup; then
    /// min_lr + (lr − min_lr)·(1 + cos(π·p))/2 with p = (s − warmup)/(total − warmup),
    /// held at min_lr from s = total on. The first update (s = 0) of a warmup has lr 0.
    Cosine {
        warmup_steps: u64,
        total_steps: u64,
        min_lr: f32,
    },
    /// `torch.optim.lr_scheduler.StepLR`: lr·gamma^⌊s / step_size⌋.
    Step { step_size: u64, gamma: f32 },
}

impl LrSchedule {
    /// The learning rate of the update that follows `taken` updates, for base rate `lr`.
    pub fn lr_at(&self, lr: f32, taken: u64) -> f32 {
        let (base, s) = (lr as f64, taken as f64);
        let v = match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if taken < warmup_steps {
                    base * s / warmup_steps as f64
                } else {
                    let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                    let p = ((s - warmup_steps as f64) / span).min(1.0);
                    let min = min_lr as f64;
                    min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
            LrSchedule::Step { step_size, gamma } => {
                let k = taken / step_size.max(1);
                base * (gamma as f64).powi(k.min(i32::MAX as u64) as i32)
            }
        };
        v as f32
    }

    /// Rejects schedules that cannot work with base rate `lr`: a cosine whose total is not
    /// past its warmup or whose min_lr is not in 0..=lr, a step of size 0 or a gamma that
    /// is not finite and > 0.
    pub fn validate(&self, lr: f32) -> Result<()> {
        let bad = |what, value: f32, expected| {
            Err(Error::BadHyperparameter {
                what,
                value,
                expected,
            })
        };
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if total_steps <= warmup_steps {
                    return bad(
                        "cosine schedule total_steps",
                        total_steps as f32,
                        "greater than warmup_steps",
                    );
                }
                if !(min_lr >= 0.0 && min_lr <= lr) {
                    return bad(
                        "cosine schedule min_lr",
                        min_lr,
                        "finite, ≥ 0 and at most the learning rate",
                    );
                }
                Ok(())
            }
            LrSchedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return bad("step schedule step_size", 0.0, "at least 1");
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return bad("step schedule gamma", gamma, "finite and > 0");
                }
                Ok(())
            }
        }
    }
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::Adagrad,
        OptimizerKind::AdamW,
    ];

    /// The id the update kernel knows the rule by: the `OPT` override constant, compared
    /// with the generated `OPT_SGD`, `OPT_ADAM`, ....
    pub(crate) fn id(self) -> u32 {
        self as u32
    }

    fn wgsl_name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "OPT_SGD",
            OptimizerKind::Adam => "OPT_ADAM",
            OptimizerKind::Adagrad => "OPT_ADAGRAD",
            OptimizerKind::AdamW => "OPT_ADAMW",
        }
    }
}

/// The update kernel's constants: the optimizer ids and the clip epsilon.
fn optim_consts() -> String {
    let mut s: String = OptimizerKind::ALL
        .iter()
        .map(|k| wgsl_u32(k.wgsl_name(), k.id()))
        .collect();
    s.push_str(&format!("const CLIP_EPS: f32 = {CLIP_EPS:?};\n"));
    s
}

wgsl_struct! {
    /// One tensor's update: its length and the gradient norm's partial sums (shaders/optim.wgsl).
    pub(crate) struct UpdateUniform = "Update" {
        n: u32, parts: u32, _pad0: u32, _pad1: u32,
    }
}

wgsl_struct! {
    /// The per-step scalars of the optimizer: the scheduled learning rate, hyperparameters
    /// and Adam's bias corrections, written before each step's submit (a storage struct
    /// in shaders/optim.wgsl).
    pub(crate) struct Hyper = "Hyper" {
        lr: f32, beta1: f32, beta2: f32, eps: f32,
        momentum: f32, weight_decay: f32, clip_norm: f32, clip_value: f32,
        bias_correction1: f32, bias_correction2: f32, _pad0: f32, _pad1: f32,
    }
}

impl Hyper {
    /// Values for the `step`-th update (1-based).
    pub fn new(cfg: &TrainConfig, step: u64) -> Self {
        let o = &cfg.optimizer;
        let n = step.min(i32::MAX as u64) as i32;
        Hyper {
            lr: cfg.lr_for_step(step),
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            momentum: o.momentum,
            weight_decay: o.weight_decay,
            clip_norm: cfg.clip_norm.unwrap_or(0.0),
            clip_value: cfg.clip_value.unwrap_or(0.0),
            bias_correction1: 1.0 - o.beta1.powi(n),
            bias_correction2: 1.0 - o.beta2.powi(n),
            _pad0: 0.0,
            _pad1: 0.0,
        }
    }
}

/// Clip and optimizer update of one tensor (shaders/optim.wgsl): param, grad, m, v,
/// norm_parts, hyper.
pub(crate) const UPDATE: KernelDef = KernelDef {
    entry: "update",
    source: include_str!("../../shaders/optim.wgsl"),
    prelude: &[COMMON],
    consts: optim_consts,
    bindings: &[ReadWrite, Read, ReadWrite, ReadWrite, Read, Read],
    uniform: StructLayout::of::<UpdateUniform>(),
    requires: wgpu::Features::empty(),
    immediate_size: 0,
};

/// The kernels of this layer.
#[cfg(test)]
pub(crate) const KERNELS: &[&KernelDef] = &[&UPDATE];

/// Chunks a gradient tensor's norm is summed in: one workgroup per 16 Ki values, at most
/// 64 (the update kernel adds them all up per element).
fn norm_chunks(values: usize) -> usize {
    values.div_ceil(1 << 14).clamp(1, 64)
}

/// The optimizer step on the GPU: the sums of squares of the gradients' chunks into the
/// first `parts` slots of the stats buffer (whose next slot holds the loss), then the clip
/// and update of every parameter from them and the step's [`Hyper`]. The parameters share
/// one buffer (more only past the binding limit), and their gradients and moments
/// likewise: one dispatch for the norm's chunks and one for the update per buffer.
pub(crate) struct UpdatePlan {
    pub plan: Plan,
    hyper: (wgpu::Buffer, MemTicket),
    /// The norm's partial sums, before the loss in the stats buffer.
    pub parts: usize,
}

impl UpdatePlan {
    /// Slots the norm's partial sums of gradient buffers `grads` take.
    pub fn parts(grads: &[GpuTensor]) -> usize {
        grads.iter().map(|g| norm_chunks(g.len())).sum()
    }

    /// The update of `params` from `grads` with moments `m`, `v` (flat buffers laid out
    /// alike), reading and writing the norm's sums in `stats`.
    pub fn new(
        gpu: &Gpu,
        kind: OptimizerKind,
        [params, grads, m, v]: [&[GpuTensor]; 4],
        stats: &GpuTensor,
    ) -> Result<Self> {
        let parts = Self::parts(grads);
        let hyper = gpu.buffer(
            "optimizer hyperparameters",
            std::mem::size_of::<Hyper>() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut plan = PlanBuilder::new(gpu);
        plan.section("gradient norm");
        let mut slot = 0;
        for g in grads {
            let n = norm_chunks(g.len());
            plan.sum_squares(g, n, stats.buffer(), slot)?;
            slot += n;
        }
        plan.section("optimizer update");
        for (((p, g), m), v) in params.iter().zip(grads).zip(m).zip(v) {
            let buffers = [
                p.buffer(),
                g.buffer(),
                m.buffer(),
                v.buffer(),
                stats.buffer(),
                &hyper.0,
            ];
            let u = UpdateUniform {
                n: to_u32("parameter size", p.len())?,
                parts: to_u32("norm parts", parts)?,
                _pad0: 0,
                _pad1: 0,
            };
            let kernel = Kernel::new(&UPDATE).with("WG", WG).with("OPT", kind.id());
            let groups = plan.groups_1d(p.len())?;
            plan.push(kernel, bytemuck::bytes_of(&u), &buffers.map(Some), groups)?;
        }
        Ok(UpdatePlan {
            plan: plan.finish()?,
            hyper,
            parts,
        })
    }

    /// Writes the hyperparameters of the `step`-th update (1-based); returns its learning
    /// rate.
    pub fn write_hyper(&self, gpu: &Gpu, cfg: &TrainConfig, step: u64) -> f32 {
        let hyper = Hyper::new(cfg, step);
        gpu.queue()
            .write_buffer(&self.hyper.0, 0, bytemuck::bytes_of(&hyper));
        hyper.lr
    }
}

/// Optimizer state: first and second moments (or momentum buffer / Adagrad sums).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState {
    pub m: Params<Vec<f64>>,
    pub v: Params<Vec<f64>>,
}

impl OptimState {
    pub fn zeros(cfg: &RnnConfig) -> Self {
        let z = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
        OptimState { m: z.clone(), v: z }
    }
}

/// Clips gradients (global norm as PyTorch's `clip_grad_norm_`, then value) and applies
/// the `step`-th update (1-based) at the learning rate the schedule gives it, with weight
/// decay as [`OptimizerKind`] says (after clipping, as inside `optimizer.step()`). Returns the global norm before clipping; a non-finite
/// norm leaves everything unchanged.
pub fn clip_and_update(
    p: &mut Params<Vec<f64>>,
    g: &Params<Vec<f64>>,
    state: &mut OptimState,
    cfg: &TrainConfig,
    step: u64,
) -> f64 {
    let norm = g
        .tensors()
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    if !norm.is_finite() {
        return norm;
    }
    let o = &cfg.optimizer;
    let lr = cfg.lr_for_step(step) as f64;
    let (b1, b2, eps) = (o.beta1 as f64, o.beta2 as f64, o.eps as f64);
    let (mu, wd) = (o.momentum as f64, o.weight_decay as f64);
    let scale = match cfg.clip_norm {
        Some(c) => (c as f64 / (norm + CLIP_EPS)).min(1.0),
        None => 1.0,
    };
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2 = 1.0 - b2.powi(step as i32);
    let params = p.tensors_mut();
    let ms = state.m.tensors_mut();
    let vs = state.v.tensors_mut();
    for (((w, gv), m), v) in params.into_iter().zip(g.tensors()).zip(ms).zip(vs) {
        for i in 0..w.len() {
            let mut gi = gv[i] * scale;
            if let Some(c) = cfg.clip_value {
                gi = gi.clamp(-(c as f64), c as f64);
            }
            if o.kind != OptimizerKind::AdamW {
                gi += wd * w[i];
            }
            match o.kind {
                OptimizerKind::Sgd => {
                    if mu > 0.0 {
                        m[i] = mu * m[i] + gi;
                        gi = m[i];
                    }
                    w[i] -= lr * gi;
                }
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    let step = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
                    if o.kind == OptimizerKind::AdamW {
                        w[i] *= 1.0 - lr * wd;
                    }
                    w[i] -= lr * step;
                }
                OptimizerKind::Adagrad => {
                    v[i] += gi * gi;
                    w[i] -= lr * gi / (v[i].sqrt() + eps);
                }
            }
        }
    }
    norm
}
