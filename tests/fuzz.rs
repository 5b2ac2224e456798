//! Seeded property test: 10,000 random cases drive the public API with valid and invalid
//! configs (every cell, with and without biases), shapes, values, initial states, lengths,
//! batches and checkpoint bytes. No case may panic; every valid forward/backward must
//! match the CPU reference. (The CLI's parser is fuzzed in tests/cli.rs.)

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::files::checkpoint::Checkpoint;
use wgpu_rnn::{
    cpu, Activation, Batch, CellKind, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig,
    State, Targets, Train, TrainConfig, Trainer,
};

const CASES: u64 = 10_000;

const CELLS: [CellKind; 3] = [CellKind::Rnn, CellKind::Lstm, CellKind::Gru];

/// A size that is usually valid, sometimes zero, rarely absurd.
fn size(rng: &mut ChaCha8Rng, max: usize) -> usize {
    match rng.random_range(0..100) {
        0..=3 => 0,
        4 => 1 << 40,
        _ => rng.random_range(1..=max),
    }
}

fn value(rng: &mut ChaCha8Rng, wild: bool) -> f32 {
    if wild && rng.random_range(0..50) == 0 {
        [f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30, -1e30][rng.random_range(0..5)]
    } else {
        rng.random_range(-2.0..2.0)
    }
}

fn values(rng: &mut ChaCha8Rng, n: usize, wild: bool) -> Vec<f32> {
    (0..n).map(|_| value(rng, wild)).collect()
}

/// Shape `want`, or (sometimes) something close to it that is wrong.
fn shape(rng: &mut ChaCha8Rng, want: &[usize]) -> Vec<usize> {
    let mut s = want.to_vec();
    match rng.random_range(0..20) {
        0 => {
            s.pop();
        }
        1 => s.push(1),
        2 if !s.is_empty() => {
            let k = rng.random_range(0..s.len());
            s[k] += 1;
        }
        _ => {}
    }
    s
}

fn finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite() && x.abs() < 1e6)
}

