//! CTC: the f64 reference against finite differences and PyTorch's `nn.CTCLoss`
//! (fixtures made by tests/fixtures/make_fixtures.py), the GPU kernel against the
//! reference, decoding, and training with `LossKind::Ctc` on the GPU against the CPU.

mod common;

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::ctc::{self, CtcOptions, Labels, Reduction};

/// Per-element tolerance against PyTorch and between the GPU (f32) and the reference.
const TOL: f64 = 1e-4;

struct CtcFixture {
    name: String,
    meta: HashMap<String, String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

impl CtcFixture {
    fn load(name: &str) -> CtcFixture {
        let bytes = common::fixture_bytes(name);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap_or_default();
        let tensors = common::tensors_f64(name, &bytes);
        CtcFixture {
            name: name.into(),
            meta,
            tensors,
        }
    }

    fn get(&self, k: &str) -> &[f64] {
        &self.tensors[k].1
    }

    fn usizes(&self, k: &str) -> Vec<usize> {
        self.get(k).iter().map(|&v| v as usize).collect()
    }

    fn shape(&self) -> [usize; 3] {
        self.tensors["logits"].0.clone().try_into().unwrap()
    }

    fn labels(&self) -> Labels {
        Labels {
            labels: self.get("labels").iter().map(|&v| v as u32).collect(),
            lengths: self.usizes("target_lengths"),
        }
    }

    fn opts(&self) -> CtcOptions {
        CtcOptions {
            blank: self.meta["blank"].parse().unwrap(),
            reduction: match self.meta["reduction"].as_str() {
                "mean" => Reduction::Mean,
                "sum" => Reduction::Sum,
                "none" => Reduction::None,
                r => panic!("{}: reduction {r}", self.name),
            },
            zero_infinity: self.meta["zero_infinity"] == "true",
        }
    }
}

const FIXTURES: [&str; 6] = [
    "ctc_mean_repeats",
    "ctc_sum_min_len",
    "ctc_none_blank_last",
    "ctc_impossible_zero_inf",
    "ctc_impossible_inf",
    "ctc_blank2_varlen",
];

/// |got − want| ≤ TOL·max(1, |want|) everywhere; NaN and ±∞ must match exactly.
fn assert_matches(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_finite() {
            (g - w).abs() <= TOL * w.abs().max(1.0)
        } else {
            (w.is_nan() && g.is_nan()) || g == w
        };
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn reference_matches_pytorch_ctc_loss() {
    for name in FIXTURES {
        let f = CtcFixture::load(name);
        let opts = f.opts();
        let out = ctc::ctc_loss(
            f.get("logits"),
            f.shape(),
            &f.usizes("input_lengths"),
            &f.labels(),
            &opts,
        )
        .unwrap();
        let losses = if opts.reduction == Reduction::None {
            out.rows.clone()
        } else {
            vec![out.loss]
        };
        assert_matches(&format!("{name} loss"), &losses, f.get("loss"));
        assert_matches(&format!("{name} grad"), &out.grad, f.get("grad"));
    }
}

fn random_case(
    seed: u64,
    t: usize,
    c: usize,
    rows: &[(usize, Vec<u32>)],
) -> (Vec<f64>, [usize; 3], Vec<usize>, Labels) {
    let b = rows.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let logits = (0..t * b * c)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let lengths = rows.iter().map(|r| r.0).collect();
    let targets: Vec<Vec<u32>> = rows.iter().map(|r| r.1.clone()).collect();
    (logits, [t, b, c], lengths, Labels::from_rows(&targets))
}

#[test]
fn reference_gradient_matches_finite_differences() {
    let rows = [
        (7, vec![1, 2, 2, 3]),
        (4, vec![3]),
        (5, vec![2, 2, 2]), // exactly the minimum, 3 + 2 repeats
        (6, vec![]),
    ];
    let (logits, shape, lengths, labels) = random_case(7, 7, 4, &rows);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let opts = CtcOptions {
            reduction,
            ..Default::default()
        };
        let out = ctc::ctc_loss(&logits, shape, &lengths, &labels, &opts).unwrap();
        let h = 1e-6;
        for i in 0..logits.len() {
            let mut x = logits.clone();
            x[i] += h;
            let up = ctc::ctc_loss(&x, shape, &lengths, &labels, &opts)
                .unwrap()
                .loss;
            x[i] -= 2.0 * h;
            let down = ctc::ctc_loss(&x, shape, &lengths, &labels, &opts)
                .unwrap()
                .loss;
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - out.grad[i]).abs() < 1e-7 + 1e-6 * fd.abs(),
                "{reduction:?} element {i}: analytic {} vs finite difference {fd}",
                out.grad[i]
            );
        }
    }
}

