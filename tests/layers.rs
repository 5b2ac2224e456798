//! The library's seams between its layers, driven as a caller would: the one inference
//! path (GPU and CPU reference, whole batches and carried-state streams), the model's
//! recording API, checkpoints as bytes, and the training command's named steps (flag
//! mapping and resume rules) without spawning the binary.

mod common;

use common::{gpu, uniform};
use wgpu_rnn::app::cli::Cli;
use wgpu_rnn::app::cmd::train::resume::{adopt, Resumed, INHERITED};
use wgpu_rnn::app::cmd::train::setup::{model_config, train_config};
use wgpu_rnn::data::{Task, Text, DEFAULT_CORPUS};
use wgpu_rnn::gpu::Recorder;
use wgpu_rnn::infer::Predictor;
use wgpu_rnn::{
    Batch, CellKind, Checkpoint, Error, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig,
    State, Targets, Train, TrainConfig, Trainer,
};

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A two-layer bidirectional LSTM with an initial state and per-row lengths gives the same
/// outputs and final state through the GPU and the CPU reference.
#[test]
fn one_inference_path_agrees_on_gpu_and_cpu_with_state_and_lengths() {
    let cfg = RnnConfig::new(3, 5, 2)
        .with_cell(CellKind::Lstm)
        .with_layers(2)
        .with_bidirectional(true);
    let params = cfg.init_params(4);
    let (t, b) = (6, 3);
    let x: Vec<f64> = uniform(1, t * b * 3, 1.0)
        .into_iter()
        .map(f64::from)
        .collect();
    let n = cfg.cells() * b * 5;
    let init = State {
        h: uniform(2, n, 0.5).into_iter().map(f64::from).collect(),
        c: Some(uniform(3, n, 0.5).into_iter().map(f64::from).collect()),
    };
    let lengths = [6, 2, 4];
    let mut on_gpu = Predictor::new(Some(gpu()), &cfg, &params).unwrap();
    let mut on_cpu = Predictor::new(None, &cfg, &params).unwrap();
    assert!(on_gpu.is_gpu() && !on_cpu.is_gpu());
    let g = on_gpu.run(&x, [t, b], Some(&init), Some(&lengths)).unwrap();
    let c = on_cpu.run(&x, [t, b], Some(&init), Some(&lengths)).unwrap();
    assert!(max_diff(&g.y, &c.y) < 1e-4, "y: {}", max_diff(&g.y, &c.y));
    assert!(max_diff(&g.state.h, &c.state.h) < 1e-4);
    let (gc, cc) = (g.state.c.unwrap(), c.state.c.unwrap());
    assert!(max_diff(&gc, &cc) < 1e-4);
    // Past a row's length y is zero on both.
    for s in lengths[1]..t {
        let at = (s * b + 1) * 2;
        assert_eq!((g.y[at], c.y[at]), (0.0, 0.0), "step {s} of row 1");
    }
}

/// A stream fed in pieces carries its state: the pieces' outputs are the whole run's.
#[test]
fn a_stream_in_pieces_equals_one_run_over_the_whole_sequence() {
    let cfg = RnnConfig::new(2, 6, 1).with_cell(CellKind::Gru);
    let params = cfg.init_params(9);
    let t = 10;
    let x: Vec<f64> = uniform(5, t * 2, 1.0).into_iter().map(f64::from).collect();
    for gpu in [Some(gpu()), None] {
        let mut model = Predictor::new(gpu, &cfg, &params).unwrap();
        let whole = model.run(&x, [t, 1], None, None).unwrap();
        let mut stream = model.stream();
        assert!(stream.state().unwrap().is_none());
        let mut pieces = stream.feed(&x[..4 * 2], 4, 1).unwrap();
        pieces.extend(stream.feed(&x[4 * 2..], t - 4, 1).unwrap());
        let d = max_diff(&pieces, &whole.y);
        // The same arithmetic in the same order: equal on the CPU reference; on the GPU
        // the pieces are separate dispatches of the same kernels.
        assert!(d < 1e-6, "gpu {}: {d}", gpu.is_some());
        let last = stream.state().unwrap().unwrap();
        assert!(max_diff(&last.h, &whole.state.h) < 1e-6);
    }
}

#[test]
fn a_predictor_refuses_parameters_of_another_model() {
    let cfg = RnnConfig::new(2, 4, 1);
    let other = RnnConfig::new(2, 5, 1).init_params(1);
    let e = Predictor::new(None, &cfg, &other).unwrap_err();
    assert!(e.to_string().contains("expected 8 for shape [4, 2]"), "{e}");
}

/// A caller records the model's forward into its own recording, next to its own copy,
/// and gets what `forward` gives; a slot of a dropped shape is refused.
#[test]
fn the_recording_api_records_what_forward_does_and_refuses_a_dropped_slot() {
    let g = gpu();
    let cfg = RnnConfig::new(3, 4, 2).with_cell(CellKind::Gru);
    let mut rnn = Rnn::new(g, cfg, 3).unwrap();
    let (t, b) = (5, 2);
    let x = uniform(8, t * b * 3, 1.0);
    let xg = g.tensor(&[t, b, 3], &x).unwrap();
    let expected = rnn.forward(&xg, None).unwrap().y.download().unwrap();

    let slot = rnn.slot(t, b, None).unwrap();
    assert_eq!((slot.t, slot.b, slot.variable_length), (t, b, false));
    rnn.input(slot).unwrap().write(&x).unwrap();
    let y = g.zeros(&[t, b, 2]).unwrap();
    let mut rec = Recorder::new(g, "caller's recording");
    rnn.record_forward(slot, &mut rec, None).unwrap();
    rnn.output(slot).unwrap().record_copy(&mut rec, &y).unwrap();
    let dispatches = rec.dispatches();
    assert_eq!(rec.submit().unwrap(), dispatches);
    assert_eq!(dispatches, rnn.last_call_stats().dispatches);
    assert_eq!(y.download().unwrap(), expected, "bitwise what forward gave");
    // The recorded forward is not one `backward` may use.
    let dy = g.zeros(&[t, b, 2]).unwrap();
    assert!(matches!(rnn.backward(&dy, None), Err(Error::NoForward(_))));

    rnn.set_path(None);
    assert!(!rnn.is_live(slot));
    let mut rec = Recorder::new(g, "stale");
    let e = rnn.record_forward(slot, &mut rec, None).unwrap_err();
    assert!(matches!(e, Error::NoForward(_)), "{e}");
}

