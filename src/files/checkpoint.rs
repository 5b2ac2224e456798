//! Checkpoints in safetensors with PyTorch's names (see [`crate::files::interop`]): the recurrent
//! layers under `rnn.` (`rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`,
//! `rnn.bias_hh_l0`, ..., `_reverse` for a second direction) and the head as
//! `head.weight`, `head.bias`, so PyTorch's `load_state_dict` takes the model tensors.
//! Optimizer state is saved as `optim.m.<name>` / `optim.v.<name>`, the carried state as
//! `state.h` and, for LSTM, `state.c` (L·D, B, H); config, task, vocabulary and step in the
//! metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::files::interop::{self, config_metadata, read_f32, torch_entries};
use crate::model::{Activation, CellKind, Params, RnnConfig, State, MAX_LAYERS};
use crate::train::{CarriedState, Train};

const FORMAT: &str = "wgpu-rnn/1";
const PREFIX: &str = interop::RNN_PREFIX;

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
    pub optim: Option<crate::train::Moments>,
    /// Training steps taken.
    pub step: u64,
    /// Carried state (B, state) for stateful training.
    pub carried_state: Option<CarriedState>,
    /// Anything else worth keeping (hyperparameters, seed), as strings.
    pub extra: BTreeMap<String, String>,
}

fn err(path: &Path, why: impl Into<String>) -> Error {
    named_err(&path.display().to_string(), why)
}

fn named_err(name: &str, why: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: name.to_string(),
        why: why.into(),
    }
}

impl Checkpoint {
    /// Everything a trainer holds: its model config, parameters, optimizer moments, step
    /// and carried state, for task `task` (and its vocabulary, for text). `extra` records
    /// the optimizer (`optimizer`, `lr`, `momentum`, `weight_decay`, `lr_schedule`);
    /// add more (a seed) to it before saving. With data-parallel training every rank must
    /// call this (the carried state is gathered from all ranks), even if only one saves.
    pub fn from_trainer<T: Train + ?Sized>(
        trainer: &T,
        task: &str,
        vocab: Option<Vec<char>>,
    ) -> Result<Checkpoint> {
        Ok(Checkpoint {
            config: trainer.rnn_config().clone(),
            task: task.to_string(),
            vocab,
            params: trainer.params()?,
            optim: Some(trainer.optim_state()?),
            step: trainer.steps(),
            carried_state: trainer.carried_state()?,
            extra: Self::optimizer_metadata(trainer.train_config()),
        })
    }

