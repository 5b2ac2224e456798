//! Training on the CPU reference, in f64: the yardstick for the GPU trainer and the
//! `--device cpu` path of the CLI.

use super::optim::{clip_and_update, OptimState};
use super::{Batch, CarriedState, LossKind, StepStats, Targets, Train, TrainConfig};
use crate::cpu;
use crate::error::{Error, Result};
use crate::model::{DropoutKey, Params, RnnConfig, State};

/// Trains on the CPU reference in f64, with the same rules as [`super::Trainer`].
pub struct CpuTrainer {
    config: RnnConfig,
    train: TrainConfig,
    params: Params<Vec<f64>>,
    state: OptimState,
    carried_state: Option<State<Vec<f64>>>,
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
            carried_state: None,
            step: 0,
        })
    }

    /// Forward and loss from `init` (or zeros), with the dropout of `key` (a training
    /// step) or none; returns (loss, dy, forward state, the layer-0 input x).
    fn loss(
        &self,
        batch: &Batch,
        init: Option<&State<Vec<f64>>>,
        key: Option<DropoutKey>,
    ) -> Result<(f64, Vec<f64>, cpu::Forward, Vec<f64>)> {
        let scale = batch.check(&self.config, self.train.loss)? as f64;
        let shape = [batch.t, batch.b, self.config.input_size];
        let lengths = batch.lengths.as_deref();
        let (cfg, p) = (&self.config, &self.params);
        let (x, fwd) = match &batch.tokens {
            Some(ids) => cpu::forward_tokens(cfg, p, ids, [batch.t, batch.b], init, lengths, key)?,
            None => {
                let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
                let fwd = match key {
                    Some(k) => cpu::forward_train(cfg, p, &x, &shape, init, lengths, k)?,
                    None => cpu::forward(cfg, p, &x, &shape, init, lengths)?,
                };
                (x, fwd)
            }
        };
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
        Ok((loss, dy, fwd, x))
    }
}

impl Train for CpuTrainer {
    fn step(&mut self, batch: &Batch) -> Result<StepStats> {
        let n = self.config.cells() * batch.b * self.config.hidden_size;
        let init = match &self.carried_state {
            Some(c) if self.train.stateful && c.h.len() == n => Some(c.clone()),
            _ => None,
        };
        let key = DropoutKey {
            seed: self.train.dropout_seed,
            step: self.step,
        };
        let (loss, dy, fwd, x) = self.loss(batch, init.as_ref(), Some(key))?;
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
        self.carried_state = Some(fwd.state);
        Ok(StepStats {
            loss: loss as f32,
            grad_norm: norm as f32,
            skipped: !(norm.is_finite() && loss.is_finite()),
            step: self.step,
            lr: self.train.lr_for_step(self.step),
        })
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<f32> {
        Ok(self.loss(batch, None, None)?.0 as f32)
    }

    fn params(&self) -> Result<Params<Vec<f32>>> {
        Ok(self.params.to_f32())
    }

    fn reset_state(&mut self) {
        self.carried_state = None;
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

    fn carried_state(&self) -> Result<Option<CarriedState>> {
        let per_row = self.config.hidden_size * self.config.cells();
        Ok(self.carried_state.as_ref().map(|c| {
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
        carried_state: Option<(usize, &State<Vec<f32>>)>,
    ) -> Result<()> {
        m.check(&self.config)?;
        v.check(&self.config)?;
        if let Some((b, s)) = carried_state {
            self.config.check_host_state("carried state", s, b)?;
        }
        self.state = OptimState {
            m: m.to_f64(),
            v: v.to_f64(),
        };
        self.step = step;
        self.carried_state =
            carried_state.map(|(_, s)| s.map(|v| v.iter().map(|&x| x as f64).collect()));
        Ok(())
    }
}
