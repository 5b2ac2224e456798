//! Whole training runs against PyTorch: fixtures `train_*.safetensors` made by
//! tests/fixtures/make_fixtures.py hold an nn.RNN / nn.LSTM / nn.GRU + nn.Linear at
//! PyTorch's default init, 25 batches, and what PyTorch (float64) did with them:
//!
//! ```python
//! out, _ = rnn(x); loss = MSELoss()(head(out), target)   # or CrossEntropyLoss
//! opt.zero_grad(); loss.backward()
//! clip_grad_norm_(params, clip_norm); opt.step()          # SGD, SGD+momentum, Adam, Adagrad
//! ```
//!
//! Our trainers (GPU in f32, CPU reference in f64) start from the same weights, see the
//! same batches with the same optimizer, and must give the same loss at every step (1e-4
//! relative), the same gradient norms, and the same final weights (1e-3 of each tensor's
//! largest value).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::SafeTensors;
use wgpu_rnn::files::interop::parse_torch;
use wgpu_rnn::{
    Batch, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Params, Rnn, RnnConfig, Targets,
    Train, TrainConfig, Trainer,
};

struct Run {
    name: String,
    config: RnnConfig,
    initial: Params<Vec<f32>>,
    train: TrainConfig,
    batches: Vec<Batch>,
    losses: Vec<f64>,
    norms: Vec<f64>,
    /// PyTorch's final weights, in `Params::tensors` order.
    final_params: Vec<Vec<f64>>,
}

fn f64s(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("no tensor {name}"));
    let data = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        d => panic!("{name} is {d:?}"),
    };
    (t.shape().to_vec(), data)
}

fn load(name: &str) -> Run {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("train_{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = parse_torch(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.prefix, "rnn.", "{name}");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta: HashMap<String, String> = header.metadata().clone().unwrap();
    let num = |k: &str| -> f32 { meta[k].parse().unwrap_or_else(|_| panic!("{name}: {k}")) };
    let kind = match meta["optimizer"].as_str() {
        "sgd" => OptimizerKind::Sgd,
        "adam" => OptimizerKind::Adam,
        "adagrad" => OptimizerKind::Adagrad,
        o => panic!("{name}: optimizer {o}"),
    };
    let loss = match meta["loss"].as_str() {
        "mse" => LossKind::Mse,
        "cross_entropy" => LossKind::CrossEntropy,
        o => panic!("{name}: loss {o}"),
    };
    let mut opt = OptimizerConfig::new(kind, num("lr"));
    opt.momentum = num("momentum");
    opt.beta1 = num("beta1");
    opt.beta2 = num("beta2");
    opt.eps = num("eps");
    opt.weight_decay = num("weight_decay");
    let mut train = TrainConfig::new(opt, loss);
    train.clip_norm = Some(num("clip_norm"));
    let cfg = model.config.clone();
    // Features x (N, T, B, I), or token ids (N, T, B) for a model with an embedding.
    let tokens = cfg.embedding.is_some();
    let (xs, x) = f64s(&st, if tokens { "ids" } else { "x" });
    let (n, t, b) = (xs[0], xs[1], xs[2]);
    let i = if tokens { 1 } else { xs[3] };
    assert!(tokens || i == cfg.input_size, "{name}");
    let o = cfg.output_size;
    let batches = (0..n)
        .map(|k| {
            let targets = match loss {
                LossKind::Mse => {
                    let (_, v) = f64s(&st, "target");
                    Targets::Values(
                        v[k * t * b * o..][..t * b * o]
                            .iter()
                            .map(|&v| v as f32)
                            .collect(),
                    )
                }
                LossKind::CrossEntropy => {
                    let (_, c) = f64s(&st, "classes");
                    Targets::Classes(c[k * t * b..][..t * b].iter().map(|&v| v as u32).collect())
                }
                LossKind::Ctc { .. } => unreachable!("no CTC training fixtures"),
            };
            let step = &x[k * t * b * i..][..t * b * i];
            if tokens {
                let ids = step.iter().map(|&v| v as u32).collect();
                Batch::from_tokens(t, b, ids, targets).unwrap()
            } else {
                let x = step.iter().map(|&v| v as f32).collect();
                Batch::new(t, b, x, targets).unwrap()
            }
        })
        .collect();
    let final_params = wgpu_rnn::files::interop::torch_entries(&cfg, &model.params, "rnn.")
        .into_iter()
        .map(|(k, _, _)| f64s(&st, &format!("final.{k}")).1)
        .collect();
    Run {
        name: name.to_string(),
        initial: model.params,
        config: cfg,
        train,
        batches,
        losses: f64s(&st, "loss").1,
        norms: f64s(&st, "grad_norm").1,
        final_params,
    }
}

fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}

/// Trains with `trainer` and checks the trajectory against PyTorch's.
fn check(run: &Run, device: &str, trainer: &mut dyn Train) {
    let tag = format!("{} ({device})", run.name);
    for (k, batch) in run.batches.iter().enumerate() {
        let s = trainer.step(batch).unwrap();
        assert!(!s.skipped, "{tag} step {k} skipped");
        for (what, got, want) in [
            ("loss", s.loss, run.losses[k]),
            ("gradient norm", s.grad_norm, run.norms[k]),
        ] {
            let e = relative(got as f64, want);
            assert!(
                e <= 1e-4,
                "{tag} step {k}: {what} {got} vs PyTorch {want} (relative {e:.2e})"
            );
        }
    }
    let params = trainer.params().unwrap();
    let names = params.names_for(&run.config);
    for ((name, got), want) in names.iter().zip(params.tensors()).zip(&run.final_params) {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(&g, w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-3 * scale,
            "{tag}: final {name} differs from PyTorch's by {worst:.2e} (> 1e-3 of its scale {scale:.3})"
        );
    }
}

fn check_both(name: &str) {
    let run = load(name);
    let mut cpu = CpuTrainer::new(run.config.clone(), &run.initial, run.train.clone()).unwrap();
    check(&run, "cpu", &mut cpu);
    let rnn = Rnn::from_params(common::gpu(), run.config.clone(), &run.initial).unwrap();
    let mut gpu = Trainer::new(rnn, run.train.clone()).unwrap();
    check(&run, "gpu", &mut gpu);
}

#[test]
fn elman_trains_like_pytorch_with_every_optimizer() {
    for opt in ["sgd", "sgdm", "adam", "adagrad", "sgd_nobias"] {
        check_both(&format!("rnn_{opt}"));
    }
}

#[test]
fn lstm_trains_like_pytorch_with_every_optimizer() {
    for opt in ["sgd", "sgdm", "adam", "adagrad", "adam_ce"] {
        check_both(&format!("lstm_{opt}"));
    }
}

#[test]
fn gru_trains_like_pytorch_with_every_optimizer() {
    for opt in ["sgd", "sgdm", "adam", "adagrad", "sgdm_ce"] {
        check_both(&format!("gru_{opt}"));
    }
}

/// nn.Embedding + nn.LSTM / nn.GRU + nn.Linear on token ids: 25 Adam steps with
/// cross-entropy and clipping, the table updated densely like every other weight.
#[test]
fn embedding_models_train_like_pytorch() {
    for name in ["emb_lstm_adam_ce", "emb_gru_adam_ce"] {
        check_both(name);
    }
}
