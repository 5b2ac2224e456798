//! Training knobs and library ergonomics: learning-rate schedules, weight decay as
//! torch.optim applies it, PyTorch's optimizer defaults, `Batch::new`, `Trainer::into_rnn`,
//! `Checkpoint::from_trainer` and the bench's JSON lines.

mod common;

use common::{gpu, uniform};
use wgpu_rnn::files::checkpoint::Checkpoint;
use wgpu_rnn::{
    cpu, Batch, CpuTrainer, Error, LossKind, LrSchedule, OptimizerConfig, OptimizerKind, Params,
    Rnn, RnnConfig, Targets, Train, TrainConfig, Trainer,
};

const T: usize = 5;
const B: usize = 3;
const I: usize = 4;
const H: usize = 8;
const O: usize = 3;

fn cfg() -> RnnConfig {
    RnnConfig::new(I, H, O)
}

fn mse_batch(step: u64) -> Batch {
    Batch::new(
        T,
        B,
        uniform(300 + step, T * B * I, 1.0),
        Targets::Values(uniform(200 + step, T * B * O, 1.0)),
    )
    .unwrap()
}

fn gpu_trainer(params: &Params<Vec<f32>>, train: &TrainConfig) -> Trainer {
    let rnn = Rnn::from_params(gpu(), cfg(), params).unwrap();
    Trainer::new(rnn, train.clone()).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-train-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Base lr 0.1, warmup 4 steps, cosine to 0.01 at 12, held there after.
const COSINE: LrSchedule = LrSchedule::Cosine {
    warmup_steps: 4,
    total_steps: 12,
    min_lr: 0.01,
};
/// Base lr 0.1, halved every 3 steps.
const STEP: LrSchedule = LrSchedule::Step {
    step_size: 3,
    gamma: 0.5,
};

/// lr of the k-th update (k = 1, 2, ...), worked out by hand: s = k − 1 updates taken.
fn expected_lr(schedule: LrSchedule, k: u64) -> f32 {
    let by_hand_cosine = [
        0.0,
        0.025,
        0.05,
        0.075, // warmup: 0.1·s/4
        0.1,   // s = 4: top of the cosine
        0.1 - 0.09 * (1.0 - (std::f64::consts::PI / 8.0).cos()) / 2.0,
        0.01 + 0.09 * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0,
        0.01 + 0.09 * (1.0 + (3.0 * std::f64::consts::PI / 8.0).cos()) / 2.0,
        0.055, // s = 8: halfway, min + (base − min)/2
    ];
    let s = (k - 1) as usize;
    match schedule {
        LrSchedule::Constant => 0.1,
        LrSchedule::Cosine { .. } if s < by_hand_cosine.len() => by_hand_cosine[s] as f32,
        LrSchedule::Cosine { .. } if s < 12 => {
            let p = (s as f64 - 4.0) / 8.0;
            (0.01 + 0.09 * (1.0 + (std::f64::consts::PI * p).cos()) / 2.0) as f32
        }
        LrSchedule::Cosine { .. } => 0.01,
        LrSchedule::Step { .. } => [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
            .get(s)
            .copied()
            .unwrap_or(0.1 * 0.5f32.powi(s as i32 / 3)),
        _ => unreachable!(),
    }
}

fn lr_close(got: f32, want: f32) -> bool {
    (got - want).abs() <= 1e-7 + 1e-6 * want.abs()
}

#[test]
fn schedules_match_their_formulas_at_warmup_boundaries_and_past_the_end() {
    for s in [0u64, 1, 3, 4, 5, 8, 11, 12, 13, 40] {
        let got = COSINE.lr_at(0.1, s);
        assert!(
            lr_close(got, expected_lr(COSINE, s + 1)),
            "cosine s={s}: {got}"
        );
    }
    assert_eq!(COSINE.lr_at(0.1, 0), 0.0, "warmup starts from 0");
    assert!(
        lr_close(COSINE.lr_at(0.1, 4), 0.1),
        "warmup ends at the base lr"
    );
    assert_eq!(COSINE.lr_at(0.1, 12), 0.01);
    assert_eq!(
        COSINE.lr_at(0.1, 1000),
        0.01,
        "held at min_lr after total_steps"
    );
    for (s, want) in [
        (0u64, 0.1f32),
        (2, 0.1),
        (3, 0.05),
        (5, 0.05),
        (6, 0.025),
        (9, 0.0125),
    ] {
        assert!(
            lr_close(STEP.lr_at(0.1, s), want),
            "step s={s}: {}",
            STEP.lr_at(0.1, s)
        );
    }
    assert_eq!(LrSchedule::Constant.lr_at(0.1, 99), 0.1);
    assert_eq!(LrSchedule::default(), LrSchedule::Constant);
    // No warmup: the cosine starts at the base lr.
    let no_warmup = LrSchedule::Cosine {
        warmup_steps: 0,
        total_steps: 10,
        min_lr: 0.0,
    };
    assert_eq!(no_warmup.lr_at(0.1, 0), 0.1);
    assert!(lr_close(no_warmup.lr_at(0.1, 5), 0.05));
}

#[test]
fn impossible_schedules_are_bad_hyperparameters() {
    let opt = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
    for s in [
        LrSchedule::Cosine {
            warmup_steps: 5,
            total_steps: 5,
            min_lr: 0.0,
        },
        LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: 5,
            min_lr: 0.2,
        },
        LrSchedule::Cosine {
            warmup_steps: 0,
            total_steps: 5,
            min_lr: f32::NAN,
        },
        LrSchedule::Step {
            step_size: 0,
            gamma: 0.5,
        },
        LrSchedule::Step {
            step_size: 2,
            gamma: f32::INFINITY,
        },
        LrSchedule::Step {
            step_size: 2,
            gamma: 0.0,
        },
    ] {
        let tc = TrainConfig::new(opt.clone(), LossKind::Mse).with_schedule(s);
        assert!(
            matches!(tc.validate(), Err(Error::BadHyperparameter { .. })),
            "{s:?}"
        );
        let e = CpuTrainer::new(cfg(), &cfg().init_params(1), tc.clone()).err();
        assert!(matches!(e, Some(Error::BadHyperparameter { .. })), "{s:?}");
        let e = Trainer::new(Rnn::new(gpu(), cfg(), 1).unwrap(), tc).err();
        assert!(matches!(e, Some(Error::BadHyperparameter { .. })), "{s:?}");
    }
}

/// Both trainers report the scheduled lr of every step, and a run saved after 5 steps and
/// restored from the file continues the schedule (and the training) exactly.
#[test]
fn trainers_follow_the_schedule_across_a_save_and_restore() {
    let params = cfg().init_params(7);
    for schedule in [COSINE, STEP] {
        let mut tc = TrainConfig::new(
            OptimizerConfig::new(OptimizerKind::Adam, 0.1),
            LossKind::Mse,
        )
        .with_schedule(schedule);
        tc.stateful = true;
        type Make<'a> = Box<dyn Fn() -> Box<dyn Train> + 'a>;
        let trainers: [(&str, Make); 2] = [
            ("gpu", Box::new(|| Box::new(gpu_trainer(&params, &tc)))),
            (
                "cpu",
                Box::new(|| Box::new(CpuTrainer::new(cfg(), &params, tc.clone()).unwrap())),
            ),
        ];
        for (device, make) in trainers {
            let tag = format!("{device} {schedule:?}");
            let mut whole = make();
            for k in 1..=15u64 {
                let s = whole.step(&mse_batch(k)).unwrap();
                assert_eq!(s.step, k);
                assert!(
                    lr_close(s.lr, expected_lr(schedule, k)),
                    "{tag} step {k}: lr {} expected {}",
                    s.lr,
                    expected_lr(schedule, k)
                );
            }
            let mut first = make();
            for k in 1..=5u64 {
                first.step(&mse_batch(k)).unwrap();
            }
            let path = tmp(&format!(
                "resume-{device}-{}.safetensors",
                schedule_name(schedule)
            ));
            Checkpoint::from_trainer(first.as_ref(), "sine", None)
                .unwrap()
                .save(&path)
                .unwrap();
            let ck = Checkpoint::load(&path).unwrap();
            let mut resumed: Box<dyn Train> = match device {
                "gpu" => Box::new(
                    Trainer::new(
                        Rnn::from_params(gpu(), ck.config.clone(), &ck.params).unwrap(),
                        tc.clone(),
                    )
                    .unwrap(),
                ),
                _ => Box::new(CpuTrainer::new(ck.config.clone(), &ck.params, tc.clone()).unwrap()),
            };
            ck.restore_into(resumed.as_mut()).unwrap();
            assert_eq!(resumed.steps(), 5);
            for k in 6..=15u64 {
                let s = resumed.step(&mse_batch(k)).unwrap();
                assert_eq!(s.step, k);
                assert!(
                    lr_close(s.lr, expected_lr(schedule, k)),
                    "{tag} resumed step {k}: lr {}",
                    s.lr
                );
            }
            let (a, b) = (whole.params().unwrap(), resumed.params().unwrap());
            for (x, y) in a.tensors().iter().zip(b.tensors()) {
                if device == "gpu" {
                    // f32 state saved and restored as is: the same arithmetic.
                    assert_eq!(
                        *x, y,
                        "{tag}: resumed run differs from the uninterrupted one"
                    );
                } else {
                    // The reference keeps f64 and the file f32.
                    common::assert_close(&tag, x, &common::widen(y), 1e-5, 1e-4);
                }
            }
        }
    }
}

fn schedule_name(s: LrSchedule) -> &'static str {
    match s {
        LrSchedule::Cosine { .. } => "cosine",
        LrSchedule::Step { .. } => "step",
        _ => "constant",
    }
}

