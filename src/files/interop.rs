//! PyTorch interop: `torch.nn.RNN` / `nn.LSTM` / `nn.GRU` + `nn.Linear` state_dict tensors
//! in safetensors.
//!
//! Names: `weight_ih_l{k}` (G·H, I or D·H), `weight_hh_l{k}` (G·H, H), `bias_ih_l{k}`,
//! `bias_hh_l{k}` (G·H), with `_reverse` for the second direction, under an optional prefix
//! (`rnn.` or any other, found from `weight_ih_l0`), and the head as `head.weight` (O, D·H)
//! and `head.bias` (O). The cell is inferred from the shapes: G = rows / columns of
//! `weight_hh_l0` (1 Elman, 4 LSTM, 3 GRU). Layers, directions, sizes and whether the model
//! has biases (PyTorch's `bias=False` has none) are inferred too. The Elman nonlinearity
//! is not in a state_dict: it comes from the metadata key `nonlinearity` or the caller, and
//! an nn.RNN file with neither is an error rather than a guess. Both biases are kept as
//! they are: an [`export_torch`] file loads into PyTorch with `load_state_dict(strict=True)`
//! and round-trips exactly.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{cell_suffix, Activation, Cell, CellKind, Params, RnnConfig, MAX_LAYERS};

/// The safetensors name, shape and data of every parameter under PyTorch's names, with
/// `prefix` before the recurrent layers' names (e.g. "rnn.").
pub fn torch_entries<'a>(
    config: &RnnConfig,
    params: &'a Params<Vec<f32>>,
    prefix: &str,
) -> Vec<(String, Vec<usize>, &'a [f32])> {
    let shapes = config.param_shapes();
    let d = config.directions();
    let mut out = Vec::new();
    if let (Some(p), Some(s)) = (&params.embedding, shapes.embedding) {
        out.push((EMBEDDING.into(), s, &p[..]));
    }
    for (c, (p, s)) in params.cells.iter().zip(&shapes.cells).enumerate() {
        let sfx = cell_suffix(c, d);
        let tensors = [
            ("weight_ih", Some(&p.w_ih), Some(&s.w_ih)),
            ("weight_hh", Some(&p.w_hh), Some(&s.w_hh)),
            ("bias_ih", p.b_ih.as_ref(), s.b_ih.as_ref()),
            ("bias_hh", p.b_hh.as_ref(), s.b_hh.as_ref()),
        ];
        for (name, v, shape) in tensors {
            if let (Some(v), Some(shape)) = (v, shape) {
                out.push((format!("{prefix}{name}_{sfx}"), shape.clone(), &v[..]));
            }
        }
    }
    out.push(("head.weight".into(), shapes.w_hy, &params.w_hy[..]));
    out.push(("head.bias".into(), shapes.b_y, &params.b_y[..]));
    out
}

/// The embedding table's name in a state_dict: a module's `embedding` submodule
/// (`nn.Embedding(V, I)`), before `rnn` and `head`.
pub const EMBEDDING: &str = "embedding.weight";

/// The metadata that describes a model: cell, nonlinearity, layers, directions, biases,
/// sizes and the embedding's vocabulary (where there is one).
pub fn config_metadata(config: &RnnConfig) -> Vec<(String, String)> {
    let embedding = config
        .embedding
        .map(|v| ("embedding".into(), v.to_string()));
    let mut meta = vec![
        ("cell".into(), config.cell.name().into()),
        ("nonlinearity".into(), config.activation.name().into()),
        ("num_layers".into(), config.num_layers.to_string()),
        ("bidirectional".into(), config.bidirectional.to_string()),
        ("bias".into(), config.bias.to_string()),
        ("input_size".into(), config.input_size.to_string()),
        ("hidden_size".into(), config.hidden_size.to_string()),
        ("output_size".into(), config.output_size.to_string()),
        ("dropout".into(), config.dropout.to_string()),
        ("head_dropout".into(), config.head_dropout.to_string()),
    ];
    meta.extend(embedding);
    meta
}

/// The training-only dropout of a model's metadata ([`config_metadata`]; 0 where absent:
/// files from before dropout, and PyTorch's own).
pub(crate) fn dropout_from_metadata(
    meta: &HashMap<String, String>,
) -> std::result::Result<(f32, f32), String> {
    let p = |key: &str| match meta.get(key) {
        None => Ok(0.0),
        Some(v) => v
            .parse::<f32>()
            .ok()
            .filter(|p| (0.0..1.0).contains(p))
            .ok_or_else(|| format!("metadata '{key}' = {v:?} is not a probability in [0, 1)")),
    };
    Ok((p("dropout")?, p("head_dropout")?))
}

