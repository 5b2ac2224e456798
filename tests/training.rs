//! The GPU trainer (loss, backward, clipping, optimizers in one submit) against the CPU
//! reference trainer, step by step.

mod common;

use common::gpu;
use common::training::{batch, B, H, I, O, T};
use wgpu_rnn::{
    CellKind, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets, Train,
    TrainConfig, Trainer,
};

fn compare(
    kind: OptimizerKind,
    lr: f32,
    loss: LossKind,
    clip_norm: Option<f32>,
    clip_value: Option<f32>,
) {
    compare_cfg(
        RnnConfig::new(I, H, O),
        kind,
        lr,
        loss,
        clip_norm,
        clip_value,
    )
}

fn compare_cfg(
    cfg: RnnConfig,
    kind: OptimizerKind,
    lr: f32,
    loss: LossKind,
    clip_norm: Option<f32>,
    clip_value: Option<f32>,
) {
    compare_on(gpu(), cfg, kind, lr, loss, clip_norm, clip_value)
}

fn compare_on(
    gpu: &wgpu_rnn::Gpu,
    cfg: RnnConfig,
    kind: OptimizerKind,
    lr: f32,
    loss: LossKind,
    clip_norm: Option<f32>,
    clip_value: Option<f32>,
) {
    pollster::block_on(common::training::compare_async(
        gpu, cfg, kind, lr, loss, clip_norm, clip_value,
    ))
}

#[test]
fn sgd_momentum_cross_entropy_with_norm_clipping() {
    compare(
        OptimizerKind::Sgd,
        0.1,
        LossKind::CrossEntropy,
        Some(0.5),
        None,
    );
}

#[test]
fn adam_cross_entropy_with_value_clipping() {
    compare(
        OptimizerKind::Adam,
        0.01,
        LossKind::CrossEntropy,
        None,
        Some(0.01),
    );
}

#[test]
fn adagrad_mse_with_both_clips() {
    compare(
        OptimizerKind::Adagrad,
        0.05,
        LossKind::Mse,
        Some(0.2),
        Some(0.05),
    );
}

#[test]
fn adam_mse_without_clipping() {
    compare(OptimizerKind::Adam, 0.01, LossKind::Mse, None, None);
}

#[test]
fn training_reduces_the_loss() {
    let cfg = RnnConfig::new(I, H, O);
    let rnn = Rnn::new(gpu(), cfg, 1).unwrap();
    let train = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.02),
        LossKind::CrossEntropy,
    );
    let mut t = Trainer::new(rnn, train).unwrap();
    let b = batch(0, LossKind::CrossEntropy);
    let first = t.evaluate(&b).unwrap();
    for _ in 0..60 {
        t.step(&b).unwrap();
    }
    let last = t.evaluate(&b).unwrap();
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

#[test]
fn non_finite_gradients_skip_the_update() {
    let cfg = RnnConfig::new(I, H, O);
    let rnn = Rnn::new(gpu(), cfg, 1).unwrap();
    let train = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Sgd, 0.1),
        LossKind::CrossEntropy,
    );
    let mut t = Trainer::new(rnn, train).unwrap();
    let before = t.params().unwrap();
    let mut b = batch(0, LossKind::CrossEntropy);
    b.x[5] = f32::NAN;
    let s = t.step(&b).unwrap();
    assert!(s.skipped, "{s:?}");
    assert_eq!(t.params().unwrap(), before);
    // A finite batch afterwards trains normally.
    let s = t.step(&batch(1, LossKind::CrossEntropy)).unwrap();
    assert!(!s.skipped && s.loss.is_finite());
    assert_ne!(t.params().unwrap(), before);
}

#[test]
fn bad_batches_and_hyperparameters_are_errors() {
    let cfg = RnnConfig::new(I, H, O);
    let mk = |lr: f32| {
        let rnn = Rnn::new(gpu(), cfg.clone(), 1).unwrap();
        Trainer::new(
            rnn,
            TrainConfig::new(
                OptimizerConfig::new(OptimizerKind::Sgd, lr),
                LossKind::CrossEntropy,
            ),
        )
    };
    for lr in [f32::NAN, -1.0, 0.0, f32::INFINITY] {
        assert!(
            matches!(mk(lr), Err(wgpu_rnn::Error::BadHyperparameter { .. })),
            "lr {lr}"
        );
    }
    let mut t = mk(0.1).unwrap();
    let mut b = batch(0, LossKind::CrossEntropy);
    b.targets = Targets::Classes(vec![O as u32; T * B]);
    assert!(matches!(t.step(&b), Err(wgpu_rnn::Error::BadTarget { .. })));
    let b = batch(0, LossKind::Mse);
    assert!(matches!(t.step(&b), Err(wgpu_rnn::Error::LossMismatch)));
    let mut b = batch(0, LossKind::CrossEntropy);
    b.weights.pop();
    assert!(matches!(
        t.step(&b),
        Err(wgpu_rnn::Error::DataLength { .. })
    ));
}

