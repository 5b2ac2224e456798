//! PyTorch interop: `torch.nn.RNN` + `nn.Linear` state_dict tensors in safetensors.
//!
//! Names: `weight_ih_l{k}` (H, I or D·H), `weight_hh_l{k}` (H, H), `bias_ih_l{k}`,
//! `bias_hh_l{k}` (H), with `_reverse` for the second direction, under an optional prefix
//! (`rnn.` or any other, found from `weight_ih_l0`), and the head as `head.weight` (O, D·H)
//! and `head.bias` (O). Layers, directions and sizes are inferred from the tensors; the
//! nonlinearity comes from the metadata key `nonlinearity` when present.
//!
//! **Biases.** This crate keeps one hidden bias per cell, b_h = b_ih + b_hh (they only ever
//! appear summed). Import sums them (a missing one counts as zero, as with PyTorch's
//! `bias=False`); export writes b_h as `bias_ih_l{k}` and zeros as `bias_hh_l{k}`. A PyTorch
//! model loaded from an export computes the same function; its two bias tensors differ
//! from the original ones, their sum is the same up to f32 rounding of that one addition.
//! PyTorch gives `bias_ih` and `bias_hh` the same gradient, which is b_h's gradient here.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{cell_suffix, Activation, Cell, Params, RnnConfig, MAX_LAYERS};

/// The safetensors name, shape and data of every parameter under PyTorch's names, with
/// `prefix` before the RNN's names (e.g. "rnn."). b_h goes out as `bias_ih`; the zero
/// `bias_hh` tensors are added by [`save_torch`] and checkpoints.
pub fn torch_entries<'a>(
    config: &RnnConfig,
    params: &'a Params<Vec<f32>>,
    prefix: &str,
) -> Vec<(String, Vec<usize>, &'a [f32])> {
    let shapes = config.param_shapes();
    let d = config.directions();
    let mut out = Vec::new();
    for (c, (p, s)) in params.cells.iter().zip(&shapes.cells).enumerate() {
        let sfx = cell_suffix(c, d);
        out.push((
            format!("{prefix}weight_ih_{sfx}"),
            s.w_ih.clone(),
            &p.w_ih[..],
        ));
        out.push((
            format!("{prefix}weight_hh_{sfx}"),
            s.w_hh.clone(),
            &p.w_hh[..],
        ));
        out.push((format!("{prefix}bias_ih_{sfx}"), s.b_h.clone(), &p.b_h[..]));
    }
    out.push(("head.weight".into(), shapes.w_hy, &params.w_hy[..]));
    out.push(("head.bias".into(), shapes.b_y, &params.b_y[..]));
    out
}

/// Names of the zero `bias_hh` tensors that go with [`torch_entries`].
pub fn torch_zero_bias_names(config: &RnnConfig, prefix: &str) -> Vec<String> {
    (0..config.cells())
        .map(|c| format!("{prefix}bias_hh_{}", cell_suffix(c, config.directions())))
        .collect()
}

/// The metadata that describes a model: nonlinearity, layers, directions and sizes.
pub fn config_metadata(config: &RnnConfig) -> Vec<(String, String)> {
    vec![
        (
            "nonlinearity".into(),
            match config.activation {
                Activation::Tanh => "tanh",
                Activation::Relu => "relu",
            }
            .into(),
        ),
        ("num_layers".into(), config.num_layers.to_string()),
        ("bidirectional".into(), config.bidirectional.to_string()),
        ("input_size".into(), config.input_size.to_string()),
        ("hidden_size".into(), config.hidden_size.to_string()),
        ("output_size".into(), config.output_size.to_string()),
    ]
}

/// Serialises named f32 tensors with metadata and writes them crash-safely: a temporary
/// file next to `path`, synced, renamed over `path`, and the folder synced.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: HashMap<String, String>,
    err: impl Fn(String) -> Error,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, s, d)| {
            TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(d))
                .map(|v| (n.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| err(e.to_string()))?;
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
        f.write_all(&bytes)?;
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

/// Saves a model as an `nn.RNN` state_dict (names under `prefix`) plus `head.*`, with the
/// config in the metadata.
pub fn save_torch(
    path: &Path,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    prefix: &str,
) -> Result<()> {
    params.check(config)?;
    let zeros = vec![0.0f32; config.hidden_size];
    let mut tensors = torch_entries(config, params, prefix);
    for name in torch_zero_bias_names(config, prefix) {
        tensors.push((name, vec![config.hidden_size], &zeros));
    }
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

/// A loaded `nn.RNN` + head.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchModel {
    pub config: RnnConfig,
    pub params: Params<Vec<f32>>,
    /// The prefix found before `weight_ih_l0` ("" or e.g. "rnn.").
    pub prefix: String,
}

/// Loads an `nn.RNN` state_dict (+ `head.weight`, `head.bias`) from safetensors bytes.
/// `nonlinearity` is used when the file's metadata has none (tanh if neither says).
pub fn load_torch(path: &Path, nonlinearity: Option<Activation>) -> Result<TorchModel> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_torch(&bytes, nonlinearity).map_err(|why| model_err(path, why))
}

