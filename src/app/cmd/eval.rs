//! `wgpu-rnn eval`: runs a model file (a PyTorch state_dict or a checkpoint) on the
//! inputs of a safetensors file and writes its outputs.

use std::path::Path;

use super::device;
use crate::app::cli::EvalArgs;
use crate::error::{Error, Result};
use crate::files::interop;
use crate::infer::Predictor;
use crate::model::{RnnConfig, State};

/// What the input file holds: x (T, B, I), or for a model with an embedding token ids
/// (T, B); and optionally h0 and c0 (L·D, B, H) and the per-row lengths (B).
struct Inputs {
    t: usize,
    b: usize,
    x: Vec<f32>,
    ids: Option<Vec<u32>>,
    init: Option<State<Vec<f32>>>,
    lengths: Option<Vec<usize>>,
}

/// Reads and checks the input file against the model `cfg`.
fn read_inputs(path: &Path, cfg: &RnnConfig) -> Result<Inputs> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |why: String| Error::Model {
        path: path.display().to_string(),
        why,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let read = |name: &str| interop::read_f32(&st, name).map_err(bad);
    let (t, b, x, ids) = match cfg.embedding {
        Some(v) => {
            let (shape, ids) = read_ids(&st, "ids").map_err(bad)?.ok_or_else(|| {
                bad(format!(
                    "no tensor named ids: this model embeds token ids (T, B), each below {v}"
                ))
            })?;
            let [t, b] = shape[..] else {
                return Err(bad(format!("ids has shape {shape:?}, expected (T, B)")));
            };
            cfg.check_tokens(&ids, t, b)?;
            (t, b, Vec::new(), Some(ids))
        }
        None => {
            let (x_shape, x) =
                read("x")?.ok_or_else(|| bad("no tensor named x (T, B, I)".into()))?;
            let (t, b) = cfg.check_input(&x_shape)?;
            (t, b, x, None)
        }
    };
    let state = cfg.state_shape(b);
    let read_state = |name: &str| -> Result<Option<Vec<f32>>> {
        match read(name)? {
            Some((s, v)) if s == state => Ok(Some(v)),
            Some((s, _)) => Err(bad(format!(
                "{name} has shape {s:?}, expected {state:?} (layers × directions, batch, hidden)"
            ))),
            None => Ok(None),
        }
    };
    let h0 = read_state("h0")?;
    let c0 = read_state("c0")?;
    if c0.is_some() && !cfg.cell.has_c() {
        return Err(bad(format!(
            "it holds c0, but the model is a {} (only LSTM has a cell state)",
            cfg.cell.name()
        )));
    }
    // An LSTM given h0 alone starts from c0 = 0, and the other way round.
    let init = match (h0, c0) {
        (None, None) => None,
        (h, c) => {
            let zeros = || vec![0.0f32; state.iter().product()];
            Some(State {
                h: h.unwrap_or_else(zeros),
                c: cfg.cell.has_c().then(|| c.unwrap_or_else(zeros)),
            })
        }
    };
    let lengths = match read("lengths")? {
        Some((s, v)) if s == [b] => {
            let l: Vec<usize> = v.iter().map(|&f| f as usize).collect();
            if v.iter().zip(&l).any(|(&f, &u)| f != u as f32) {
                return Err(bad("lengths must be whole numbers".into()));
            }
            crate::shapes::check_lengths(&l, t, b)?;
            Some(l)
        }
        Some((s, _)) => return Err(bad(format!("lengths has shape {s:?}, expected [{b}]"))),
        None => None,
    };
    Ok(Inputs {
        t,
        b,
        x,
        ids,
        init,
        lengths,
    })
}

/// A tensor's shape and token ids.
type Ids = (Vec<usize>, Vec<u32>);

/// Token ids: a tensor of any integer dtype (PyTorch's are int64), or whole numbers in
/// f32 / f64; each must be at least 0 and fit u32 (the vocabulary is checked after).
fn read_ids(
    st: &safetensors::SafeTensors<'_>,
    name: &str,
) -> std::result::Result<Option<Ids>, String> {
    use safetensors::Dtype;
    let Ok(t) = st.tensor(name) else {
        return Ok(None);
    };
    let d = t.data();
    let values: Vec<f64> = match t.dtype() {
        Dtype::I64 => d
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::U64 => d
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::I32 => d
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::U32 => d
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::I16 => d
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::U16 => d
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .collect(),
        Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
        Dtype::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect(),
        // f32 holds every whole number up to 2^24 exactly, no larger one for sure.
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default()) as f64)
            .map(|v| if v > (1u32 << 24) as f64 { f64::NAN } else { v })
            .collect(),
        other => return Err(format!("{name} is {other:?}; expected an integer dtype")),
    };
    let ids = values
        .iter()
        .map(|&v| {
            (v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0)
                .then_some(v as u32)
                .ok_or_else(|| {
                    format!(
                        "{name} holds {v}, which is not a token id (0, 1, 2, ...; as f32 at most \
                         2^24, else use an integer dtype)"
                    )
                })
        })
        .collect::<std::result::Result<Vec<u32>, String>>()?;
    Ok(Some((t.shape().to_vec(), ids)))
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let model = interop::load_torch(&a.model, a.nonlinearity.map(Into::into))?;
    let cfg = &model.config;
    let input = read_inputs(&a.input, cfg)?;
    let (t, b) = (input.t, input.b);
    let gpu = device(a.device)?;
    let mut predictor = Predictor::new(gpu.as_ref(), cfg, &model.params)?;
    let wide = |v: &Vec<f32>| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let init = input.init.as_ref().map(|s| s.map(wide));
    let (init, lengths) = (init.as_ref(), input.lengths.as_deref());
    let out = match &input.ids {
        Some(ids) => predictor.run_tokens(ids, [t, b], init, lengths)?,
        None => predictor.run(&wide(&input.x), [t, b], init, lengths)?,
    };
    let narrow = |v: &Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (y, last) = (narrow(&out.y), out.state.map(narrow));
    let state = cfg.state_shape(b).to_vec();
    let mut tensors = vec![
        ("y".to_string(), vec![t, b, cfg.output_size], &y[..]),
        ("h_n".to_string(), state.clone(), &last.h[..]),
    ];
    if let Some(c) = &last.c {
        tensors.push(("c_n".to_string(), state, &c[..]));
    }
    let meta = interop::config_metadata(cfg).into_iter().collect();
    interop::write_safetensors_file(&a.output, &tensors, meta)?;
    eprintln!(
        "eval: {} L={} D={} I={}{} H={} O={} {:?}, T={t} B={b}{} -> {}",
        cfg.cell.name(),
        cfg.num_layers,
        cfg.directions(),
        cfg.input_size,
        cfg.embedding
            .map_or(String::new(), |v| format!(" (embedding of {v} tokens)")),
        cfg.hidden_size,
        cfg.output_size,
        cfg.activation,
        if input.lengths.is_some() {
            " (with lengths)"
        } else {
            ""
        },
        a.output.display()
    );
    Ok(())
}