/// The scheduled lr is the one applied: the first step of a warmup (lr 0) leaves plain
/// SGD's parameters as they were on both trainers, and the second moves them.
#[test]
fn a_zero_warmup_lr_leaves_the_parameters_unchanged() {
    let params = cfg().init_params(2);
    let mut tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.5), LossKind::Mse)
        .with_schedule(COSINE);
    tc.clip_norm = None;
    let mut g = gpu_trainer(&params, &tc);
    let mut c = CpuTrainer::new(cfg(), &params, tc).unwrap();
    for t in [&mut g as &mut dyn Train, &mut c] {
        let s = t.step(&mse_batch(0)).unwrap();
        assert_eq!(s.lr, 0.0);
        assert_eq!(t.params().unwrap(), params, "lr 0 changed the parameters");
        t.step(&mse_batch(1)).unwrap();
        assert_ne!(t.params().unwrap(), params);
    }
}

/// Gradient of the mean-squared error of `batch` at `params`, from the f64 reference.
fn reference_gradient(params: &Params<Vec<f32>>, batch: &Batch) -> Params<Vec<f64>> {
    let c = cfg();
    let p = params.to_f64();
    let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
    let fwd = cpu::forward(&c, &p, &x, &[T, B, I], None, None).unwrap();
    let Targets::Values(v) = &batch.targets else {
        unreachable!()
    };
    let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let w = vec![1.0; T * B];
    let (_, dy) = cpu::mse(&fwd.y, O, &v, &w, 1.0 / (T * B * O) as f64);
    cpu::backward(&c, &p, &x, &fwd, &dy, None).unwrap().params
}