#[test]
fn ten_thousand_random_cases_never_panic_and_valid_ones_match_the_reference() {
    let gpu = common::gpu();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let (mut valid, mut compared, mut errors) = (0, 0, 0);
    let mut per_cell = [0usize; 3];
    // A good checkpoint per cell, with optimizer moments and a carried state (h, and c
    // for LSTM).
    let good_ck = {
        let dir = std::env::temp_dir().join(format!("wgpu-rnn-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<Vec<u8>> = CELLS
            .iter()
            .enumerate()
            .map(|(k, &cell)| {
                let cfg = RnnConfig::new(2, 3, 2)
                    .with_cell(cell)
                    .with_layers(2)
                    .with_bidirectional(true)
                    .with_bias(k != 1);
                let n = cfg.cells() * 2 * 3;
                let ck = Checkpoint {
                    params: cfg.init_params(1),
                    optim: Some((cfg.init_params(2), cfg.init_params(3))),
                    carried_state: Some((2, State::filled(cell, vec![0.25; n]))),
                    config: cfg,
                    task: "adding".into(),
                    vocab: None,
                    step: 3,
                    extra: Default::default(),
                };
                let p = dir.join(format!("good-{}.safetensors", cell.name()));
                ck.save(&p).unwrap();
                assert_eq!(Checkpoint::load(&p).unwrap(), ck);
                std::fs::read(&p).unwrap()
            })
            .collect();
        (dir, files)
    };
    for case in 0..CASES {
        // A tenth of the cases: mutated checkpoint bytes.
        if case % 10 == 9 {
            let mut bytes = good_ck.1[rng.random_range(0..good_ck.1.len())].clone();
            for _ in 0..rng.random_range(1..8) {
                let k = rng.random_range(0..bytes.len());
                bytes[k] = rng.random();
            }
            if rng.random_range(0..4) == 0 {
                bytes.truncate(rng.random_range(0..bytes.len()));
            }
            let p = good_ck.0.join(format!("m{}.safetensors", case % 7));
            std::fs::write(&p, &bytes).unwrap();
            if Checkpoint::load(&p).is_err() {
                errors += 1;
            }
            continue;
        }
        let cell = CELLS[rng.random_range(0..CELLS.len())];
        // relu with a gated cell is invalid: rarely asked for.
        let relu = rng.random_range(0..if cell == CellKind::Rnn { 2 } else { 20 }) == 0;
        let cfg = RnnConfig::new(size(&mut rng, 6), size(&mut rng, 9), size(&mut rng, 4))
            .with_cell(cell)
            .with_layers(rng.random_range(0..=3))
            .with_bidirectional(rng.random())
            .with_bias(rng.random_range(0..4) != 0)
            .with_activation(if relu {
                Activation::Relu
            } else {
                Activation::Tanh
            });
        let rnn = Rnn::new(gpu, cfg.clone(), case);
        let mut rnn = match rnn {
            Ok(r) => r,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let (t, b) = (size(&mut rng, 7).min(64), size(&mut rng, 5).min(64));
        let cells = cfg.cells();
        let (i, h, o) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
        let wild = rng.random_range(0..5) == 0;
        let x_shape = shape(&mut rng, &[t, b, i]);
        let x_vals = values(&mut rng, x_shape.iter().product(), wild);
        let x = match gpu.tensor(&x_shape, &x_vals) {
            Ok(x) => x,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        // An initial state: h, and (for LSTM, or rarely for the others, which is an
        // error) c, each of a shape that is sometimes wrong.
        let h0_shape = shape(&mut rng, &[cells, b, h]);
        let h0_vals = values(&mut rng, h0_shape.iter().product(), wild);
        let c0_shape = shape(&mut rng, &[cells, b, h]);
        let c0_vals = values(&mut rng, c0_shape.iter().product(), wild);
        let with_c = cell.has_c() != (rng.random_range(0..20) == 0);
        let init = if rng.random() {
            let h0 = gpu.tensor(&h0_shape, &h0_vals).ok();
            let c0 = with_c.then(|| gpu.tensor(&c0_shape, &c0_vals).ok());
            match (h0, c0) {
                (Some(h), None) => Some(State::h(h)),
                (Some(h), Some(Some(c))) => Some(State { h, c: Some(c) }),
                _ => None,
            }
        } else {
            None
        };
        let lengths: Option<Vec<usize>> = (rng.random_range(0..4) == 0).then(|| {
            (0..b + usize::from(rng.random_range(0..20) == 0))
                .map(|_| rng.random_range(0..=t + 1))
                .collect()
        });
        let out = match &lengths {
            Some(l) => rnn.forward_with_lengths(&x, init.as_ref(), l),
            None => rnn.forward(&x, init.as_ref()),
        };
        let Ok(out) = out else {
            errors += 1;
            continue;
        };
        let dy_shape = shape(&mut rng, &[t, b, o]);
        let dy_vals = values(&mut rng, dy_shape.iter().product(), wild);
        let Ok(dy) = gpu.tensor(&dy_shape, &dy_vals) else {
            errors += 1;
            continue;
        };
        let Ok(grads) = rnn.backward(&dy, None) else {
            errors += 1;
            continue;
        };
        valid += 1;
        // Compare with the reference where the inputs are tame.
        let init_used = init.as_ref().map(|s| State {
            h: h0_vals.clone(),
            c: s.c.as_ref().map(|_| c0_vals.clone()),
        });
        let tame_init = init_used
            .as_ref()
            .is_none_or(|s| s.tensors().into_iter().all(|v| finite(v)));
        if !(finite(&x_vals) && finite(&dy_vals) && tame_init) {
            continue;
        }
        let p = cfg.init_params(case).to_f64();
        let w = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let init64 = init_used.as_ref().map(|s| s.map(|v| w(v)));
        let fwd = cpu::forward(
            &cfg,
            &p,
            &w(&x_vals),
            &x_shape,
            init64.as_ref(),
            lengths.as_deref(),
        )
        .expect("the GPU accepted this input, so must the reference");
        let g = cpu::backward(&cfg, &p, &w(&x_vals), &fwd, &w(&dy_vals), None).unwrap();
        let tag = format!("case {case}: {cfg:?} T={t} B={b} lengths {lengths:?}");
        common::assert_close(
            &format!("{tag} y"),
            &out.y.download().unwrap(),
            &fwd.y,
            1e-4,
            1e-3,
        );
        assert_eq!(out.state.c.is_some(), cell.has_c(), "{tag}");
        for (k, (gv, cv)) in out
            .state
            .tensors()
            .into_iter()
            .zip(fwd.state.tensors())
            .enumerate()
        {
            common::assert_close(
                &format!("{tag} final state {k} (h_n, c_n)"),
                &gv.download().unwrap(),
                cv,
                1e-4,
                1e-3,
            );
        }
        common::assert_close(
            &format!("{tag} dx"),
            &grads.dx.download().unwrap(),
            &g.dx,
            1e-3,
            1e-3,
        );
        let gp = grads.params.try_map(|t| t.download()).unwrap();
        for ((name, a), c) in gp
            .names_for(&cfg)
            .iter()
            .zip(gp.tensors())
            .zip(g.params.tensors())
        {
            common::assert_close(&format!("{tag} d{name}"), a, c, 1e-3, 1e-3);
        }
        for (k, (gv, cv)) in grads
            .d_init
            .tensors()
            .into_iter()
            .zip(g.d_init.tensors())
            .enumerate()
        {
            common::assert_close(
                &format!("{tag} d init {k} (dh0, dc0)"),
                &gv.download().unwrap(),
                cv,
                1e-3,
                1e-3,
            );
        }
        compared += 1;
        per_cell[CELLS.iter().position(|&c| c == cell).unwrap()] += 1;

        // Every fifth compared case also takes a training step with a random batch.
        if compared % 5 == 0 {
            let loss = if rng.random() {
                LossKind::Mse
            } else {
                LossKind::CrossEntropy
            };
            let n = t * b;
            let extra = usize::from(rng.random_range(0..10) == 0);
            let targets = match loss {
                LossKind::Mse => Targets::Values(values(&mut rng, n * o + extra, wild)),
                LossKind::CrossEntropy => {
                    Targets::Classes((0..n).map(|_| rng.random_range(0..=o as u32)).collect())
                }
                LossKind::Ctc { .. } => unreachable!("only MSE and cross-entropy are drawn"),
            };
            let batch = Batch {
                t,
                b,
                x: x_vals.clone(),
                targets,
                weights: values(&mut rng, n, wild).iter().map(|v| v.abs()).collect(),
                lengths: None,
                tokens: None,
            };
            let mut opt = OptimizerConfig::new(OptimizerKind::Adam, 0.01);
            opt.lr = if wild { -1.0 } else { 0.01 };
            if let Ok(mut tr) = Trainer::new(rnn, TrainConfig::new(opt, loss)) {
                if tr.step(&batch).is_err() {
                    errors += 1;
                }
            } else {
                errors += 1;
            }
        }
    }
    eprintln!("{CASES} cases: {valid} valid forward+backward, {compared} compared with the reference (rnn, lstm, gru: {per_cell:?}), {errors} typed errors");
    assert!(
        valid > 1000 && compared > 1000 && errors > 1000,
        "the generator is too one-sided"
    );
    assert!(
        per_cell.iter().all(|&n| n > 200),
        "some cell is rarely compared: {per_cell:?}"
    );
    std::fs::remove_dir_all(&good_ck.0).ok();
}