#[test]
fn reference_rejects_bad_targets() {
    let ok = Labels::from_rows(&[[1u32, 2], [3, 3]]);
    let logits = vec![0.0; 4 * 2 * 4];
    let opts = CtcOptions::default();
    let run = |l: &Labels, lengths: &[usize], o: &CtcOptions| {
        ctc::ctc_loss(&logits, [4, 2, 4], lengths, l, o)
    };
    assert!(run(&ok, &[4, 4], &opts).is_ok());
    let blank_inside = Labels::from_rows(&[vec![1u32, 0], vec![3]]);
    let too_big = Labels::from_rows(&[vec![1u32], vec![4]]);
    let short = Labels {
        labels: vec![1, 2],
        lengths: vec![1, 2],
    };
    let cases: [(&str, wgpu_rnn::Result<_>); 6] = [
        ("a blank in a target", run(&blank_inside, &[4, 4], &opts)),
        ("a label ≥ C", run(&too_big, &[4, 4], &opts)),
        ("lengths that do not add up", run(&short, &[4, 4], &opts)),
        ("an input length > T", run(&ok, &[5, 4], &opts)),
        ("an input length 0", run(&ok, &[0, 4], &opts)),
        (
            "a blank ≥ C",
            run(&ok, &[4, 4], &CtcOptions { blank: 4, ..opts }),
        ),
    ];
    for (what, r) in cases {
        let e = r.expect_err(what);
        eprintln!("{what}: {e}");
    }
}

#[test]
fn greedy_and_beam_search_differ_where_the_best_path_is_not_the_best_labelling() {
    // Two steps of p(blank) = 0.6, p(a) = 0.4: the best path is "blank blank" (0.36), but
    // "a" has three paths (aa, a-, -a) worth 0.16 + 0.24 + 0.24 = 0.64.
    let p = [0.6f32, 0.4];
    let logp: Vec<f32> = p.iter().chain(&p).map(|v| v.ln()).collect();
    assert_eq!(
        ctc::greedy_decode(&logp, [2, 1, 2], None, 0).unwrap(),
        vec![Vec::<u32>::new()]
    );
    assert_eq!(
        ctc::beam_search(&logp, [2, 1, 2], None, 0, 4).unwrap(),
        vec![vec![1]]
    );
    // A beam of 1 is the greedy labelling here.
    assert_eq!(
        ctc::beam_search(&logp, [2, 1, 2], None, 0, 1).unwrap(),
        vec![Vec::<u32>::new()]
    );
}

#[test]
fn decoders_collapse_repeats_drop_blanks_and_stop_at_each_rows_length() {
    // T = 5, B = 2, C = 3 (blank 2). Row 0 argmaxes: 0 0 2 0 1 → [0, 0, 1];
    // row 1: 1 1 1 0 0 but length 3 → [1].
    let argmax = [[0, 1], [0, 1], [2, 1], [0, 0], [1, 0]];
    let mut scores = vec![0.0f32; 5 * 2 * 3];
    for (t, row) in argmax.iter().enumerate() {
        for (b, &k) in row.iter().enumerate() {
            scores[(t * 2 + b) * 3 + k] = 5.0;
        }
    }
    let lengths = [5, 3];
    let greedy = ctc::greedy_decode(&scores, [5, 2, 3], Some(&lengths), 2).unwrap();
    assert_eq!(greedy, vec![vec![0, 0, 1], vec![1]]);
    // Peaked posteriors: the beam agrees with the best path.
    let beam = ctc::beam_search(&scores, [5, 2, 3], Some(&lengths), 2, 8).unwrap();
    assert_eq!(beam, greedy);
}

