//! `wgpu-rnn eval`: runs a model file (a PyTorch state_dict or a checkpoint) on the
//! inputs of a safetensors file and writes its outputs.

use std::path::Path;

use super::device;
use crate::app::cli::EvalArgs;
use crate::error::{Error, Result};
use crate::files::interop;
use crate::infer::Predictor;
use crate::model::{RnnConfig, State};

/// What the input file holds: x (T, B, I), and optionally h0 and c0 (L·D, B, H) and the
/// per-row lengths (B).
struct Inputs {
    t: usize,
    b: usize,
    x: Vec<f32>,
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
    let (x_shape, x) = read("x")?.ok_or_else(|| bad("no tensor named x (T, B, I)".into()))?;
    let (t, b) = cfg.check_input(&x_shape)?;
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
        init,
        lengths,
    })
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
    let out = predictor.run(
        &wide(&input.x),
        [t, b],
        init.as_ref(),
        input.lengths.as_deref(),
    )?;
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
        "eval: {} L={} D={} I={} H={} O={} {:?}, T={t} B={b}{} -> {}",
        cfg.cell.name(),
        cfg.num_layers,
        cfg.directions(),
        cfg.input_size,
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