/// One step of torch.optim.SGD / Adam / AdamW / Adagrad with weight_decay, written out
/// as PyTorch's docs give them, after clip_grad_norm_ (which sees the raw gradient only):
///
/// ```python
/// torch.nn.utils.clip_grad_norm_(params, c); opt.step()
/// # SGD:     w -= lr (g + wd w)
/// # Adam:    g' = g + wd w; m = (1-b1) g'; v = (1-b2) g'^2; w -= lr (m/bc1) / (sqrt(v/bc2) + eps)
/// # AdamW:   w *= 1 - lr wd; then Adam's step on g itself
/// # Adagrad: g' = g + wd w; v = g'^2; w -= lr g' / (sqrt(v) + eps)
/// ```
fn torch_step(kind: OptimizerKind, w: f64, g: f64, lr: f64, wd: f64, eps: f64) -> f64 {
    let (b1, b2) = (0.9f64, 0.999f64);
    match kind {
        OptimizerKind::Sgd => w - lr * (g + wd * w),
        OptimizerKind::Adam => {
            let g = g + wd * w;
            let (m, v) = ((1.0 - b1) * g, (1.0 - b2) * g * g);
            w - lr * (m / (1.0 - b1)) / ((v / (1.0 - b2)).sqrt() + eps)
        }
        OptimizerKind::AdamW => {
            let (m, v) = ((1.0 - b1) * g, (1.0 - b2) * g * g);
            w * (1.0 - lr * wd) - lr * (m / (1.0 - b1)) / ((v / (1.0 - b2)).sqrt() + eps)
        }
        OptimizerKind::Adagrad => {
            let g = g + wd * w;
            w - lr * g / ((g * g).sqrt() + eps)
        }
        _ => unreachable!(),
    }
}

