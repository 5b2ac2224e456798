//! Training on the CPU reference, in f64: the yardstick for the GPU trainer and the
//! `--device cpu` path of the CLI.

use super::{Batch, LossKind, OptimizerKind, StepStats, Targets, Train, TrainConfig};
use crate::cpu;
use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig, State};

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
        Some(c) => (c as f64 / (norm + 1e-6)).min(1.0),
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

/// Trains on the CPU reference in f64, with the same rules as [`super::Trainer`].
pub struct CpuTrainer {
    config: RnnConfig,
    train: TrainConfig,
    params: Params<Vec<f64>>,
    state: OptimState,
    carry: Option<State<Vec<f64>>>,
    step: u64,
}

impl CpuTrainer {
    pub fn new(config: RnnConfig, params: &Params<Vec<f32>>, train: TrainConfig) -> Result<Self> {
        config.validate()?;
        params.check(&config)?;
        train.validate()?;
        Ok(CpuTrainer {
            state: OptimState::zeros(&config),
            params: params.to_f64(),
            config,
            train,
            carry: None,
            step: 0,
        })
    }

    /// Forward and loss from `init` (or zeros); returns (loss, dy, forward state).
    fn loss(
        &self,
        batch: &Batch,
        init: Option<&State<Vec<f64>>>,
    ) -> Result<(f64, Vec<f64>, cpu::Forward)> {
        let scale = batch.check(&self.config, self.train.loss)? as f64;
        let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let shape = [batch.t, batch.b, self.config.input_size];
        let lengths = batch.lengths.as_deref();
        let fwd = cpu::forward(&self.config, &self.params, &x, &shape, init, lengths)?;
        let w: Vec<f64> = batch.weights.iter().map(|&v| v as f64).collect();
        let o = self.config.output_size;
        let (loss, dy) = match (&batch.targets, self.train.loss) {
            (Targets::Classes(c), LossKind::CrossEntropy) => {
                cpu::softmax_xent(&fwd.y, o, c, &w, scale)
            }
            (Targets::Labels(l), LossKind::Ctc { .. }) => {
                let opts = self.train.loss.ctc_options().expect("a CTC loss");
                let shape = [batch.t, batch.b, o];
                let out = crate::ctc::ctc_loss(&fwd.y, shape, &batch.input_lengths(), l, &opts)?;
                (out.loss, out.grad)
            }
            (Targets::Values(v), LossKind::Mse) => {
                let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                cpu::mse(&fwd.y, o, &v, &w, scale)
            }
            _ => return Err(Error::LossMismatch),
        };
        Ok((loss, dy, fwd))
    }
}

impl Train for CpuTrainer {
    fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        let n = self.config.cells() * batch.b * self.config.hidden_size;
        let init = match &self.carry {
            Some(c) if self.train.stateful && c.h.len() == n => Some(c.clone()),
            _ => None,
        };
        let (loss, dy, fwd) = self.loss(batch, init.as_ref())?;
        let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let g = cpu::backward(&self.config, &self.params, &x, &fwd, &dy, None)?;
        self.step += 1;
        let norm = if loss.is_finite() {
            clip_and_update(
                &mut self.params,
                &g.params,
                &mut self.state,
                &self.train,
                self.step,
            )
        } else {
            f64::NAN
        };
        self.carry = Some(fwd.state);
        Ok(StepStats {
            loss: loss as f32,
            grad_norm: norm as f32,
            skipped: !(norm.is_finite() && loss.is_finite()),
            step: self.step,
            lr: self.train.lr_for_step(self.step),
        })
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<f32> {
        Ok(self.loss(batch, None)?.0 as f32)
    }

    fn params(&self) -> Result<Params<Vec<f32>>> {
        Ok(self.params.to_f32())
    }

    fn reset_state(&mut self) {
        self.carry = None;
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn rnn_config(&self) -> &RnnConfig {
        &self.config
    }

    fn train_config(&self) -> &TrainConfig {
        &self.train
    }

    fn optim_state(&self) -> Result<super::Moments> {
        Ok((self.state.m.to_f32(), self.state.v.to_f32()))
    }

    fn carry(&self) -> Result<Option<(usize, State<Vec<f32>>)>> {
        let per_row = self.config.hidden_size * self.config.cells();
        Ok(self.carry.as_ref().map(|c| {
            (
                c.h.len() / per_row,
                c.map(|v| v.iter().map(|&x| x as f32).collect()),
            )
        }))
    }

    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carry: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()> {
        m.check(&self.config)?;
        v.check(&self.config)?;
        if let Some((b, s)) = carry {
            self.config.check_host_state("carried state", s, b)?;
        }
        self.state = OptimState {
            m: m.to_f64(),
            v: v.to_f64(),
        };
        self.step = step;
        self.carry = carry.map(|(_, s)| s.map(|v| v.iter().map(|&x| x as f64).collect()));
        Ok(())
    }
}
