//! Checkpoints in safetensors with PyTorch's names: `rnn.weight_ih_l0` (H, I),
//! `rnn.weight_hh_l0` (H, H), `rnn.bias_ih_l0` (H), `rnn.bias_hh_l0` (H), `head.weight`
//! (O, H), `head.bias` (O). This crate keeps one hidden bias b_h: it is saved as
//! `bias_ih_l0` with `bias_hh_l0` all zeros, and loaded as `bias_ih_l0 + bias_hh_l0`.
//! Optimizer state is saved as `optim.m.<name>` / `optim.v.<name>`, the carried hidden
//! state as `state.h` (B, H); config, task, vocabulary and step in the metadata.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{Activation, Params, RnnConfig};

const FORMAT: &str = "wgpu-rnn/1";
const NAMES: [&str; 5] = [
    "rnn.weight_ih_l0",
    "rnn.weight_hh_l0",
    "rnn.bias_ih_l0",
    "head.weight",
    "head.bias",
];

/// Everything needed to sample from a model or resume training it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub config: RnnConfig,
    /// "text", "sine" or "adding".
    pub task: String,
    /// The text task's vocabulary, in index order.
    pub vocab: Option<Vec<char>>,
    pub params: Params<Vec<f32>>,
    /// Optimizer moments (m, v), if saved.
    pub optim: Option<(Params<Vec<f32>>, Params<Vec<f32>>)>,
    /// Training steps taken.
    pub step: u64,
    /// Carried hidden state (B, values) for stateful training.
    pub carry: Option<(usize, Vec<f32>)>,
    /// Anything else worth keeping (hyperparameters, seed), as strings.
    pub extra: BTreeMap<String, String>,
}

fn err(path: &Path, why: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        why: why.into(),
    }
}

impl Checkpoint {
    /// Writes to `path.tmp`, syncs it, then renames over `path`: a crash while saving
    /// leaves the previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shapes = self.config.param_shapes();
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        let zeros = vec![0.0f32; self.config.hidden_size];
        for ((name, v), s) in NAMES
            .iter()
            .zip(self.params.as_array())
            .zip(shapes.as_array())
        {
            tensors.push((name.to_string(), s.clone(), v));
        }
        tensors.push((
            "rnn.bias_hh_l0".into(),
            vec![self.config.hidden_size],
            &zeros,
        ));
        if let Some((m, v)) = &self.optim {
            for (prefix, p) in [("optim.m.", m), ("optim.v.", v)] {
                for ((name, t), s) in NAMES.iter().zip(p.as_array()).zip(shapes.as_array()) {
                    tensors.push((format!("{prefix}{name}"), s.clone(), t));
                }
            }
        }
        if let Some((b, h)) = &self.carry {
            tensors.push(("state.h".into(), vec![*b, self.config.hidden_size], h));
        }
        let views = tensors
            .iter()
            .map(|(n, s, d)| {
                TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(d))
                    .map(|v| (n.clone(), v))
                    .map_err(|e| err(path, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta: HashMap<String, String> = self.extra.clone().into_iter().collect();
        let c = &self.config;
        for (k, v) in [
            ("format", FORMAT.to_string()),
            ("input_size", c.input_size.to_string()),
            ("hidden_size", c.hidden_size.to_string()),
            ("output_size", c.output_size.to_string()),
            (
                "nonlinearity",
                match c.activation {
                    Activation::Tanh => "tanh",
                    Activation::Relu => "relu",
                }
                .to_string(),
            ),
            ("task", self.task.clone()),
            ("step", self.step.to_string()),
        ] {
            meta.insert(k.to_string(), v);
        }
        if let Some(vocab) = &self.vocab {
            let codes: Vec<String> = vocab.iter().map(|&ch| (ch as u32).to_string()).collect();
            meta.insert("vocab".into(), codes.join(","));
        }
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| err(path, e.to_string()))?;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("safetensors.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                d.sync_all().ok();
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| err(path, format!("not a valid safetensors file ({e})")))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| err(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(err(
                path,
                format!("metadata 'format' is not {FORMAT:?}; not a wgpu-rnn checkpoint"),
            ));
        }
        let num = |key: &str| -> Result<u64> {
            meta.get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| err(path, format!("metadata '{key}' is missing or not a number")))
        };
        let activation = match meta.get("nonlinearity").map(String::as_str) {
            None | Some("tanh") => Activation::Tanh,
            Some("relu") => Activation::Relu,
            Some(o) => return Err(err(path, format!("unknown nonlinearity {o:?}"))),
        };
        let size = |key| -> Result<usize> {
            let v = num(key)?;
            if v == 0 || v > 1 << 20 {
                return Err(err(
                    path,
                    format!("metadata '{key}' = {v} is out of range 1..=2^20"),
                ));
            }
            Ok(v as usize)
        };
        let config = RnnConfig::new(
            size("input_size")?,
            size("hidden_size")?,
            size("output_size")?,
        )
        .with_activation(activation);
        let shapes = config.param_shapes();
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| err(path, format!("tensor {name} is missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(err(
                    path,
                    format!("tensor {name} is {:?}, expected F32", t.dtype()),
                ));
            }
            if t.shape() != shape {
                return Err(err(
                    path,
                    format!(
                        "tensor {name} has shape {:?}, expected {shape:?}",
                        t.shape()
                    ),
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let read_params = |prefix: &str| -> Result<Params<Vec<f32>>> {
            let mut k = 0;
            shapes.try_map(|s| {
                let v = read(&format!("{prefix}{}", NAMES[k]), s);
                k += 1;
                v
            })
        };
        let mut params = read_params("")?;
        let b_hh = read("rnn.bias_hh_l0", &[config.hidden_size])?;
        params.b_h.iter_mut().zip(&b_hh).for_each(|(a, b)| *a += b);
        let optim = if st.names().iter().any(|n| n.starts_with("optim.")) {
            Some((read_params("optim.m.")?, read_params("optim.v.")?))
        } else {
            None
        };
        let carry = match st.tensor("state.h") {
            Ok(t) => {
                let b = t.shape().first().copied().unwrap_or(0);
                Some((b, read("state.h", &[b, config.hidden_size])?))
            }
            Err(_) => None,
        };
        let vocab = match meta.get("vocab") {
            None => None,
            Some(s) => Some(
                s.split(',')
                    .map(|c| c.parse::<u32>().ok().and_then(char::from_u32))
                    .collect::<Option<Vec<char>>>()
                    .ok_or_else(|| err(path, "metadata 'vocab' is corrupt"))?,
            ),
        };
        let reserved = [
            "format",
            "input_size",
            "hidden_size",
            "output_size",
            "nonlinearity",
            "task",
            "step",
            "vocab",
        ];
        Ok(Checkpoint {
            task: meta.get("task").cloned().unwrap_or_default(),
            step: num("step")?,
            extra: meta
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config,
            vocab,
            params,
            optim,
            carry,
        })
    }
}
