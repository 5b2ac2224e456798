//! Training on the CPU reference, in f64: the yardstick for the GPU trainer and the
//! `--device cpu` path of the CLI.

use super::{Batch, LossKind, StepStats, Targets, Train, TrainConfig};
use crate::cpu::{self, OptimState};
use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig};

pub struct CpuTrainer {
    config: RnnConfig,
    train: TrainConfig,
    params: Params<Vec<f64>>,
    state: OptimState,
    carry: Option<Vec<f64>>,
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

    /// Forward and loss; returns (loss, dy, forward state).
    fn loss(&self, batch: &Batch, h0: Option<&[f64]>) -> Result<(f64, Vec<f64>, cpu::Forward)> {
        let scale = batch.check(&self.config, self.train.loss)? as f64;
        let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let shape = [batch.t, batch.b, self.config.input_size];
        let fwd = cpu::forward(&self.config, &self.params, &x, &shape, h0)?;
        let w: Vec<f64> = batch.weights.iter().map(|&v| v as f64).collect();
        let o = self.config.output_size;
        let (loss, dy) = match (&batch.targets, self.train.loss) {
            (Targets::Classes(c), LossKind::CrossEntropy) => {
                cpu::softmax_xent(&fwd.y, o, c, &w, scale)
            }
            (Targets::Values(v), _) => {
                let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                cpu::mse(&fwd.y, o, &v, &w, scale)
            }
            _ => return Err(Error::LossMismatch),
        };
        Ok((loss, dy, fwd))
    }
}

fn narrow(p: &Params<Vec<f64>>) -> Params<Vec<f32>> {
    p.map(|v| v.iter().map(|&x| x as f32).collect())
}

impl Train for CpuTrainer {
    fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        let carry = match &self.carry {
            Some(c)
                if self.train.stateful
                    && c.len() == self.config.cells() * batch.b * self.config.hidden_size =>
            {
                Some(c.clone())
            }
            _ => None,
        };
        let (loss, dy, fwd) = self.loss(batch, carry.as_deref())?;
        let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let g = cpu::backward(&self.config, &self.params, &x, &fwd, &dy, None)?;
        self.step += 1;
        let norm = if loss.is_finite() {
            cpu::clip_and_update(
                &mut self.params,
                &g.params,
                &mut self.state,
                &self.train,
                self.step,
            )
        } else {
            f64::NAN
        };
        self.carry = Some(fwd.h_last().to_vec());
        Ok(StepStats {
            loss: loss as f32,
            grad_norm: norm as f32,
            skipped: !(norm.is_finite() && loss.is_finite()),
            step: self.step,
        })
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<f32> {
        Ok(self.loss(batch, None)?.0 as f32)
    }

    fn params(&self) -> Result<Params<Vec<f32>>> {
        Ok(narrow(&self.params))
    }

    fn reset_state(&mut self) {
        self.carry = None;
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn optim_state(&self) -> Result<super::Moments> {
        Ok((narrow(&self.state.m), narrow(&self.state.v)))
    }

    fn carry(&self) -> Result<Option<(usize, Vec<f32>)>> {
        let h = self.config.hidden_size * self.config.cells();
        Ok(self
            .carry
            .as_ref()
            .map(|c| (c.len() / h, c.iter().map(|&x| x as f32).collect())))
    }

    fn restore(
        &mut self,
        m: &Params<Vec<f32>>,
        v: &Params<Vec<f32>>,
        step: u64,
        carry: Option<(usize, &[f32])>,
    ) -> Result<()> {
        m.check(&self.config)?;
        v.check(&self.config)?;
        self.state = OptimState {
            m: m.to_f64(),
            v: v.to_f64(),
        };
        self.step = step;
        self.carry = carry.map(|(_, h)| h.iter().map(|&x| x as f64).collect());
        Ok(())
    }
}