/// A checkpoint goes to bytes and back whole (what a caller without files, such as a web
/// page, does), and damaged bytes are an error naming what was given.
#[test]
fn checkpoints_round_trip_through_bytes() {
    let cfg = RnnConfig::new(1, 4, 1).with_cell(CellKind::Lstm);
    let train = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        LossKind::Mse,
    );
    let mut trainer = Trainer::new(Rnn::new(gpu(), cfg, 1).unwrap(), train).unwrap();
    let (t, b) = (4, 2);
    let x = uniform(2, t * b, 1.0);
    let batch = Batch::new(t, b, x.clone(), Targets::Values(x)).unwrap();
    trainer.step(&batch).unwrap();
    let ck = Checkpoint::from_trainer(&trainer, "sine", None).unwrap();
    let bytes = ck.to_bytes("memory").unwrap();
    assert_eq!(Checkpoint::from_bytes(&bytes, "memory").unwrap(), ck);
    let e = Checkpoint::from_bytes(&bytes[..bytes.len() / 2], "upload.safetensors").unwrap_err();
    assert!(e.to_string().contains("upload.safetensors"), "{e}");
}

fn train_args(args: &[&str]) -> wgpu_rnn::app::cli::TrainArgs {
    let mut argv = vec!["wgpu-rnn", "train"];
    argv.extend(args);
    match Cli::parse_from_checked(argv).unwrap().command {
        Some(wgpu_rnn::app::cli::Command::Train(a)) => *a,
        _ => unreachable!("a train command"),
    }
}

/// Every inherited hyperparameter survives its text form: what a checkpoint records is
/// what a resumed run sets.
#[test]
fn inherited_hyperparameters_round_trip_through_their_text() {
    let typed = train_args(&[
        "--lr",
        "0.003",
        "--lr-schedule",
        "cosine",
        "--warmup",
        "7",
        "--min-lr",
        "0.0001",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--clip",
        "2.5",
        "--batch",
        "9",
        "--seq",
        "11",
        "--seed",
        "42",
        "--steps",
        "77",
    ]);
    let mut fresh = train_args(&[]);
    for h in &INHERITED {
        (h.set)(&mut fresh, &(h.get)(&typed)).unwrap();
    }
    for h in &INHERITED {
        assert_eq!((h.get)(&fresh), (h.get)(&typed), "{}", h.id);
    }
    assert_eq!(INHERITED.len(), 15);
    assert!((INHERITED[0].set)(&mut fresh, "fast").is_err());
}

/// The resume rules: a checkpoint's hyperparameters come back unless typed again, and a
/// typed size that contradicts it is refused with both values.
#[test]
fn resume_rules_adopt_the_checkpoints_settings_and_refuse_contradictions() {
    let text = Text::new(DEFAULT_CORPUS).unwrap();
    let v = text.vocab.len();
    let task = Task::Text(text);
    let a = train_args(&[
        "--hidden", "12", "--lr", "0.02", "--seed", "5", "--steps", "9",
    ]);
    let cfg = model_config(&a, &task, None).unwrap();
    // The characters go in through the default 64-wide embedding.
    assert_eq!(
        (
            cfg.embedding,
            cfg.input_size,
            cfg.hidden_size,
            cfg.output_size
        ),
        (Some(v), 64, 12, v)
    );
    let tc = train_config(&a, &task).unwrap();
    assert!(tc.stateful && tc.loss == LossKind::CrossEntropy && tc.optimizer.lr == 0.02);

    let mut ck = Checkpoint {
        config: cfg.clone(),
        task: "text".into(),
        vocab: None,
        params: cfg.init_params(1),
        optim: None,
        step: 4,
        carried_state: None,
        extra: Default::default(),
    };
    for h in &INHERITED {
        ck.extra.insert(format!("train.{}", h.id), (h.get)(&a));
    }
    let resumed = Resumed {
        path: "run.safetensors".into(),
        checkpoint: ck,
    };
    let mut again = train_args(&["--resume", "run.safetensors", "--lr", "0.5"]);
    adopt(&mut again, &resumed).unwrap();
    assert_eq!((again.seed, again.steps), (5, 9));
    assert_eq!(
        again.lr, 0.5,
        "a typed hyperparameter replaces the saved one"
    );
    let model = model_config(&again, &task, Some(&resumed)).unwrap();
    assert_eq!(
        model, cfg,
        "the model is the checkpoint's, whatever the defaults"
    );

    let mut wrong = train_args(&["--resume", "run.safetensors", "--hidden", "13"]);
    let e = adopt(&mut wrong, &resumed).unwrap_err().to_string();
    assert!(e.contains("--hidden 13") && e.contains("12"), "{e}");
    let mut done = train_args(&["--resume", "run.safetensors", "--steps", "3"]);
    let e = adopt(&mut done, &resumed).unwrap_err().to_string();
    assert!(e.contains("--steps 3") && e.contains("step 4"), "{e}");
}