/// Serialises named f32 tensors with metadata as safetensors; `err` names the failure.
pub(crate) fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: HashMap<String, String>,
    err: impl Fn(String) -> Error,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, d)| {
            TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(d))
                .map(|v| (n.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))
}

/// Serialises named f32 tensors with metadata and writes them crash-safely: a temporary
/// file next to `path`, synced, renamed over `path`, and the folder synced.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: HashMap<String, String>,
    err: impl Fn(String) -> Error,
) -> Result<()> {
    write_atomic(path, &safetensors_bytes(tensors, meta, err)?)
}

/// Writes `bytes` to `path` crash-safely: into a fresh temporary file next to it, synced,
/// then renamed over `path`, so a crash leaves either the old file or the new one whole and
/// no temporary file behind on any error this process sees.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A temporary name of our own next to the target (same file system, so the rename is
    // atomic): process id and a counter, so concurrent saves never share one.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(source) = write() {
        std::fs::remove_file(&tmp).ok();
        return Err(Error::Io {
            path: tmp.display().to_string(),
            source,
        });
    }
    if let Err(source) = std::fs::rename(&tmp, path) {
        std::fs::remove_file(&tmp).ok();
        return Err(Error::Io {
            path: path.display().to_string(),
            source,
        });
    }
    // Make the rename itself durable: sync the folder (the current one for a bare name).
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().ok();
    }
    Ok(())
}

/// Writes named f32 tensors (e.g. `eval`'s outputs) crash-safely, like
/// [`save_torch`].
pub fn write_safetensors_file(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: HashMap<String, String>,
) -> Result<()> {
    write_safetensors(path, tensors, meta, |why| model_err(path, why))
}

/// The name of the recurrent submodule in an export: `M.rnn`, next to `M.head`.
pub const RNN_PREFIX: &str = "rnn.";

/// Writes the model alone as the `state_dict()` of a PyTorch module with submodules `rnn`
/// (nn.RNN / nn.LSTM / nn.GRU, batch_first=False) and `head` (nn.Linear(D·H, O)): keys
/// `rnn.weight_ih_l0`, ..., `head.weight`, `head.bias` in PyTorch's shapes, F32, and the
/// config ([`config_metadata`]: cell, nonlinearity, sizes, layers, direction, bias) in the
/// metadata, so that `load_state_dict(strict=True)` takes it. Written crash-safely (a
/// temporary file renamed over `path`): an existing `path` is replaced whole or not at all.
pub fn export_torch(config: &RnnConfig, params: &Params<Vec<f32>>, path: &Path) -> Result<()> {
    save_torch(path, config, params, RNN_PREFIX)
}

/// Saves a model as a PyTorch state_dict (the recurrent layers' names under `prefix`) plus
/// `head.*`, with the config in the metadata.
pub fn save_torch(
    path: &Path,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    prefix: &str,
) -> Result<()> {
    params.check(config)?;
    let tensors = torch_entries(config, params, prefix);
    let meta = config_metadata(config).into_iter().collect();
    write_safetensors(path, &tensors, meta, |why| model_err(path, why))
}

fn model_err(path: &Path, why: impl Into<String>) -> Error {
    Error::Model {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// A tensor's shape and values.
pub type Shaped = (Vec<usize>, Vec<f32>);

/// Reads a tensor as f32 values, converting f64; `None` if it is absent.
pub fn read_f32(st: &SafeTensors<'_>, name: &str) -> Result<Option<Shaped>, String> {
    let t = match st.tensor(name) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let data = t.data();
    let values = match t.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => return Err(format!("tensor {name} is {other:?}; expected F32 or F64")),
    };
    Ok(Some((t.shape().to_vec(), values)))
}

/// A loaded recurrent network + head.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchModel {
    pub config: RnnConfig,
    pub params: Params<Vec<f32>>,
    /// The prefix found before `weight_ih_l0` ("" or e.g. "rnn.").
    pub prefix: String,
}

