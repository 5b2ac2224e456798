//! ONNX export (`wgpu-rnn export --format onnx`; the graph's structure is tested in
//! src/files/onnx.rs): bad input here;
//! onnxruntime against `wgpu-rnn eval` on every kind of model in the ignored test, which
//! needs python3 with onnx, onnxruntime, numpy and safetensors (`.ci/run` installs them in
//! a virtual environment and runs it with `--ignored`; `WGPU_RNN_PYTHON` names the
//! interpreter).

mod common;

use std::path::{Path, PathBuf};

use common::{run_cli, state, uniform};
use wgpu_rnn::{Activation, CellKind, Checkpoint, RnnConfig};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-onnx-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A checkpoint of `cfg` with its seeded initial parameters.
fn checkpoint(cfg: &RnnConfig, seed: u64, path: &Path) {
    Checkpoint {
        config: cfg.clone(),
        task: "sine".into(),
        vocab: None,
        params: cfg.init_params(seed),
        optim: None,
        step: 0,
        carried_state: None,
        extra: Default::default(),
    }
    .save(path)
    .unwrap();
}

/// `wgpu-rnn export --format onnx --model ck --output out`: the exit code and stderr.
fn export_onnx(ck: &Path, out: &Path) -> (i32, String) {
    let (ck, out) = (ck.to_str().unwrap(), out.to_str().unwrap());
    let (code, _, err) = run_cli(&["export", "--format", "onnx", "--model", ck, "--output", out]);
    (code, err)
}

/// x (or for a model with an embedding int64 ids, as PyTorch keeps them), h0 (c0) and, if
/// given, lengths, as `wgpu-rnn eval` reads them.
fn write_input(
    cfg: &RnnConfig,
    (t, b): (usize, usize),
    lengths: Option<&[usize]>,
    seed: u64,
    path: &Path,
) {
    let n = cfg.cells() * b * cfg.hidden_size;
    let x = uniform(seed, t * b * cfg.input_size, 1.0);
    let ids: Vec<i64> = match cfg.embedding {
        Some(v) => common::compare::embedding::ids(seed, t * b, v)
            .iter()
            .map(|&i| i as i64)
            .collect(),
        None => Vec::new(),
    };
    let s = state(cfg.cell, seed + 1, n, 0.5);
    let shape = cfg.state_shape(b).to_vec();
    let l: Vec<f32> = lengths.unwrap_or(&[]).iter().map(|&v| v as f32).collect();
    use safetensors::Dtype::{F32, I64};
    let mut tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, &[u8])> =
        vec![match cfg.embedding {
            Some(_) => ("ids", I64, vec![t, b], bytemuck::cast_slice(&ids)),
            None => (
                "x",
                F32,
                vec![t, b, cfg.input_size],
                bytemuck::cast_slice(&x),
            ),
        }];
    tensors.push(("h0", F32, shape.clone(), bytemuck::cast_slice(&s.h)));
    if let Some(c) = &s.c {
        tensors.push(("c0", F32, shape, bytemuck::cast_slice(c)));
    }
    if lengths.is_some() {
        tensors.push(("lengths", F32, vec![b], bytemuck::cast_slice(&l)));
    }
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, v)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), v).unwrap();
            (*name, view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Every cell (tanh and relu Elman, LSTM, GRU) x 1-2 layers x one or two directions x with
/// and without biases x with and without an embedding (some with dropout, which inference
/// leaves out).
fn configs() -> Vec<RnnConfig> {
    let cells = [
        (CellKind::Rnn, Activation::Tanh),
        (CellKind::Rnn, Activation::Relu),
        (CellKind::Lstm, Activation::Tanh),
        (CellKind::Gru, Activation::Tanh),
    ];
    let mut out = Vec::new();
    for (cell, act) in cells {
        for layers in [1, 2] {
            for bidirectional in [false, true] {
                for (bias, embedding) in [true, false]
                    .into_iter()
                    .flat_map(|b| [(b, false), (b, true)])
                {
                    let cfg = RnnConfig::new(3, 5, 4)
                        .with_cell(cell)
                        .with_activation(act)
                        .with_layers(layers)
                        .with_bidirectional(bidirectional)
                        .with_bias(bias)
                        // Training-only dropout: the export, like eval, leaves it out.
                        .with_dropout(if layers > 1 { 0.3 } else { 0.0 })
                        .with_head_dropout(if bias { 0.2 } else { 0.0 });
                    out.push(if embedding {
                        cfg.with_embedding(7)
                    } else {
                        cfg
                    });
                }
            }
        }
    }
    out
}

#[test]
fn export_refuses_a_missing_folder_and_its_own_checkpoint() {
    let dir = scratch("refusals");
    let ck = dir.join("model.safetensors");
    checkpoint(&RnnConfig::new(2, 3, 2), 1, &ck);
    let missing = dir.join("no-such-folder").join("model.onnx");
    let (code, err) = export_onnx(&ck, &missing);
    assert_ne!(code, 0);
    assert!(
        err.contains("no-such-folder") && err.contains("does not exist"),
        "{err}"
    );
    let (code, err) = export_onnx(&ck, &ck);
    assert_ne!(code, 0);
    assert!(err.contains("is this checkpoint"), "{err}");
    assert!(Checkpoint::load(&ck).is_ok(), "the checkpoint survives");
    let out = dir.join("model.onnx");
    let (code, err) = export_onnx(&ck, &out);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::metadata(&out).unwrap().len() > 100);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs python3 with onnx, onnxruntime, numpy and safetensors; .ci/run runs it with --ignored"]
fn onnxruntime_matches_eval_for_every_kind_of_model() {
    let dir = scratch("cases");
    let (t, b) = (6, 4);
    let mut cases = 0;
    for (k, cfg) in configs().iter().enumerate() {
        for lengths in [None, Some(&[6usize, 2, 5, 1][..])] {
            let case = dir.join(format!(
                "{k:03}-{}{}-{}-L{}-D{}-bias{}-{}",
                if cfg.embedding.is_some() { "emb-" } else { "" },
                cfg.cell.name(),
                cfg.activation.name(),
                cfg.num_layers,
                cfg.directions(),
                cfg.bias,
                if lengths.is_some() { "lengths" } else { "full" }
            ));
            std::fs::create_dir_all(&case).unwrap();
            let seed = 10 * k as u64 + lengths.is_some() as u64;
            let ck = case.join("checkpoint.safetensors");
            checkpoint(cfg, seed, &ck);
            write_input(
                cfg,
                (t, b),
                lengths,
                seed + 100,
                &case.join("input.safetensors"),
            );
            let (code, err) = export_onnx(&ck, &case.join("model.onnx"));
            assert_eq!(code, 0, "export: {err}");
            let (input, output) = (
                case.join("input.safetensors"),
                case.join("eval.safetensors"),
            );
            let (code, _, err) = run_cli(&[
                "eval",
                "--model",
                ck.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "eval: {err}");
            cases += 1;
        }
    }
    assert_eq!(cases, 128);
    let python = std::env::var("WGPU_RNN_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_check.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("{python} did not run ({e}); set WGPU_RNN_PYTHON"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "onnxruntime disagrees with eval, or the checker refused a model:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("128 of 128 cases match"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}