/// The bench's profile splits a training step into named parts with GPU times, and the
/// memory counter sees the trainer's buffers come and go.
#[test]
fn profile_and_memory_accounting() {
    use wgpu_rnn::app::bench::{profile_gpu, Shape};
    // A context of its own: other tests' buffers would move a shared counter.
    let own = wgpu_rnn::Gpu::new().expect("a wgpu adapter (see README: Requirements)");
    let gpu = &own;
    let shape = Shape {
        b: 2,
        t: 6,
        i: 3,
        h: 5,
        o: 2,
        cell: CellKind::Rnn,
        vocab: None,
    };
    let before = gpu.memory().live_bytes;
    if gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let parts = profile_gpu(gpu, shape.with_cell(cell)).unwrap();
            let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
            for part in [
                "input projection",
                "recurrence",
                "loss",
                "recurrence backward",
                "optimizer update",
            ] {
                assert!(
                    names.contains(&part),
                    "{cell:?}: {part} missing from {names:?}"
                );
            }
            assert!(
                parts.iter().all(|p| p.1 >= 0.0 && p.1.is_finite()),
                "{cell:?}: {parts:?}"
            );
        }
    } else {
        let e = profile_gpu(gpu, shape).unwrap_err();
        assert!(e.to_string().contains("TIMESTAMP_QUERY"), "{e}");
    }
    let cfg = RnnConfig::new(3, 5, 2);
    let trainer = Trainer::new(
        Rnn::new(gpu, cfg, 0).unwrap(),
        TrainConfig::new(
            OptimizerConfig::new(OptimizerKind::Adam, 0.01),
            LossKind::Mse,
        ),
    )
    .unwrap();
    // 6 parameters (w_ih, w_hh, b_ih, b_hh, w_hy, b_y), 6 gradients and 2 x 6 moments of
    // 3·5 + 5·5 + 5 + 5 + 5·2 + 2 = 62 floats at least
    assert!(
        gpu.memory().live_bytes >= before + 4 * 4 * 62,
        "{:?}",
        gpu.memory()
    );
    assert!(gpu.memory().peak_bytes >= gpu.memory().live_bytes);
    drop(trainer);
    assert_eq!(
        gpu.memory().live_bytes,
        before,
        "the trainer's buffers are released"
    );
}

/// A stacked bidirectional relu model trains the same on the GPU as on the reference.
#[test]
fn stacked_bidirectional_adam_cross_entropy() {
    let cfg = RnnConfig::new(I, H, O)
        .with_layers(2)
        .with_bidirectional(true)
        .with_activation(wgpu_rnn::Activation::Relu);
    compare_cfg(
        cfg,
        OptimizerKind::Adam,
        0.01,
        LossKind::CrossEntropy,
        Some(0.1),
        None,
    );
}

/// LSTM and GRU train the same on the GPU as on the reference, stateful (the carried
/// state holds c for LSTM), stacked and bidirectional, with norm clipping; and without
/// biases.
#[test]
fn lstm_and_gru_train_like_the_reference() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(I, H, O)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true);
        compare_cfg(
            cfg,
            OptimizerKind::Adam,
            0.01,
            LossKind::CrossEntropy,
            Some(0.1),
            None,
        );
        compare_cfg(
            RnnConfig::new(I, H, O).with_cell(cell).with_bias(false),
            OptimizerKind::Sgd,
            0.1,
            LossKind::Mse,
            Some(0.05),
            Some(0.05),
        );
    }
}

