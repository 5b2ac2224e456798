//! Dropout between layers and on the head's input (training only): the GPU's masks are the
//! CPU reference's bit for bit, gradients are zero exactly where units were dropped, the
//! trainers agree step by step, evaluation and inference ignore it, a resumed run goes on
//! with the masks of an uninterrupted one, and the CLI records and refuses what it should.

mod common;

use common::{dropout, gpu, run_cli, uniform};
use wgpu_rnn::cpu;
use wgpu_rnn::{
    Batch, CellKind, Checkpoint, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets,
    Train, TrainConfig, Trainer,
};

#[test]
fn the_gpu_masks_are_the_cpu_references_bit_for_bit() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        pollster::block_on(dropout::compare_masks_async(gpu(), cell));
    }
}

#[test]
fn gradients_are_zero_exactly_where_units_were_dropped() {
    // One step of one row: dL/dW_ih row j = dy_j · factor_j · (1 − h_j²) · x, so the rows
    // of dropped units are exactly zero and the others are not.
    let h = 16;
    let cfg = RnnConfig::new(3, h, h).with_head_dropout(0.5);
    let params = dropout::identity_head(&cfg, 7);
    let x = [0.3, -0.7, 0.9];
    let (_, grads) = pollster::block_on(dropout::gpu_train_pass(
        gpu(),
        &cfg,
        &params,
        &x,
        (1, 1),
        &vec![1.0; h],
    ));
    let factors = cpu::dropout_factors(&cfg, dropout::KEY, 0, 1);
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