#[test]
fn weight_decay_matches_one_hand_computed_pytorch_step() {
    let params = cfg().init_params(11);
    let batch = mse_batch(3);
    let g = reference_gradient(&params, &batch);
    let norm = g
        .tensors()
        .iter()
        .flat_map(|t| t.iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    // Clip to half the norm, so that clipping acts and a wd term inside it would show.
    let clip = (norm / 2.0) as f32;
    let scale = clip as f64 / (norm + 1e-6);
    let (lr, wd, eps) = (0.05f32, 0.2f32, 1e-2f32);
    for kind in [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::Adagrad,
    ] {
        let mut opt = OptimizerConfig::new(kind, lr).with_weight_decay(wd);
        opt.eps = eps;
        let mut tc = TrainConfig::new(opt, LossKind::Mse);
        tc.clip_norm = Some(clip);
        let want: Vec<Vec<f64>> = params
            .tensors()
            .iter()
            .zip(g.tensors())
            .map(|(w, g)| {
                w.iter()
                    .zip(g)
                    .map(|(&w, &g)| {
                        torch_step(kind, w as f64, g * scale, lr as f64, wd as f64, eps as f64)
                    })
                    .collect()
            })
            .collect();
        // Without weight decay the step differs by more than the tolerance somewhere.
        let moved: f64 = params
            .tensors()
            .iter()
            .zip(g.tensors())
            .flat_map(|(w, g)| {
                w.iter().zip(g).map(move |(&w, &g)| {
                    let a = torch_step(kind, w as f64, g * scale, lr as f64, wd as f64, eps as f64);
                    let b = torch_step(kind, w as f64, g * scale, lr as f64, 0.0, eps as f64);
                    (a - b).abs()
                })
            })
            .fold(0.0, f64::max);
        assert!(
            moved > 1e-3,
            "{kind:?}: weight decay changes nothing ({moved})"
        );

        let mut gt = gpu_trainer(&params, &tc);
        let mut ct = CpuTrainer::new(cfg(), &params, tc).unwrap();
        for (device, t) in [("gpu", &mut gt as &mut dyn Train), ("cpu", &mut ct)] {
            let s = t.step(&batch).unwrap();
            assert!(
                s.grad_norm as f64 > clip as f64,
                "{device} {kind:?}: no clipping"
            );
            let got = t.params().unwrap();
            for (k, (a, b)) in got.tensors().iter().zip(&want).enumerate() {
                common::assert_close(&format!("{device} {kind:?} tensor {k}"), a, b, 2e-6, 1e-5);
            }
        }
    }
}

/// GPU and reference agree step by step with weight decay under a schedule, for every
/// optimizer.
#[test]
fn gpu_trains_like_the_reference_with_weight_decay_and_a_schedule() {
    let params = cfg().init_params(4);
    for (kind, lr) in [
        (OptimizerKind::Sgd, 0.1),
        (OptimizerKind::Adam, 0.01),
        (OptimizerKind::AdamW, 0.01),
        (OptimizerKind::Adagrad, 0.05),
    ] {
        for schedule in [
            LrSchedule::Cosine {
                warmup_steps: 2,
                total_steps: 6,
                min_lr: lr / 10.0,
            },
            STEP,
        ] {
            let opt = OptimizerConfig::new(kind, lr)
                .with_weight_decay(0.05)
                .with_momentum(if kind == OptimizerKind::Sgd { 0.9 } else { 0.0 });
            let mut tc = TrainConfig::new(opt, LossKind::Mse).with_schedule(schedule);
            tc.clip_norm = Some(0.5);
            let mut g = gpu_trainer(&params, &tc);
            let mut c = CpuTrainer::new(cfg(), &params, tc).unwrap();
            for k in 0..8 {
                let (sg, sc) = (
                    g.step(&mse_batch(k)).unwrap(),
                    c.step(&mse_batch(k)).unwrap(),
                );
                assert_eq!(sg.lr, sc.lr);
                assert!((sg.loss - sc.loss).abs() <= 1e-5 + 1e-4 * sc.loss.abs());
            }
            let (a, b) = (g.params().unwrap(), c.params().unwrap());
            for (k, (x, y)) in a.tensors().iter().zip(b.tensors()).enumerate() {
                let tag = format!("{kind:?} {schedule:?} tensor {k}");
                common::assert_close(&tag, x, &common::widen(y), 1e-5, 1e-3);
            }
        }
    }
}

#[test]
fn optimizer_defaults_are_pytorchs() {
    let sgd = OptimizerConfig::new(OptimizerKind::Sgd, 0.1);
    assert_eq!((sgd.momentum, sgd.weight_decay), (0.0, 0.0));
    for kind in [OptimizerKind::Adam, OptimizerKind::AdamW] {
        let a = OptimizerConfig::new(kind, 0.1);
        assert_eq!(
            (a.beta1, a.beta2, a.eps, a.weight_decay),
            (0.9, 0.999, 1e-8, 0.0)
        );
    }
    let a = OptimizerConfig::new(OptimizerKind::Adagrad, 0.1);
    assert_eq!((a.eps, a.weight_decay), (1e-10, 0.0));
    let tc = TrainConfig::new(sgd.clone(), LossKind::Mse);
    assert_eq!(tc.schedule, LrSchedule::Constant);

    // Plain SGD keeps no momentum buffer: after two steps it is still zero, and the
    // second step is -lr·g of its own batch alone.
    let params = cfg().init_params(9);
    let mut tc = TrainConfig::new(sgd, LossKind::Mse);
    tc.clip_norm = None;
    let mut t = gpu_trainer(&params, &tc);
    t.step(&mse_batch(0)).unwrap();
    let mid = t.params().unwrap();
    t.step(&mse_batch(1)).unwrap();
    let (m, _) = t.optim_state().unwrap();
    assert!(m.tensors().iter().all(|v| v.iter().all(|&x| x == 0.0)));
    let g = reference_gradient(&mid, &mse_batch(1));
    let after = t.params().unwrap();
    for ((a, w), g) in after.tensors().iter().zip(mid.tensors()).zip(g.tensors()) {
        let want: Vec<f64> = w.iter().zip(g).map(|(&w, &g)| w as f64 - 0.1 * g).collect();
        common::assert_close("plain SGD step", a, &want, 1e-6, 1e-5);
    }
}

#[test]
fn batch_new_fills_weights_and_rejects_wrong_lengths() {
    let b = Batch::new(2, 3, vec![0.5; 2 * 3 * 4], Targets::Classes(vec![1; 6])).unwrap();
    assert_eq!((b.t, b.b, b.weights.clone()), (2, 3, vec![1.0; 6]));
    let b = b.with_weights(vec![0.0, 1.0, 2.0, 1.0, 1.0, 1.0]).unwrap();
    assert_eq!(b.weights[2], 2.0);
    assert!(matches!(
        b.with_weights(vec![1.0; 5]),
        Err(Error::DataLength { .. })
    ));
    let x = || vec![0.0; 24];
    let cases: Vec<(&str, wgpu_rnn::Result<Batch>)> = vec![
        ("T = 0", Batch::new(0, 3, vec![], Targets::Classes(vec![]))),
        ("B = 0", Batch::new(2, 0, vec![], Targets::Classes(vec![]))),
        (
            "x not a multiple of T·B",
            Batch::new(2, 3, vec![0.0; 25], Targets::Classes(vec![0; 6])),
        ),
        (
            "empty x",
            Batch::new(2, 3, vec![], Targets::Classes(vec![0; 6])),
        ),
        (
            "classes short",
            Batch::new(2, 3, x(), Targets::Classes(vec![0; 5])),
        ),
        (
            "classes long",
            Batch::new(2, 3, x(), Targets::Classes(vec![0; 12])),
        ),
        (
            "values not a multiple",
            Batch::new(2, 3, x(), Targets::Values(vec![0.0; 7])),
        ),
    ];
    for (what, r) in cases {
        assert!(
            matches!(
                r,
                Err(Error::ZeroSize { .. } | Error::Shape { .. } | Error::DataLength { .. })
            ),
            "{what}: {r:?}"
        );
    }
    assert!(Batch::new(2, 3, x(), Targets::Values(vec![0.0; 12])).is_ok());
}

/// `into_rnn` hands back the trained model: its forward is that of the trained
/// parameters, without rebuilding anything.
#[test]
fn into_rnn_gives_the_trained_models_forward() {
    let params = cfg().init_params(5);
    let tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.05),
        LossKind::Mse,
    );
    let mut t = gpu_trainer(&params, &tc);
    for k in 0..4 {
        t.step(&mse_batch(k)).unwrap();
    }
    let x = uniform(77, T * B * I, 1.0);
    let xt = gpu().tensor(&[T, B, I], &x).unwrap();
    let via_mut = t
        .rnn_mut()
        .forward(&xt, None)
        .unwrap()
        .y
        .download()
        .unwrap();
    let trained = t.params().unwrap();
    assert_ne!(trained, params, "training changed nothing");
    let mut rnn = t.into_rnn();
    let y = rnn.forward(&xt, None).unwrap().y.download().unwrap();
    assert_eq!(y, via_mut);
    let mut fresh = Rnn::from_params(gpu(), cfg(), &trained).unwrap();
    assert_eq!(y, fresh.forward(&xt, None).unwrap().y.download().unwrap());
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let reference = cpu::forward(&cfg(), &trained.to_f64(), &xs, &[T, B, I], None, None).unwrap();
    common::assert_close("into_rnn forward", &y, &reference.y, 1e-5, 1e-4);
}

