//! Built-in tasks learn; checkpoints round-trip bitwise; a resumed run equals an
//! uninterrupted one; bad files are errors.

mod common;

use common::gpu;
use wgpu_rnn::data::{Sine, Task, Text, DEFAULT_CORPUS};
use wgpu_rnn::files::checkpoint::Checkpoint;
use wgpu_rnn::{
    CellKind, Error, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Train, TrainConfig, Trainer,
};

fn trainer(
    task: &Task,
    hidden: usize,
    lr: f32,
    params: Option<&wgpu_rnn::Params<Vec<f32>>>,
) -> Trainer {
    trainer_with(task, hidden, lr, params, (CellKind::Rnn, 1, false))
}

fn trainer_with(
    task: &Task,
    hidden: usize,
    lr: f32,
    params: Option<&wgpu_rnn::Params<Vec<f32>>>,
    (cell, layers, bidirectional): (CellKind, usize, bool),
) -> Trainer {
    let (i, o) = task.io();
    let cfg = RnnConfig::new(i, hidden, o)
        .with_cell(cell)
        .with_layers(layers)
        .with_bidirectional(bidirectional);
    let p = params.cloned().unwrap_or_else(|| cfg.init_params(7));
    let rnn = Rnn::from_params(gpu(), cfg, &p).unwrap();
    let mut tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Adam, lr), task.loss());
    tc.stateful = task.stateful();
    Trainer::new(rnn, tc).unwrap()
}

fn run(
    task: &Task,
    t: &mut Trainer,
    steps: std::ops::Range<u64>,
    seq: usize,
    batch: usize,
) -> Vec<f32> {
    steps
        .map(|s| {
            let (b, reset) = task.batch(3, s, seq, batch).unwrap();
            if reset {
                t.reset_state();
            }
            t.step(&b).unwrap().loss
        })
        .collect()
}

#[test]
fn small_text_model_validation_loss_falls() {
    let task = Task::Text(Text::new(DEFAULT_CORPUS).unwrap());
    let mut t = trainer(&task, 64, 0.01, None);
    let val = task.validation(3, 16, 16).unwrap();
    let before = t.evaluate(&val).unwrap();
    run(&task, &mut t, 0..250, 16, 16);
    let after = t.evaluate(&val).unwrap();
    // Uniform guessing over the vocabulary is ln(V) ≈ 4.4 nats; unigram statistics alone
    // reach about 3.3.
    assert!(
        after < 0.75 * before && after < 3.0,
        "validation loss {before} -> {after}"
    );
}

#[test]
fn sine_forecast_reaches_low_mse() {
    let task = Task::Sine(Sine::default());
    let mut t = trainer(&task, 32, 0.01, None);
    let val = task.validation(3, 32, 32).unwrap();
    let before = t.evaluate(&val).unwrap();
    run(&task, &mut t, 0..300, 32, 16);
    let after = t.evaluate(&val).unwrap();
    assert!(
        after < 0.01 && after < 0.1 * before,
        "validation MSE {before} -> {after}"
    );
}

fn snapshot(task: &Task, t: &Trainer) -> Checkpoint {
    Checkpoint {
        config: t.rnn().config().clone(),
        task: task.kind().name().into(),
        vocab: match task {
            Task::Text(x) => Some(x.vocab.clone()),
            _ => None,
        },
        params: t.params().unwrap(),
        optim: Some(t.optim_state().unwrap()),
        step: t.steps(),
        carried_state: t.carried_state().unwrap(),
        extra: [("seed".to_string(), "3".to_string())].into(),
    }
}

#[test]
fn checkpoint_round_trip_is_bitwise_and_resume_equals_uninterrupted() {
    round_trip((CellKind::Rnn, 1, false));
}

/// The same with two layers and two directions: carried state (L·D, B, H), moments of
/// every cell.
#[test]
fn stacked_bidirectional_checkpoints_round_trip_and_resume() {
    round_trip((CellKind::Rnn, 2, true));
}

/// The same for LSTM (whose carried state is h and c) and GRU, one layer and stacked
/// bidirectional.
#[test]
fn lstm_and_gru_checkpoints_round_trip_and_resume() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        round_trip((cell, 1, false));
        round_trip((cell, 2, true));
    }
}

fn round_trip(shape: (CellKind, usize, bool)) {
    let task = Task::Text(Text::new(DEFAULT_CORPUS).unwrap());
    let (seq, batch) = (8, 4);
    let mut whole = trainer_with(&task, 24, 0.01, None, shape);
    let full = run(&task, &mut whole, 0..12, seq, batch);

    let mut first = trainer_with(&task, 24, 0.01, None, shape);
    let head = run(&task, &mut first, 0..6, seq, batch);
    assert_eq!(head, full[..6], "{shape:?}");
    let dir = std::env::temp_dir().join(format!(
        "wgpu-rnn-test-{}-{}-{}-{}",
        std::process::id(),
        shape.0.name(),
        shape.1,
        shape.2
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resume.safetensors");
    let ck = snapshot(&task, &first);
    assert!(ck.carried_state.is_some());
    let (b, state) = ck.carried_state.as_ref().unwrap();
    assert_eq!(*b, batch);
    assert_eq!(
        state.c.is_some(),
        shape.0.has_c(),
        "{shape:?}: the carried c"
    );
    ck.save(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded, ck, "{shape:?}: round trip changed the checkpoint");

    let mut resumed = trainer_with(&task, 24, 0.01, Some(&loaded.params), shape);
    let (m, v) = loaded.optim.as_ref().unwrap();
    let carry = loaded.carried_state.as_ref().map(|(b, s)| (*b, s));
    resumed.restore(m, v, loaded.step, carry).unwrap();
    let tail = run(&task, &mut resumed, 6..12, seq, batch);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&tail),
        bits(&full[6..]),
        "{shape:?}: resumed {tail:?} vs uninterrupted {:?}",
        &full[6..]
    );

    // Truncated and corrupted copies are errors, not panics; the original still loads.
    let bytes = std::fs::read(&path).unwrap();
    for (name, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("header", {
            let mut b = bytes.clone();
            b[9] ^= 0x55;
            b
        }),
        ("huge header length", {
            let mut b = bytes.clone();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ] {
        let p = dir.join(format!("{name}.safetensors"));
        std::fs::write(&p, data).unwrap();
        let e = Checkpoint::load(&p).unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }), "{name}: {e}");
    }
    assert!(matches!(
        Checkpoint::load(&dir.join("missing.safetensors")),
        Err(Error::Io { .. })
    ));
    Checkpoint::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