    /// The metadata [`Checkpoint::from_trainer`] records about the optimizer (`optimizer`,
    /// `lr`, `momentum`, `weight_decay`, `lr_schedule`): for a checkpoint put together
    /// from its parts, as the browser does with the trainer's async accessors.
    pub fn optimizer_metadata(train: &crate::train::TrainConfig) -> BTreeMap<String, String> {
        let o = &train.optimizer;
        [
            ("optimizer", format!("{:?}", o.kind)),
            ("lr", o.lr.to_string()),
            ("momentum", o.momentum.to_string()),
            ("weight_decay", o.weight_decay.to_string()),
            ("lr_schedule", format!("{:?}", train.schedule)),
            ("dropout_seed", train.dropout_seed.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Puts the optimizer moments, step and carried state back into `trainer` (built
    /// from this checkpoint's config and parameters) so that training resumes where it
    /// stopped, schedule included. A checkpoint without optimizer state restores nothing.
    pub fn restore_into<T: Train + ?Sized>(&self, trainer: &mut T) -> Result<()> {
        match &self.optim {
            Some((m, v)) => trainer.restore(
                m,
                v,
                self.step,
                self.carried_state.as_ref().map(|(b, s)| (*b, s)),
            ),
            None => Ok(()),
        }
    }

    /// Writes to a temporary file beside `path` (`<path>.tmp-<pid>-<n>`), syncs it, then
    /// renames it over `path`: a crash while saving leaves the previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        interop::write_atomic(path, &self.to_bytes(&path.display().to_string())?)
    }

    /// The checkpoint as the bytes of a safetensors file (what [`Checkpoint::save`]
    /// writes); `name` names it in errors.
    pub fn to_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let c = &self.config;
        self.params.check(c)?;
        let mut tensors = torch_entries(c, &self.params, PREFIX);
        if let Some((m, v)) = &self.optim {
            for (tag, p) in [("optim.m.", m), ("optim.v.", v)] {
                p.check(c)?;
                for (name, shape, data) in torch_entries(c, p, PREFIX) {
                    tensors.push((format!("{tag}{name}"), shape, data));
                }
            }
        }
        if let Some((b, state)) = &self.carried_state {
            c.check_host_state("carried state", state, *b)?;
            let shape = c.state_shape(*b).to_vec();
            for (name, v) in ["state.h", "state.c"].into_iter().zip(state.tensors()) {
                tensors.push((name.into(), shape.clone(), v));
            }
        }
        let mut meta: HashMap<String, String> = self.extra.clone().into_iter().collect();
        meta.extend(config_metadata(c));
        meta.insert("format".into(), FORMAT.into());
        meta.insert("task".into(), self.task.clone());
        meta.insert("step".into(), self.step.to_string());
        if let Some(vocab) = &self.vocab {
            let codes: Vec<String> = vocab.iter().map(|&ch| (ch as u32).to_string()).collect();
            meta.insert("vocab".into(), codes.join(","));
        }
        interop::safetensors_bytes(&tensors, meta, |why| named_err(name, why))
    }

    /// Writes the model alone for PyTorch ([`interop::export_torch`]): no optimizer or
    /// carried state, no task metadata.
    pub fn export_torch(&self, path: &Path) -> Result<()> {
        interop::export_torch(&self.config, &self.params, path)
    }

    /// Reads the checkpoint file at `path`. A truncated, corrupt or hostile file (bad
    /// header, wrong dtype, absurd shapes, metadata that does not match the tensors) is an
    /// error; nothing is allocated beyond what the file holds.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// [`Checkpoint::load`] from a file's bytes; `name` names it in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        parse(bytes).map_err(|why| named_err(name, why))
    }
}

/// The metadata keys a checkpoint reserves; the others are [`Checkpoint::extra`].
const RESERVED: [&str; 15] = [
    "embedding",
    "dropout",
    "head_dropout",
    "format",
    "input_size",
    "hidden_size",
    "output_size",
    "nonlinearity",
    "cell",
    "bias",
    "num_layers",
    "bidirectional",
    "task",
    "step",
    "vocab",
];

fn parse(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let meta = header.metadata().clone().unwrap_or_default();
    let config = config_from_metadata(&meta)?;
    let model = interop::parse_torch(bytes, Some(config.activation))?;
    if model.config != config || model.prefix != PREFIX {
        return Err(format!(
            "the tensors describe {:?} under prefix {:?}, the metadata {config:?}",
            model.config, model.prefix
        ));
    }
    let params = model.params;
    let optim = if st.names().iter().any(|n| n.starts_with("optim.")) {
        let moments = |tag| read_like_params(&st, &config, &params, tag);
        Some((moments("optim.m.")?, moments("optim.v.")?))
    } else {
        None
    };
    let carried_state = carried_state(&st, &config)?;
    let vocab = vocabulary(&meta, &config)?;
    Ok(Checkpoint {
        task: meta.get("task").cloned().unwrap_or_default(),
        step: number(&meta, "step")?,
        vocab,
        carried_state,
        extra: meta
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        config,
        params,
        optim,
    })
}

/// Metadata `key` as a number.
fn number(meta: &HashMap<String, String>, key: &str) -> std::result::Result<u64, String> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("metadata '{key}' is missing or not a number"))
}

/// The model's config from the metadata (files from before LSTM, GRU, layers and
/// directions hold one-layer Elman cells with biases).
fn config_from_metadata(meta: &HashMap<String, String>) -> std::result::Result<RnnConfig, String> {
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(format!(
            "metadata 'format' is not {FORMAT:?}; not a wgpu-rnn checkpoint"
        ));
    }
    let activation = match meta.get("nonlinearity").map(String::as_str) {
        None | Some("tanh") => Activation::Tanh,
        Some("relu") => Activation::Relu,
        Some(o) => return Err(format!("unknown nonlinearity {o:?}")),
    };
    let cell = match meta.get("cell") {
        None => CellKind::Rnn,
        Some(c) => c.parse().map_err(|e: Error| e.to_string())?,
    };
    let flag = |key: &str, default: bool| match meta.get(key).map(String::as_str) {
        None => Ok(default),
        Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(o) => Err(format!("metadata '{key}' = {o:?}")),
    };
    let size = |key, max: u64| match number(meta, key)? {
        v if v == 0 || v > max => Err(format!("metadata '{key}' = {v} is out of range 1..={max}")),
        v => Ok(v as usize),
    };
    let layers = match meta.get("num_layers") {
        None => 1,
        Some(_) => size("num_layers", MAX_LAYERS as u64)?,
    };
    let (dropout, head_dropout) = interop::dropout_from_metadata(meta)?;
    let embedding = match meta.get("embedding") {
        None => None,
        Some(_) => Some(size("embedding", u32::MAX as u64)?),
    };
    let config = RnnConfig::new(
        size("input_size", 1 << 20)?,
        size("hidden_size", 1 << 20)?,
        size("output_size", 1 << 20)?,
    )
    .with_cell(cell)
    .with_activation(activation)
    .with_layers(layers)
    .with_bidirectional(flag("bidirectional", false)?)
    .with_bias(flag("bias", true)?)
    .with_dropout(dropout)
    .with_head_dropout(head_dropout);
    Ok(match embedding {
        Some(v) => config.with_embedding(v),
        None => config,
    })
}