/// One call gathers what main.rs's `train` assembled by hand; the file gives it back.
#[test]
fn checkpoint_from_trainer_round_trips() {
    let params = cfg().init_params(6);
    let mut tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::AdamW, 0.01).with_weight_decay(0.01),
        LossKind::Mse,
    )
    .with_schedule(STEP);
    tc.stateful = true;
    let mut g = gpu_trainer(&params, &tc);
    let mut c = CpuTrainer::new(cfg(), &params, tc).unwrap();
    for (device, t) in [("gpu", &mut g as &mut dyn Train), ("cpu", &mut c)] {
        for k in 0..3 {
            t.step(&mse_batch(k)).unwrap();
        }
        let mut ck = Checkpoint::from_trainer(&*t, "sine", None).unwrap();
        assert_eq!(ck.config, cfg());
        assert_eq!(ck.step, 3);
        assert_eq!(ck.params, t.params().unwrap());
        assert_eq!(ck.optim, Some(t.optim_state().unwrap()));
        assert_eq!(ck.carried_state, t.carried_state().unwrap());
        assert!(
            ck.carried_state.is_some(),
            "stateful training carries a state"
        );
        assert_eq!(ck.extra["optimizer"], "AdamW");
        assert_eq!(ck.extra["lr"], "0.01");
        ck.extra.insert("seed".into(), "42".into());
        let path = tmp(&format!("from-trainer-{device}.safetensors"));
        ck.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), ck, "{device}");
    }
    // A concrete Trainer works as well as a trait object.
    let ck = Checkpoint::from_trainer(&g, "sine", None).unwrap();
    assert_eq!(ck.step, 3);
}

