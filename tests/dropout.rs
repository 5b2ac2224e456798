//! Dropout between layers and on the head's input (training only): the GPU's masks are the
//! CPU reference's bit for bit, gradients are zero exactly where units were dropped, the
//! trainers agree step by step, evaluation and inference ignore it, a resumed run goes on
//! with the masks of an uninterrupted one, and the CLI records and refuses what it should.

mod common;

use common::{gpu, run_cli, uniform, widen};
use wgpu_rnn::cpu;
use wgpu_rnn::gpu::Recorder;
use wgpu_rnn::{
    Batch, CellKind, Checkpoint, DropoutKey, LossKind, OptimizerConfig, OptimizerKind, Params, Rnn,
    RnnConfig, Targets, Train, TrainConfig, Trainer,
};

const KEY: DropoutKey = DropoutKey { seed: 11, step: 4 };

/// A model whose head is the identity (O = D·H, W_hy = I, b_y = 0), so y is the dropped
/// outputs of the last layer.
fn identity_head(cfg: &RnnConfig, seed: u64) -> Params<Vec<f32>> {
    let mut p = cfg.init_params(seed);
    let n = cfg.output_size;
    p.w_hy = (0..n * n)
        .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    p.b_y = vec![0.0; n];
    p
}

/// One training-mode forward (and, with `dy`, backward) on the GPU through the recording
/// API: y and the parameter gradients.
fn gpu_train_pass(
    cfg: &RnnConfig,
    params: &Params<Vec<f32>>,
    x: &[f32],
    (t, b): (usize, usize),
    dy: &[f32],
) -> (Vec<f32>, Params<Vec<f32>>) {
    let g = gpu();
    let mut rnn = Rnn::from_params(g, cfg.clone(), params).unwrap();
    let slot = rnn.slot(t, b, None).unwrap();
    rnn.input(slot).unwrap().write(x).unwrap();
    rnn.output_grad(slot).unwrap().write(dy).unwrap();
    rnn.set_dropout(Some(KEY));
    let mut rec = Recorder::new(g, "dropout test");
    rnn.record_forward(slot, &mut rec, None).unwrap();
    rnn.record_backward(slot, &mut rec, None).unwrap();
    rec.submit().unwrap();
    let y = rnn.output(slot).unwrap().download().unwrap();
    let grads = rnn.grads().try_map(|t| t.download()).unwrap();
    (y, grads)
}

#[test]
fn the_gpu_masks_are_the_cpu_references_bit_for_bit() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let (t, b, h) = (5, 3, 7);
        let cfg = RnnConfig::new(4, h, 2 * h)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true)
            .with_dropout(0.4)
            .with_head_dropout(0.3);
        let params = identity_head(&cfg, 3);
        let x = uniform(5, t * b * 4, 1.0);
        let dy = vec![0.0; t * b * 2 * h];
        let (y, _) = gpu_train_pass(&cfg, &params, &x, (t, b), &dy);
        let fwd = cpu::forward_train(
            &cfg,
            &params.to_f64(),
            &widen(&x),
            &[t, b, 4],
            None,
            None,
            KEY,
        )
        .unwrap();
        let head = fwd.dropout[1]
            .as_ref()
            .expect("the head's input is dropped");
        let dropped: usize = head.iter().filter(|&&f| f == 0.0).count();
        assert!(
            dropped > 0 && dropped < head.len(),
            "{cell:?}: {dropped} of {}",
            head.len()
        );
        for (i, (&g, &f)) in y.iter().zip(head).enumerate() {
            assert_eq!(
                g == 0.0,
                f == 0.0,
                "{cell:?} element {i}: GPU {g}, reference factor {f}"
            );
        }
        // The layer below's mask decides layer 1's input: any disagreement shows in y.
        common::assert_close(&format!("{cell:?} y"), &y, &fwd.y, 1e-5, 1e-4);
        // Evaluation draws nothing: the reference's plain forward has no dropout.
        let plain =
            cpu::forward(&cfg, &params.to_f64(), &widen(&x), &[t, b, 4], None, None).unwrap();
        assert!(plain.dropout.iter().all(Option::is_none));
    }
}

#[test]
fn gradients_are_zero_exactly_where_units_were_dropped() {
    // One step of one row: dL/dW_ih row j = dy_j · factor_j · (1 − h_j²) · x, so the rows
    // of dropped units are exactly zero and the others are not.
    let h = 16;
    let cfg = RnnConfig::new(3, h, h).with_head_dropout(0.5);
    let params = identity_head(&cfg, 7);
    let x = [0.3, -0.7, 0.9];
    let (_, grads) = gpu_train_pass(&cfg, &params, &x, (1, 1), &vec![1.0; h]);
    let factors = cpu::dropout_factors(&cfg, KEY, 0, 1);
    let w = &grads.cells[0].w_ih;
    let mut dropped = 0;
    for (j, f) in factors.iter().enumerate() {
        let row = &w[j * 3..(j + 1) * 3];
        if *f == 0.0 {
            dropped += 1;
            assert!(
                row.iter().all(|&v| v == 0.0),
                "unit {j} was dropped: {row:?}"
            );
        } else {
            assert!(row.iter().all(|&v| v != 0.0), "unit {j} was kept: {row:?}");
        }
    }
    assert!(dropped > 0 && dropped < h, "{dropped} of {h} dropped");
}