/// Loads an `nn.RNN` / `nn.LSTM` / `nn.GRU` state_dict (+ `head.weight`, `head.bias`) from
/// a safetensors file. `nonlinearity` is the Elman cell's when the file's metadata names
/// none; an nn.RNN file needs one of the two (its tensors are the same for tanh and relu).
/// It must agree with the metadata and the cell.
pub fn load_torch(path: &Path, nonlinearity: Option<Activation>) -> Result<TorchModel> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_torch(&bytes, nonlinearity).map_err(|why| model_err(path, why))
}

/// The Elman nonlinearity from the metadata and the caller, which must agree and fit
/// the cell.
fn activation_of(
    meta: &HashMap<String, String>,
    caller: Option<Activation>,
    cell: CellKind,
) -> Result<Activation, String> {
    if let (Some(Activation::Relu), true) = (caller, cell != CellKind::Rnn) {
        return Err(format!(
            "nonlinearity relu applies to nn.RNN only; this file holds an {}",
            cell.name()
        ));
    }
    let from_meta = match meta.get("nonlinearity").map(String::as_str) {
        Some("tanh") => Some(Activation::Tanh),
        Some("relu") => Some(Activation::Relu),
        Some(o) => {
            return Err(format!(
                "metadata nonlinearity {o:?} is neither tanh nor relu"
            ))
        }
        None => None,
    };
    let activation = match (from_meta, caller) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "the file says nonlinearity {}, the caller {}",
                a.name(),
                b.name()
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) if cell == CellKind::Rnn => {
            return Err(
                "this nn.RNN state_dict does not say its nonlinearity (tanh and relu \
                        models have the same tensors): pass it (--nonlinearity tanh|relu in \
                        the CLI) or write it into the file's metadata as nonlinearity = \
                        \"tanh\" or \"relu\""
                    .into(),
            )
        }
        (None, None) => Activation::Tanh,
    };
    if cell != CellKind::Rnn && activation != Activation::Tanh {
        return Err(format!(
            "nonlinearity {} applies to nn.RNN only; this file holds an {}",
            activation.name(),
            cell.name()
        ));
    }
    Ok(activation)
}

/// [`load_torch`] on bytes in memory; errors are plain messages.
pub fn parse_torch(bytes: &[u8], nonlinearity: Option<Activation>) -> Result<TorchModel, String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let meta = header.metadata().clone().unwrap_or_default();
    let (config, prefix) = infer_config(&st, &meta, nonlinearity)?;
    let params = read_params(&st, &config, &prefix)?;
    Ok(TorchModel {
        config,
        params,
        prefix,
    })
}