/// The parameters, their gradients and moments share one buffer each, so that one
/// dispatch updates them all; past the device's binding limit they take several, and
/// training is unchanged.
#[test]
fn parameters_past_one_binding_are_split_and_train_like_the_reference() {
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 16 << 10,
        ..wgpu::Limits::default()
    };
    let small =
        wgpu_rnn::Gpu::with_options(&wgpu_rnn::GpuOptions::from_env().with_limits(limits)).unwrap();
    // 2 layers of LSTM, H = 32: 4·32·(4 + 32 + 2) + 4·32·(32 + 32 + 2) + 5·33 = 13 477
    // values, so at least four 4096-value buffers; W_hh alone just fits one.
    let cfg = RnnConfig::new(I, 32, O)
        .with_cell(CellKind::Lstm)
        .with_layers(2);
    let total: usize = cfg
        .param_shapes()
        .tensors()
        .iter()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert!(total > 3 * 4096, "{total}");
    compare_on(
        &small,
        cfg.clone(),
        OptimizerKind::Adam,
        0.01,
        LossKind::CrossEntropy,
        Some(0.05),
        None,
    );
    compare_on(
        &small,
        cfg,
        OptimizerKind::Sgd,
        0.1,
        LossKind::Mse,
        Some(0.05),
        None,
    );
}

/// The gradient norm's subgroup kernel (where the adapter offers subgroups) and the plain
/// one (kept for adapters without them) agree, and each trains like the reference.
#[test]
fn subgroup_and_plain_gradient_norms_agree() {
    let plain =
        wgpu_rnn::Gpu::with_options(&wgpu_rnn::GpuOptions::from_env().without_subgroups()).unwrap();
    assert!(!plain.subgroups());
    if !gpu().subgroups() {
        eprintln!(
            "note: {} offers no subgroups (or WGPU_RNN_SUBGROUPS=0): only the plain path runs",
            gpu().adapter()
        );
    }
    let cfg = RnnConfig::new(I, 40, O).with_cell(CellKind::Gru);
    let params = cfg.init_params(5);
    let train = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.1), LossKind::Mse);
    let mut a = Trainer::new(
        Rnn::from_params(gpu(), cfg.clone(), &params).unwrap(),
        train.clone(),
    )
    .unwrap();
    let mut b = Trainer::new(
        Rnn::from_params(&plain, cfg.clone(), &params).unwrap(),
        train,
    )
    .unwrap();
    for step in 0..4 {
        let batch = batch(step, LossKind::Mse);
        let (sa, sb) = (a.step(&batch).unwrap(), b.step(&batch).unwrap());
        assert!(
            (sa.grad_norm - sb.grad_norm).abs() <= 1e-6 * sb.grad_norm,
            "step {step}: norm {} with subgroups, {} without",
            sa.grad_norm,
            sb.grad_norm
        );
    }
    compare_on(
        &plain,
        cfg,
        OptimizerKind::Adam,
        0.01,
        LossKind::Mse,
        Some(0.05),
        None,
    );
}

/// A training step is one submit, and past the model's own forward and backward it adds
/// two loss dispatches and two for the optimizer (the gradient norm, then the clip and
/// update of every parameter at once), however many parameter tensors the model has.
#[test]
fn a_training_step_is_one_submit_with_one_norm_and_one_update_dispatch() {
    for cfg in [
        RnnConfig::new(I, H, O),
        RnnConfig::new(I, H, O)
            .with_cell(CellKind::Lstm)
            .with_layers(3)
            .with_bidirectional(true),
    ] {
        let tensors = cfg.param_shapes().tensors().len();
        let mut rnn = Rnn::new(gpu(), cfg, 2).unwrap();
        let b = batch(0, LossKind::Mse);
        rnn.forward(&gpu().tensor(&[T, B, I], &b.x).unwrap(), None)
            .unwrap();
        let forward = rnn.last_call_stats().dispatches;
        rnn.backward(&gpu().zeros(&[T, B, O]).unwrap(), None)
            .unwrap();
        let backward = rnn.last_call_stats().dispatches;
        let train = TrainConfig::new(
            OptimizerConfig::new(OptimizerKind::Adam, 0.01),
            LossKind::Mse,
        );
        let mut trainer = Trainer::new(rnn, train).unwrap();
        trainer.step(&b).unwrap();
        let stats = trainer.last_step_stats();
        assert_eq!(stats.submits, 1);
        assert_eq!(
            stats.dispatches,
            forward + 2 + backward + 2,
            "{tensors} parameter tensors"
        );
        assert!(trainer.last_host_record_us() > 0.0);
    }
}
