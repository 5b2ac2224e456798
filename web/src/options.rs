//! The page's training options: a JSON object whose keys and defaults are `wgpu-rnn
//! train`'s for the text task. Values may be JSON numbers or strings (URL parameters
//! arrive as text). An unknown key or a bad value is an error naming the key.

use serde_json::Value;
use wgpu_rnn::data::Task;
use wgpu_rnn::{
    Activation, CellKind, LossKind, OptimizerConfig, OptimizerKind, RnnConfig, TrainConfig,
};

/// The options, each as `wgpu-rnn train` names and defaults it.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// rnn, lstm or gru.
    pub cell: String,
    /// tanh or relu (the rnn cell only).
    pub nonlinearity: String,
    pub hidden: usize,
    pub layers: usize,
    /// The token embedding's dimension (0: one-hot characters).
    pub embedding: usize,
    /// Characters per sequence (truncated BPTT length).
    pub seq: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// adam, sgd, adagrad or adamw.
    pub optimizer: String,
    pub lr: f32,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cell: "rnn".into(),
            nonlinearity: "tanh".into(),
            hidden: 128,
            layers: 1,
            embedding: wgpu_rnn::data::text::DEFAULT_EMBEDDING,
            seq: 48,
            batch: 32,
            optimizer: "adam".into(),
            lr: 0.01,
            seed: 1,
        }
    }
}

const KEYS: &str = "cell, nonlinearity, hidden, layers, embedding, seq, batch, optimizer, lr, seed";

/// The CLI's gradient clipping (`--clip` default) and SGD momentum (`--momentum` default).
const CLIP: f32 = 5.0;
const SGD_MOMENTUM: f32 = 0.9;

fn text(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.trim().to_lowercase()),
        _ => Err(format!("option {key}: expected a name, got {v}")),
    }
}

fn number(key: &str, v: &Value) -> Result<f64, String> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|x| x.is_finite())
        .ok_or_else(|| format!("option {key}: expected a number, got {v}"))
}

fn count(key: &str, v: &Value, max: usize) -> Result<usize, String> {
    let x = number(key, v)?;
    if x.fract() != 0.0 || x < 1.0 || x > max as f64 {
        return Err(format!(
            "option {key}: {x} is not a whole number from 1 to {max}"
        ));
    }
    Ok(x as usize)
}

impl Options {
    /// Parses a JSON object of options; missing keys keep their defaults.
    pub fn parse(json: &str) -> Result<Self, String> {
        let v: Value = if json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(json).map_err(|e| format!("the options are not JSON: {e}"))?
        };
        let map = v
            .as_object()
            .ok_or_else(|| format!("the options must be a JSON object, got {v}"))?;
        let mut o = Options::default();
        for (k, v) in map {
            match k.as_str() {
                "cell" => o.cell = text(k, v)?,
                "nonlinearity" => o.nonlinearity = text(k, v)?,
                "hidden" => o.hidden = count(k, v, 4096)?,
                "layers" => o.layers = count(k, v, wgpu_rnn::model::MAX_LAYERS)?,
                "embedding" => {
                    let x = number(k, v)?;
                    if x.fract() != 0.0 || !(0.0..=4096.0).contains(&x) {
                        return Err(format!(
                            "option embedding: {x} is not a whole number from 0 (one-hot) to 4096"
                        ));
                    }
                    o.embedding = x as usize;
                }
                "seq" => o.seq = count(k, v, 4096)?,
                "batch" => o.batch = count(k, v, 4096)?,
                "optimizer" => o.optimizer = text(k, v)?,
                "lr" => o.lr = number(k, v)? as f32,
                "seed" => {
                    let x = number(k, v)?;
                    if x.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&x) {
                        return Err(format!("option seed: {x} is not a whole number >= 0"));
                    }
                    o.seed = x as u64;
                }
                _ => return Err(format!("unknown option {k:?}; the options are {KEYS}")),
            }
        }
        o.model(2)?;
        o.train_config()?;
        Ok(o)
    }

    /// The model for a vocabulary of `vocab` characters: an embedding of them into
    /// [`Options::embedding`] features, or one-hot inputs for 0.
    pub fn model(&self, vocab: usize) -> Result<RnnConfig, String> {
        let cell: CellKind = self.cell.parse().map_err(|e| format!("option cell: {e}"))?;
        let activation = match self.nonlinearity.as_str() {
            "tanh" => Activation::Tanh,
            "relu" if cell == CellKind::Rnn => Activation::Relu,
            "relu" => {
                return Err(format!(
                    "option nonlinearity: relu is for the rnn cell only, not {}",
                    cell.name()
                ))
            }
            other => {
                return Err(format!(
                    "option nonlinearity: {other:?} is not tanh or relu"
                ))
            }
        };
        let inputs = if self.embedding > 0 {
            self.embedding
        } else {
            vocab
        };
        let c = RnnConfig::new(inputs, self.hidden, vocab)
            .with_cell(cell)
            .with_layers(self.layers)
            .with_activation(activation);
        let c = match self.embedding {
            0 => c,
            _ => c.with_embedding(vocab),
        };
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    pub fn optimizer_kind(&self) -> Result<OptimizerKind, String> {
        Ok(match self.optimizer.as_str() {
            "adam" => OptimizerKind::Adam,
            "sgd" => OptimizerKind::Sgd,
            "adagrad" => OptimizerKind::Adagrad,
            "adamw" => OptimizerKind::AdamW,
            other => {
                return Err(format!(
                    "option optimizer: {other:?} is not adam, sgd, adagrad or adamw"
                ))
            }
        })
    }

    /// How the text task trains: the CLI's settings (clipping at 5, stateful streams,
    /// SGD with momentum 0.9).
    pub fn train_config(&self) -> Result<TrainConfig, String> {
        let kind = self.optimizer_kind()?;
        let mut opt = OptimizerConfig::new(kind, self.lr);
        if kind == OptimizerKind::Sgd {
            opt.momentum = SGD_MOMENTUM;
        }
        let text = Task::Text(wgpu_rnn::data::Text::from_vocab(vec!['a', 'b']));
        let loss: LossKind = text.loss();
        let mut tc = TrainConfig::new(opt, loss);
        tc.clip_norm = Some(CLIP);
        tc.stateful = text.stateful();
        tc.validate()
            .map_err(|e| format!("option lr or optimizer: {e}"))?;
        Ok(tc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_numbers_as_text_and_errors_name_the_key() {
        assert_eq!(Options::parse("").unwrap(), Options::default());
        let o = Options::parse(r#"{"cell":"GRU","hidden":"64","lr":0.002,"seed":7}"#).unwrap();
        assert_eq!(
            (o.cell.as_str(), o.hidden, o.lr, o.seed),
            ("gru", 64, 0.002, 7)
        );
        for (json, needle) in [
            (r#"{"hiden":3}"#, "unknown option \"hiden\""),
            (r#"{"hidden":0}"#, "option hidden"),
            (r#"{"hidden":"lots"}"#, "option hidden"),
            (r#"{"cell":"transformer"}"#, "option cell"),
            (
                r#"{"cell":"lstm","nonlinearity":"relu"}"#,
                "option nonlinearity",
            ),
            (r#"{"optimizer":"lbfgs"}"#, "option optimizer"),
            (r#"{"lr":-1}"#, "lr"),
            (r#"[1]"#, "JSON object"),
        ] {
            let e = Options::parse(json).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