#[test]
fn bench_json_lines_parse_with_their_fields() {
    use wgpu_rnn::app::bench::{self, BenchRow, MatmulRow, Shape};
    let shape = Shape {
        b: 2,
        t: 5,
        i: 3,
        h: 6,
        o: 2,
        cell: wgpu_rnn::CellKind::Lstm,
        vocab: None,
    };
    let row = BenchRow {
        shape,
        device: "gpu",
        adapter: "odd \"name\" \\ with\ttab".into(),
        path: "fused, gemm tiled".into(),
        forward_ms: 1.234567,
        train_ms: 3.5,
        dispatches_per_step: 12,
        submits_per_step: 1,
        host_record_us: None,
        peak_device_bytes: Some(4096),
        reps: 7,
    };
    let line = row.to_json();
    assert!(!line.contains('\n'), "{line}");
    // Python's json.dumps separators, which tests/cli.rs and gpu-check.sh read.
    assert!(line.contains("\"shape\": [2, 5, 3, 6, 2]"), "{line}");
    assert!(line.contains("\"device\": \"gpu\""), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let keys = [
        "shape",
        "cell",
        "vocab",
        "device",
        "adapter",
        "path",
        "forward_tokens_per_s",
        "train_tokens_per_s",
        "forward_ms",
        "train_ms",
        "forward_gflops",
        "train_gflops",
        "dispatches_per_step",
        "submits_per_step",
        "host_record_us",
        "peak_device_bytes",
        "reps",
    ];
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), keys.len(), "{line}");
    for k in keys {
        assert!(obj.contains_key(k), "{k} missing: {line}");
    }
    assert_eq!(v["adapter"], "odd \"name\" \\ with\ttab");
    assert_eq!(v["cell"], "lstm");
    assert_eq!(v["forward_ms"], 1.2346);
    assert_eq!(v["train_ms"], 3.5);
    assert_eq!(v["train_tokens_per_s"], 2857.1); // 10 tokens / 3.5 ms
    assert_eq!(v["host_record_us"], serde_json::Value::Null);
    assert_eq!(v["peak_device_bytes"], 4096);
    assert_eq!(v["reps"], 7);

    let p = bench::profile_json(shape, &[("recurrence", 0.123456), ("loss", 2.0)]);
    let pv: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(pv["profile"], true);
    assert_eq!(pv["shape"], serde_json::json!([2, 5, 3, 6, 2]));
    assert_eq!(pv["gpu_ms"]["recurrence"], 0.1235);
    assert!(
        p.find("recurrence") < p.find("loss"),
        "parts keep their order: {p}"
    );

    let m = bench::matmul_json(
        gpu(),
        &MatmulRow {
            n: 16,
            ms: 0.5,
            reps: 3,
        },
    );
    assert!(m.starts_with("{\"matmul\": 16, "), "{m}");
    let mv: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!(mv["adapter"], gpu().adapter().to_string());
    assert_eq!(mv["gemm"], gpu().gemm().to_string());
    assert_eq!(mv["ms"], 0.5);
    assert_eq!(mv["gflops"], 0.016);

    assert_eq!(bench::json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
}