/// The model a state_dict holds, read off its tensors' names and shapes (and the
/// nonlinearity from the metadata or the caller), and the prefix of its recurrent tensors.
fn infer_config(
    st: &SafeTensors<'_>,
    meta: &HashMap<String, String>,
    nonlinearity: Option<Activation>,
) -> Result<(RnnConfig, String), String> {
    let names = st.names();
    // The shortest prefix wins: a checkpoint also holds optimizer moments under longer ones.
    let first = names
        .iter()
        .filter(|n| n.ends_with("weight_ih_l0"))
        .min_by_key(|n| n.len())
        .ok_or(
            "no tensor named weight_ih_l0 (with any prefix): not an nn.RNN, nn.LSTM or nn.GRU \
             state_dict",
        )?;
    let prefix = first[..first.len() - "weight_ih_l0".len()].to_string();
    let has = |name: String| names.iter().any(|n| **n == name);
    let get = |name: &str| read_f32(st, name);
    let need = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        get(name)?.ok_or_else(|| format!("tensor {name} is missing"))
    };
    let (ih0_shape, _) = need(&format!("{prefix}weight_ih_l0"))?;
    let (hh0_shape, _) = need(&format!("{prefix}weight_hh_l0"))?;
    let (gh, h, i) = match (&ih0_shape[..], &hh0_shape[..]) {
        ([gh, i], [gh2, h]) if gh == gh2 && *h > 0 && *i > 0 && gh % h == 0 => (*gh, *h, *i),
        _ => {
            return Err(format!(
                "{prefix}weight_ih_l0 {ih0_shape:?} and {prefix}weight_hh_l0 {hh0_shape:?} \
                 are not (G·H, I) and (G·H, H)"
            ))
        }
    };
    let cell = CellKind::from_gates(gh / h).ok_or_else(|| {
        let cells: Vec<String> = CellKind::ALL
            .iter()
            .map(|c| format!("{} {}", c.name(), c.gates()))
            .collect();
        format!(
            "{prefix}weight_hh_l0 is {hh0_shape:?}: {} gate blocks of H = {h} rows, but the \
             cells have: {}",
            gh / h,
            cells.join(", ")
        )
    })?;
    if let Some(named) = meta.get("cell") {
        if named != cell.name() {
            return Err(format!(
                "metadata cell {named:?} contradicts the tensors, which hold a {} ({} gates)",
                cell.name(),
                cell.gates()
            ));
        }
    }
    let activation = activation_of(meta, nonlinearity, cell)?;
    let layers = (0..=MAX_LAYERS)
        .take_while(|k| has(format!("{prefix}weight_ih_l{k}")))
        .count();
    if layers > MAX_LAYERS {
        return Err(format!("more than {MAX_LAYERS} layers"));
    }
    let bidirectional = has(format!("{prefix}weight_ih_l0_reverse"));
    let bias = has(format!("{prefix}bias_ih_l0")) || has(format!("{prefix}bias_hh_l0"));
    let (head_shape, _) = need("head.weight")?;
    let d = if bidirectional { 2 } else { 1 };
    let o = match head_shape[..] {
        [o, width] if width == h * d && o > 0 => o,
        _ => {
            return Err(format!(
                "head.weight has shape {head_shape:?}, expected (O, {})",
                h * d
            ))
        }
    };
    let (dropout, head_dropout) = dropout_from_metadata(meta)?;
    let mut config = RnnConfig::new(i, h, o)
        .with_cell(cell)
        .with_activation(activation)
        .with_layers(layers)
        .with_bidirectional(bidirectional)
        .with_bias(bias)
        .with_dropout(dropout)
        .with_head_dropout(head_dropout);
    if let Some((shape, _)) = get(EMBEDDING)? {
        match shape[..] {
            [v, e] if e == i && v > 0 => config = config.with_embedding(v),
            _ => {
                return Err(format!(
                    "{EMBEDDING} has shape {shape:?}, expected (vocabulary, {i}): its rows \
                     feed {prefix}weight_ih_l0, which reads {i} features"
                ))
            }
        }
    }
    if let Some(named) = meta.get("embedding") {
        if config.embedding.map(|v| v.to_string()).as_ref() != Some(named) {
            return Err(format!(
                "metadata embedding = {named:?} but the file has {}",
                match config.embedding {
                    Some(v) => format!("an {EMBEDDING} of {v} rows"),
                    None => format!("no {EMBEDDING}"),
                }
            ));
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok((config, prefix))
}

/// The parameters of `config` under `prefix` (and the head's), each of its shape.
fn read_params(
    st: &SafeTensors<'_>,
    config: &RnnConfig,
    prefix: &str,
) -> Result<Params<Vec<f32>>, String> {
    let o = config.output_size;
    let get = |name: &str| read_f32(st, name);
    let need = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        get(name)?.ok_or_else(|| format!("tensor {name} is missing"))
    };
    let shapes = config.param_shapes();
    let take = |name: String, shape: &[usize]| -> Result<Vec<f32>, String> {
        let (s, v) = need(&name)?;
        if s != shape {
            return Err(format!("tensor {name} has shape {s:?}, expected {shape:?}"));
        }
        Ok(v)
    };
    let mut cells = Vec::new();
    for (c, s) in shapes.cells.iter().enumerate() {
        let sfx = cell_suffix(c, config.directions());
        let bias_of = |kind: &str, shape: &Option<Vec<usize>>| match shape {
            Some(shape) => take(format!("{prefix}{kind}_{sfx}"), shape).map(Some),
            None => Ok(None),
        };
        cells.push(Cell {
            w_ih: take(format!("{prefix}weight_ih_{sfx}"), &s.w_ih)?,
            w_hh: take(format!("{prefix}weight_hh_{sfx}"), &s.w_hh)?,
            b_ih: bias_of("bias_ih", &s.b_ih)?,
            b_hh: bias_of("bias_hh", &s.b_hh)?,
        });
    }
    let b_y = match get("head.bias")? {
        None => vec![0.0; o],
        Some((s, v)) if s == [o] => v,
        Some((s, _)) => return Err(format!("tensor head.bias has shape {s:?}, expected [{o}]")),
    };
    Ok(Params {
        embedding: match &shapes.embedding {
            Some(s) => Some(take(EMBEDDING.into(), s)?),
            None => None,
        },
        cells,
        w_hy: take("head.weight".into(), &shapes.w_hy)?,
        b_y,
    })
}