/// [`load_torch`] on bytes in memory; errors are plain messages.
pub fn parse_torch(bytes: &[u8], nonlinearity: Option<Activation>) -> Result<TorchModel, String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let meta = header.metadata().clone().unwrap_or_default();
    let activation = match meta.get("nonlinearity").map(String::as_str) {
        Some("tanh") => Activation::Tanh,
        Some("relu") => Activation::Relu,
        Some(o) => {
            return Err(format!(
                "metadata nonlinearity {o:?} is neither tanh nor relu"
            ))
        }
        None => nonlinearity.unwrap_or(Activation::Tanh),
    };
    let names = st.names();
    // The shortest prefix wins: a checkpoint also holds optimizer moments under longer ones.
    let first = names
        .iter()
        .filter(|n| n.ends_with("weight_ih_l0"))
        .min_by_key(|n| n.len())
        .ok_or("no tensor named weight_ih_l0 (with any prefix): not an nn.RNN state_dict")?;
    let prefix = first[..first.len() - "weight_ih_l0".len()].to_string();
    let get = |name: &str| read_f32(&st, name);
    let need = |name: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        get(name)?.ok_or_else(|| format!("tensor {name} is missing"))
    };
    let (ih0_shape, _) = need(&format!("{prefix}weight_ih_l0"))?;
    let (hh0_shape, _) = need(&format!("{prefix}weight_hh_l0"))?;
    let (h, i) = match (&ih0_shape[..], &hh0_shape[..]) {
        ([h, i], [h2, h3]) if h == h2 && h == h3 && *h > 0 && *i > 0 => (*h, *i),
        _ => {
            return Err(format!(
                "{prefix}weight_ih_l0 {ih0_shape:?} and {prefix}weight_hh_l0 {hh0_shape:?} \
                 are not (H, I) and (H, H)"
            ))
        }
    };
    let layers = (0..=MAX_LAYERS)
        .take_while(|k| {
            names
                .iter()
                .any(|n| **n == format!("{prefix}weight_ih_l{k}"))
        })
        .count();
    if layers > MAX_LAYERS {
        return Err(format!("more than {MAX_LAYERS} layers"));
    }
    let bidirectional = names
        .iter()
        .any(|n| **n == format!("{prefix}weight_ih_l0_reverse"));
    let (head_shape, _) = need("head.weight")?;
    let o = match head_shape[..] {
        [o, width] if width == h * if bidirectional { 2 } else { 1 } && o > 0 => o,
        _ => {
            return Err(format!(
                "head.weight has shape {head_shape:?}, expected (O, {})",
                h * if bidirectional { 2 } else { 1 }
            ))
        }
    };
    let config = RnnConfig::new(i, h, o)
        .with_activation(activation)
        .with_layers(layers)
        .with_bidirectional(bidirectional);
    let shapes = config.param_shapes();
    let take = |name: String, shape: &[usize]| -> Result<Vec<f32>, String> {
        let (s, v) = need(&name)?;
        if s != shape {
            return Err(format!("tensor {name} has shape {s:?}, expected {shape:?}"));
        }
        Ok(v)
    };
    let optional = |name: String, n: usize| -> Result<Vec<f32>, String> {
        match get(&name)? {
            None => Ok(vec![0.0; n]),
            Some((s, v)) if s == [n] => Ok(v),
            Some((s, _)) => Err(format!("tensor {name} has shape {s:?}, expected [{n}]")),
        }
    };
    let mut cells = Vec::new();
    for (c, s) in shapes.cells.iter().enumerate() {
        let sfx = cell_suffix(c, config.directions());
        let b_ih = optional(format!("{prefix}bias_ih_{sfx}"), h)?;
        let b_hh = optional(format!("{prefix}bias_hh_{sfx}"), h)?;
        cells.push(Cell {
            w_ih: take(format!("{prefix}weight_ih_{sfx}"), &s.w_ih)?,
            w_hh: take(format!("{prefix}weight_hh_{sfx}"), &s.w_hh)?,
            b_h: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
        });
    }
    let params = Params {
        cells,
        w_hy: take("head.weight".into(), &shapes.w_hy)?,
        b_y: optional("head.bias".into(), o)?,
    };
    Ok(TorchModel {
        config,
        params,
        prefix,
    })
}