#[test]
fn the_trainers_agree_step_by_step_with_dropout() {
    let (i, hid, o) = (
        common::training::I,
        common::training::H,
        common::training::O,
    );
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(i, hid, o)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true)
            .with_dropout(0.3)
            .with_head_dropout(0.2);
        pollster::block_on(common::training::compare_async(
            gpu(),
            cfg,
            OptimizerKind::Adam,
            0.02,
            LossKind::CrossEntropy,
            Some(0.2),
            None,
        ));
    }
}

fn train_config() -> TrainConfig {
    let mut tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.02),
        LossKind::Mse,
    )
    .with_dropout_seed(5);
    tc.stateful = true;
    tc
}

fn batch(step: u64) -> Batch {
    let (t, b) = (6, 4);
    Batch::new(
        t,
        b,
        uniform(100 + step, t * b * 3, 1.0),
        Targets::Values(uniform(200 + step, t * b * 2, 1.0)),
    )
    .unwrap()
}

#[test]
fn evaluation_and_inference_ignore_dropout_and_resumed_runs_go_on_exactly() {
    let cfg = RnnConfig::new(3, 8, 2).with_layers(2).with_dropout(0.5);
    let plain_cfg = RnnConfig::new(3, 8, 2).with_layers(2);
    let params = cfg.init_params(2);
    let g = gpu();
    // Inference and evaluation: bitwise the model without dropout.
    let mut a = Rnn::from_params(g, cfg.clone(), &params).unwrap();
    let mut b = Rnn::from_params(g, plain_cfg.clone(), &params).unwrap();
    let x = g.tensor(&[6, 4, 3], &batch(0).x).unwrap();
    let ya = a.forward(&x, None).unwrap().y.download().unwrap();
    let yb = b.forward(&x, None).unwrap().y.download().unwrap();
    assert_eq!(ya, yb);
    let mut ta = Trainer::new(
        Rnn::from_params(g, cfg.clone(), &params).unwrap(),
        train_config(),
    )
    .unwrap();
    let mut tb = Trainer::new(
        Rnn::from_params(g, plain_cfg, &params).unwrap(),
        train_config(),
    )
    .unwrap();
    assert_eq!(
        ta.evaluate(&batch(0)).unwrap(),
        tb.evaluate(&batch(0)).unwrap()
    );
    // Training does drop: the first step's loss differs from the model without dropout.
    let (la, lb) = (
        ta.step(&batch(0)).unwrap().loss,
        tb.step(&batch(0)).unwrap().loss,
    );
    assert_ne!(la, lb);

    // Six steps straight, or three, a checkpoint, and three more from it: bitwise equal.
    let mut straight = Trainer::new(
        Rnn::from_params(g, cfg.clone(), &params).unwrap(),
        train_config(),
    )
    .unwrap();
    for s in 0..6 {
        straight.step(&batch(s)).unwrap();
    }
    let mut first = Trainer::new(
        Rnn::from_params(g, cfg.clone(), &params).unwrap(),
        train_config(),
    )
    .unwrap();
    for s in 0..3 {
        first.step(&batch(s)).unwrap();
    }
    let ck = Checkpoint::from_bytes(
        &Checkpoint::from_trainer(&first, "sine", None)
            .unwrap()
            .to_bytes("ck")
            .unwrap(),
        "ck",
    )
    .unwrap();
    assert_eq!(ck.config.dropout, 0.5);
    let rnn = Rnn::from_params(g, ck.config.clone(), &ck.params).unwrap();
    let mut resumed = Trainer::new(rnn, train_config()).unwrap();
    ck.restore_into(&mut resumed).unwrap();
    for s in 3..6 {
        resumed.step(&batch(s)).unwrap();
    }
    assert_eq!(resumed.params().unwrap(), straight.params().unwrap());
}

#[test]
fn the_cli_records_dropout_and_refuses_what_it_cannot_do() {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-dropout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("run.safetensors");
    let ck_s = ck.to_str().unwrap();
    let base = [
        "train", "--task", "sine", "--steps", "3", "--hidden", "8", "--seq", "8", "--batch", "4",
    ];
    for (extra, needle) in [
        (&["--dropout", "0.2"][..], "--layers 1"),
        (&["--dropout", "1", "--layers", "2"][..], "--dropout"),
        (&["--head-dropout=-0.1"][..], "--head-dropout"),
    ] {
        let args: Vec<&str> = base
            .iter()
            .chain(extra)
            .copied()
            .chain(["--save", ck_s])
            .collect();
        let (code, _, err) = run_cli(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!ck.exists(), "{args:?} refused before any work");
    }
    let args: Vec<&str> = base
        .iter()
        .chain(&[
            "--layers",
            "2",
            "--dropout",
            "0.25",
            "--head-dropout",
            "0.1",
            "--save",
            ck_s,
        ])
        .copied()
        .collect();
    let (code, _, err) = run_cli(&args);
    assert_eq!(code, 0, "{err}");
    let saved = Checkpoint::load(&ck).unwrap();
    assert_eq!(
        (saved.config.dropout, saved.config.head_dropout),
        (0.25, 0.1)
    );
    let out = dir.join("model.safetensors");
    let (code, _, err) = run_cli(&["export", "--model", ck_s, "--output", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&out).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["dropout"], "0.25");
    assert_eq!(meta["head_dropout"], "0.1");
    // A resumed run keeps the checkpoint's dropout; another is a conflict.
    let (code, _, err) = run_cli(&[
        "train",
        "--resume",
        ck_s,
        "--steps",
        "4",
        "--dropout",
        "0.5",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--dropout"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