/// Tensor `name`, which must have `shape`.
fn read_shaped(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
) -> std::result::Result<Vec<f32>, String> {
    match read_f32(st, name)? {
        None => Err(format!("tensor {name} is missing")),
        Some((s, v)) if s == shape => Ok(v),
        Some((s, _)) => Err(format!("tensor {name} has shape {s:?}, expected {shape:?}")),
    }
}

/// Tensors shaped and named like the parameters, under `tag` (optimizer moments).
fn read_like_params(
    st: &SafeTensors<'_>,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    tag: &str,
) -> std::result::Result<Params<Vec<f32>>, String> {
    let names: Vec<String> = torch_entries(config, params, PREFIX)
        .into_iter()
        .map(|(n, _, _)| format!("{tag}{n}"))
        .collect();
    let mut k = 0;
    config.param_shapes().try_map(|s| {
        let v = read_shaped(st, &names[k], s);
        k += 1;
        v
    })
}

/// The carried state (`state.h`, and for LSTM `state.c`), if the file has one: (L·D, B, H)
/// each, or (B, H) for a one-cell model.
fn carried_state(
    st: &SafeTensors<'_>,
    config: &RnnConfig,
) -> std::result::Result<Option<CarriedState>, String> {
    let Ok(t) = st.tensor("state.h") else {
        return Ok(None);
    };
    let shape = t.shape().to_vec();
    let b = match shape[..] {
        [c, b, _] if c == config.cells() => b,
        [b, _] if config.cells() == 1 => b,
        _ => 0,
    };
    let expected = if shape.len() == 2 {
        vec![b, config.hidden_size]
    } else {
        config.state_shape(b).to_vec()
    };
    let c = if config.cell.has_c() {
        Some(read_shaped(st, "state.c", &expected)?)
    } else {
        None
    };
    let h = read_shaped(st, "state.h", &expected)?;
    Ok(Some((b, State { h, c })))
}

/// A text model's vocabulary (metadata `vocab`: code points), which must match its sizes:
/// it reads and predicts one-hot characters of it.
fn vocabulary(
    meta: &HashMap<String, String>,
    config: &RnnConfig,
) -> std::result::Result<Option<Vec<char>>, String> {
    let Some(s) = meta.get("vocab") else {
        return Ok(None);
    };
    let v = s
        .split(',')
        .map(|c| c.parse::<u32>().ok().and_then(char::from_u32))
        .collect::<Option<Vec<char>>>()
        .ok_or("metadata 'vocab' is corrupt")?;
    // A model reads its characters as token ids (its embedding's vocabulary) or one-hot.
    let reads = config.embedding.unwrap_or(config.input_size);
    if v.len() != reads || v.len() != config.output_size {
        return Err(format!(
            "its vocabulary has {} characters but the model takes {reads} and predicts {}",
            v.len(),
            config.output_size
        ));
    }
    Ok(Some(v))
}

/// Exports the model of the checkpoint at `checkpoint` to `output` for PyTorch
/// ([`Checkpoint::export_torch`]), after [`check_export_target`].
pub fn export_torch(checkpoint: &Path, output: &Path) -> Result<()> {
    check_export_target(checkpoint, output)?;
    Checkpoint::load(checkpoint)?.export_torch(output)
}

/// Checks, before any work, where an export of the checkpoint at `checkpoint` goes: not
/// over that checkpoint, by any name (a symlink, a hard link, `./`), which the export would
/// replace with the bare model, and into a folder that exists.
pub fn check_export_target(checkpoint: &Path, output: &Path) -> Result<()> {
    if let Some(folder) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !folder.is_dir() {
            return Err(Error::IncompatibleArgs(format!(
                "the export's output {} is in {}, which does not exist; create the folder \
                 or choose another output",
                output.display(),
                folder.display()
            )));
        }
    }
    if same_file(checkpoint, output) {
        return Err(err(
            checkpoint,
            format!(
                "the export's output {} is this checkpoint; exporting over it would replace \
                 it with the bare model (no optimizer state, task or vocabulary): choose \
                 another output file",
                output.display()
            ),
        ));
    }
    Ok(())
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