#[test]
fn beam_search_finds_the_most_probable_labelling_by_enumeration() {
    // T = 4, C = 3: every labelling's probability by summing over all 3^4 paths.
    let (t, c) = (4usize, 3usize);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let logits: Vec<f32> = (0..t * c).map(|_| rng.random_range(-1.5..1.5)).collect();
    let lp: Vec<f64> = logits
        .chunks(c)
        .flat_map(|r| {
            let z: f64 = r.iter().map(|&v| (v as f64).exp()).sum();
            r.iter()
                .map(move |&v| v as f64 - z.ln())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut prob: HashMap<Vec<u32>, f64> = HashMap::new();
    for code in 0..c.pow(t as u32) {
        let path: Vec<usize> = (0..t).map(|i| code / c.pow(i as u32) % c).collect();
        let mut label = Vec::new();
        let mut prev = None;
        for &k in &path {
            if k != 0 && prev != Some(k) {
                label.push(k as u32);
            }
            prev = Some(k);
        }
        let p: f64 = path
            .iter()
            .enumerate()
            .map(|(i, &k)| lp[i * c + k])
            .sum::<f64>()
            .exp();
        *prob.entry(label).or_default() += p;
    }
    let best = prob
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
        .clone();
    // A beam wide enough to hold every prefix is exact.
    let beam = ctc::beam_search(&logits, [t, 1, c], None, 0, 100).unwrap();
    assert_eq!(beam[0], best, "{prob:?}");
}

/// The GPU's loss, rows and gradient against the reference's (f64), as [`assert_matches`].
fn gpu_vs_reference(
    what: &str,
    logits: &[f64],
    shape: [usize; 3],
    lengths: &[usize],
    labels: &Labels,
    opts: &CtcOptions,
) -> ctc::CtcLoss<f32> {
    let gpu = common::gpu();
    let x32: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let want = ctc::ctc_loss(&common::widen(&x32), shape, lengths, labels, opts).unwrap();
    let y = gpu.tensor(&shape, &x32).unwrap();
    let got = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, lengths, labels, opts).unwrap();
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_matches(&format!("{what} loss"), &[got.loss as f64], &[want.loss]);
    assert_matches(&format!("{what} rows"), &widen(&got.rows), &want.rows);
    assert_matches(&format!("{what} grad"), &widen(&got.grad), &want.grad);
    got
}

#[test]
fn gpu_matches_pytorch_ctc_loss() {
    for name in FIXTURES {
        let f = CtcFixture::load(name);
        let opts = f.opts();
        let got = gpu_vs_reference(
            name,
            f.get("logits"),
            f.shape(),
            &f.usizes("input_lengths"),
            &f.labels(),
            &opts,
        );
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let losses = if opts.reduction == Reduction::None {
            widen(&got.rows)
        } else {
            vec![got.loss as f64]
        };
        assert_matches(&format!("{name} GPU loss"), &losses, f.get("loss"));
        assert_matches(
            &format!("{name} GPU grad"),
            &widen(&got.grad),
            f.get("grad"),
        );
    }
}

#[test]
fn gpu_matches_reference_on_repeats_length_one_minimum_inputs_and_impossible_rows() {
    let rows = [
        (12, vec![1, 1, 2, 3, 3, 3]), // repeats
        (9, vec![4]),                 // target length 1
        (8, vec![2, 2, 5, 5, 5]),     // input exactly at its minimum, 5 + 3
        (3, vec![1, 1, 1]),           // impossible: needs 5
        (12, vec![]),                 // empty target
        (1, vec![3]),                 // one step
    ];
    let (logits, shape, lengths, labels) = random_case(21, 12, 6, &rows);
    for (reduction, zero_infinity) in [
        (Reduction::Mean, true),
        (Reduction::Sum, true),
        (Reduction::None, true),
        (Reduction::Sum, false),
    ] {
        let opts = CtcOptions {
            blank: 0,
            reduction,
            zero_infinity,
        };
        let got = gpu_vs_reference(
            &format!("{reduction:?} zero_infinity {zero_infinity}"),
            &logits,
            shape,
            &lengths,
            &labels,
            &opts,
        );
        if !zero_infinity {
            assert_eq!(got.rows[3], f32::INFINITY);
            assert!(got.loss.is_infinite());
        }
    }
}

#[test]
fn gpu_matches_reference_with_long_targets_many_classes_and_a_blank_in_the_middle() {
    // 2U+1 = 601 states: more than one state per invocation of the 256-wide workgroup;
    // C = 300 > 256 classes likewise.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (t, c, blank) = (700usize, 300usize, 150u32);
    let mut label = || loop {
        let k = rng.random_range(0..c as u32);
        if k != blank {
            return k;
        }
    };
    let long: Vec<u32> = (0..300).map(|_| label()).collect();
    let short: Vec<u32> = (0..40).map(|_| label()).collect();
    let rows = [(700, long), (333, short)];
    let (logits, shape, lengths, labels) = random_case(6, t, c, &rows);
    let opts = CtcOptions {
        blank,
        ..Default::default()
    };
    gpu_vs_reference("long", &logits, shape, &lengths, &labels, &opts);
}

#[test]
fn gpu_ctc_is_bitwise_deterministic_and_rejects_what_it_cannot_take() {
    let gpu = common::gpu();
    let rows = [(9, vec![1, 2, 2]), (6, vec![3])];
    let (logits, shape, lengths, labels) = random_case(3, 9, 4, &rows);
    let x: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let y = gpu.tensor(&shape, &x).unwrap();
    let opts = CtcOptions::default();
    let a = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, &lengths, &labels, &opts).unwrap();
    let b = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, &lengths, &labels, &opts).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.grad), bits(&b.grad));
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());

    let too_long = Labels::from_rows(&[vec![1u32; 1024], vec![2]]);
    let y = gpu.tensor(&[2100, 2, 4], &vec![0.0; 2100 * 2 * 4]).unwrap();
    let e = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, &[2100, 5], &too_long, &opts).unwrap_err();
    assert!(
        matches!(e, wgpu_rnn::Error::CtcTarget { row: 0, .. }),
        "{e}"
    );
    let blank_inside = Labels::from_rows(&[vec![1u32, 0], vec![2]]);
    let y = gpu.tensor(&shape, &x).unwrap();
    let e = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, &lengths, &blank_inside, &opts).unwrap_err();
    assert!(
        matches!(e, wgpu_rnn::Error::CtcTarget { row: 0, .. }),
        "{e}"
    );
    let e = wgpu_rnn::ctc::gpu::ctc_loss(gpu, &y, &[10, 6], &labels, &opts).unwrap_err();
    assert!(matches!(e, wgpu_rnn::Error::BadLength { .. }), "{e}");
}

/// A bidirectional 2-layer LSTM over C = 6 outputs (blank 0), B = 4 rows of lengths 9, 5,
/// 7 and 3 (T = 9), label sequences with repeats and one of length 1.
fn ctc_batch(seed: u64) -> wgpu_rnn::Batch {
    let (t, b, i) = (9, 4, 3);
    let x = common::uniform(seed, t * b * i, 1.0);
    let labels = Labels::from_rows(&[vec![1u32, 2, 2, 3], vec![4, 4], vec![5, 1, 3], vec![2]]);
    wgpu_rnn::Batch::new(t, b, x, wgpu_rnn::Targets::Labels(labels))
        .unwrap()
        .with_lengths(vec![9, 5, 7, 3])
        .unwrap()
}

#[test]
fn gpu_trainer_matches_cpu_trainer_with_ctc_on_a_bidirectional_lstm_with_lengths() {
    use wgpu_rnn::{
        CellKind, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Train,
        TrainConfig, Trainer,
    };
    let cfg = RnnConfig::new(3, 8, 6)
        .with_cell(CellKind::Lstm)
        .with_layers(2)
        .with_bidirectional(true);
    let params = cfg.init_params(4);
    let loss = LossKind::Ctc {
        blank: 0,
        zero_infinity: true,
    };
    let tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Adam, 0.02), loss);
    let gpu = common::gpu();
    let mut g = Trainer::new(
        Rnn::from_params(gpu, cfg.clone(), &params).unwrap(),
        tc.clone(),
    )
    .unwrap();
    let mut c = CpuTrainer::new(cfg, &params, tc).unwrap();
    let eval = ctc_batch(99);
    let (ge, ce) = (g.evaluate(&eval).unwrap(), c.evaluate(&eval).unwrap());
    assert!(
        (ge - ce).abs() <= 1e-4 * ce.abs().max(1.0),
        "evaluate: GPU {ge}, CPU {ce}"
    );
    let mut first = None;
    for step in 0..4 {
        let batch = ctc_batch(step);
        let (gs, cs) = (g.step(&batch).unwrap(), c.step(&batch).unwrap());
        assert!(!gs.skipped && !cs.skipped, "step {step}");
        assert!(
            (gs.loss - cs.loss).abs() <= 1e-4 * cs.loss.abs().max(1.0),
            "step {step} loss: GPU {}, CPU {}",
            gs.loss,
            cs.loss
        );
        assert!(
            (gs.grad_norm - cs.grad_norm).abs() <= 1e-4 * cs.grad_norm.abs().max(1.0),
            "step {step} grad norm: GPU {}, CPU {}",
            gs.grad_norm,
            cs.grad_norm
        );
        first.get_or_insert(cs.loss);
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    for (k, (a, b)) in gp.tensors().into_iter().zip(cp.tensors()).enumerate() {
        common::assert_close(&format!("parameter {k}"), a, &common::widen(b), 1e-4, 1e-3);
    }
    // Training the same batch lowers its loss.
    let batch = ctc_batch(0);
    let before = g.evaluate(&batch).unwrap();
    for _ in 0..20 {
        g.step(&batch).unwrap();
    }
    let after = g.evaluate(&batch).unwrap();
    assert!(after < before, "loss {before} → {after}");
}

#[test]
fn trainers_reject_mismatched_ctc_batches() {
    use wgpu_rnn::{
        CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, RnnConfig, Targets, Train,
        TrainConfig,
    };
    let cfg = RnnConfig::new(3, 4, 6);
    let ctc = LossKind::Ctc {
        blank: 0,
        zero_infinity: false,
    };
    let tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.1), ctc);
    let mut c = CpuTrainer::new(cfg.clone(), &cfg.init_params(0), tc).unwrap();
    let classes = wgpu_rnn::Batch::new(2, 1, vec![0.0; 6], Targets::Classes(vec![1, 2])).unwrap();
    assert!(matches!(
        c.step(&classes),
        Err(wgpu_rnn::Error::LossMismatch)
    ));
    let weighted = ctc_batch(1).with_weights(vec![0.5; 36]).unwrap();
    assert!(c.step(&weighted).is_err());
    let bad_label = wgpu_rnn::Batch::new(
        2,
        1,
        vec![0.0; 6],
        Targets::Labels(Labels::from_rows(&[[6u32]])),
    )
    .unwrap();
    assert!(matches!(
        c.step(&bad_label),
        Err(wgpu_rnn::Error::CtcTarget { .. })
    ));
}
