//! The GPU-against-reference comparisons the native tests and the browser's
//! (`web/tests/parity.rs`, which includes this file by path) share: same inputs, same
//! reference, same allowances. Async, with no blocking call, so it runs in a browser tab.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in [-scale, scale) from a seeded generator.
pub fn uniform(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts |gpu − cpu| ≤ atol + rtol·|cpu| elementwise, reporting the worst element
/// (by ratio of error to allowance) on failure. A NaN or infinity on either side, at any
/// index, fails. Returns the worst absolute error.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    if let Some(i) = cpu.iter().position(|c| !c.is_finite()) {
        panic!("{what}: the reference holds {} at element {i}", cpu[i]);
    }
    if let Some(i) = gpu.iter().position(|g| !g.is_finite()) {
        panic!("{what}: the GPU result holds {} at element {i}", gpu[i]);
    }
    let mut worst = (0usize, 0.0f64); // (index, error / allowance)
    let mut max_abs = 0.0f64;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let err = (g as f64 - c).abs();
        let ratio = err / (atol + rtol * c.abs());
        max_abs = max_abs.max(err);
        if ratio > worst.1 {
            worst = (i, ratio);
        }
    }
    let (i, ratio) = worst;
    assert!(
        ratio <= 1.0,
        "{what}: element {i} gpu {} vs cpu {} (|diff| {:.3e} > atol {atol:.1e} + rtol {rtol:.1e}·|cpu|); \
         max |diff| over all {} elements {max_abs:.3e}",
        gpu[i],
        cpu[i],
        (gpu[i] as f64 - cpu[i]).abs(),
        gpu.len()
    );
    max_abs
}

/// `n` values of a state for `cell` (h, and c for LSTM) drawn from `seed`.
pub fn state(
    cell: wgpu_rnn::CellKind,
    seed: u64,
    n: usize,
    scale: f32,
) -> wgpu_rnn::State<Vec<f32>> {
    wgpu_rnn::State {
        h: uniform(seed, n, scale),
        c: cell.has_c().then(|| uniform(seed ^ 0x5eed, n, scale)),
    }
}

/// Every way the recurrence can run at batch `b`: one dispatch per step; one dispatch in
/// all with one row per workgroup, with half the rows per workgroup (4-row tiles once
/// b >= 8), and with W_hh in workgroup memory (where G·H·H fits).
pub fn paths(b: usize) -> [wgpu_rnn::RecurrencePath; 4] {
    let persistent = |rows_per_workgroup, shared_w| wgpu_rnn::RecurrencePath::Persistent {
        rows_per_workgroup,
        shared_w,
    };
    [
        wgpu_rnn::RecurrencePath::Stepwise,
        persistent(1, false),
        persistent(b.div_ceil(2), false),
        persistent(b, true),
    ]
}

/// One GPU-against-reference comparison: a batch of (T, B) drawn from `seed`.
pub struct Comparison {
    pub t: usize,
    pub b: usize,
    pub seed: u64,
    /// Scale of the uniform inputs x.
    pub x_scale: f32,
    /// Give an initial state (else zeros) and dL/d(final state) (else none).
    pub with_init: bool,
    pub with_d_final: bool,
    pub lengths: Option<Vec<usize>>,
}

/// Runs forward and backward of `cfg` on the GPU along `path` and on the f64 reference
/// from the same f32 inputs, and compares y, the final states and every gradient
/// (parameters, x, initial state). The allowance grows with the length of the sums
/// involved (T·B rows for weight gradients, T steps of recurrence): f32 rounding is about
/// 6e-8 per operation. Async, so that the browser's tests run it too.
pub async fn compare_async(
    gpu: &wgpu_rnn::Gpu,
    tag: &str,
    cfg: &wgpu_rnn::RnnConfig,
    path: wgpu_rnn::RecurrencePath,
    c: &Comparison,
) {
    use wgpu_rnn::{cpu, Rnn};
    let (t, b, seed) = (c.t, c.b, c.seed);
    let (i, o) = (cfg.input_size, cfg.output_size);
    let n = cfg.cells() * b * cfg.hidden_size;
    let shape = cfg.state_shape(b);
    let params = cfg.init_params(seed);
    let x = uniform(seed + 1, t * b * i, c.x_scale);
    let init = c.with_init.then(|| state(cfg.cell, seed + 2, n, 0.5));
    let dy = uniform(seed + 3, t * b * o, 1.0);
    let d_final = c.with_d_final.then(|| state(cfg.cell, seed + 4, n, 1.0));

    let mut rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
    rnn.set_path(Some(path));
    let x_gpu = gpu.tensor(&[t, b, i], &x).unwrap();
    let init_gpu = init
        .as_ref()
        .map(|s| s.map(|v| gpu.tensor(&shape, v).unwrap()));
    let out = rnn
        .forward_async(&x_gpu, init_gpu.as_ref(), c.lengths.as_deref())
        .await
        .unwrap();
    let dy_gpu = gpu.tensor(&[t, b, o], &dy).unwrap();
    let d_final_gpu = d_final
        .as_ref()
        .map(|s| s.map(|v| gpu.tensor(&shape, v).unwrap()));
    let grads = rnn
        .backward_async(&dy_gpu, d_final_gpu.as_ref())
        .await
        .unwrap();

    let p64 = params.to_f64();
    let x64 = widen(&x);
    let init64 = init.as_ref().map(|s| s.map(|v| widen(v)));
    let fwd = cpu::forward(
        cfg,
        &p64,
        &x64,
        &[t, b, i],
        init64.as_ref(),
        c.lengths.as_deref(),
    )
    .unwrap();
    let d_final64 = d_final.as_ref().map(|s| s.map(|v| widen(v)));
    let g = cpu::backward(cfg, &p64, &x64, &fwd, &widen(&dy), d_final64.as_ref()).unwrap();

    let tag = format!("{tag} {path}");
    let steps = (t as f64).sqrt();
    let rows = ((t * b) as f64).sqrt();
    let tol = 2e-6;
    let y = out.y.download_async().await.unwrap();
    assert_close(&format!("{tag} y"), &y, &fwd.y, tol * steps, 1e-4);
    let last = out.state.download_async().await.unwrap();
    assert_eq!(last.c.is_some(), cfg.cell.has_c(), "{tag}");
    for (k, (gv, cv)) in last
        .tensors()
        .into_iter()
        .zip(fwd.state.tensors())
        .enumerate()
    {
        assert_close(&format!("{tag} final state {k}"), gv, cv, tol * steps, 1e-4);
    }
    let gpu_grads = grads.params.download_async().await.unwrap();
    for ((name, gv), cv) in gpu_grads
        .names_for(cfg)
        .iter()
        .zip(gpu_grads.tensors())
        .zip(g.params.tensors())
    {
        assert_close(&format!("{tag} d{name}"), gv, cv, tol * rows * steps, 1e-3);
    }
    let dx = grads.dx.download_async().await.unwrap();
    assert_close(&format!("{tag} dx"), &dx, &g.dx, tol * steps, 1e-3);
    let d_init = grads.d_init.download_async().await.unwrap();
    assert_eq!(d_init.c.is_some(), cfg.cell.has_c(), "{tag}");
    for (k, (gv, cv)) in d_init
        .tensors()
        .into_iter()
        .zip(g.d_init.tensors())
        .enumerate()
    {
        assert_close(&format!("{tag} d init {k}"), gv, cv, tol * steps, 1e-3);
    }
}

/// The GPU trainer against the CPU reference trainer, step by step (`tests/training.rs`
/// and the browser's tests).
pub mod training {
    use wgpu_rnn::{
        Batch, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets,
        Train, TrainConfig, Trainer,
    };

    pub const T: usize = 6;
    pub const B: usize = 3;
    pub const I: usize = 4;
    pub const H: usize = 10;
    pub const O: usize = 5;

    pub fn batch(step: u64, loss: LossKind) -> Batch {
        let n = T * B;
        let targets = match loss {
            LossKind::CrossEntropy => Targets::Classes(
                super::uniform(100 + step, n, 1.0)
                    .iter()
                    .map(|v| ((v + 1.0) * 2.5) as u32 % O as u32)
                    .collect(),
            ),
            LossKind::Mse => Targets::Values(super::uniform(200 + step, n * O, 1.0)),
            LossKind::Ctc { .. } => unreachable!("tests/ctc.rs trains with CTC"),
        };
        // Mask a few positions out, weight the rest unevenly.
        let weights = (0..n)
            .map(|k| {
                if k % 7 == 3 {
                    0.0
                } else {
                    1.0 + (k % 3) as f32
                }
            })
            .collect();
        Batch {
            t: T,
            b: B,
            x: super::uniform(300 + step, n * I, 1.0),
            targets,
            weights,
            lengths: None,
            tokens: None,
        }
    }

    /// Eight steps of `cfg` on the GPU and on the reference from the same parameters and
    /// batches: each step's loss and gradient norm, then every parameter, agree.
    pub async fn compare_async(
        gpu: &wgpu_rnn::Gpu,
        cfg: RnnConfig,
        kind: OptimizerKind,
        lr: f32,
        loss: LossKind,
        clip_norm: Option<f32>,
        clip_value: Option<f32>,
    ) {
        let params = cfg.init_params(3);
        let mut opt = OptimizerConfig::new(kind, lr);
        opt.weight_decay = 0.01;
        // The SGD comparisons cover the momentum buffer (the default is PyTorch's 0).
        if kind == OptimizerKind::Sgd {
            opt.momentum = 0.9;
        }
        let mut train = TrainConfig::new(opt, loss);
        train.clip_norm = clip_norm;
        train.clip_value = clip_value;
        train.stateful = true;
        let rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
        let mut gpu_t = Trainer::new(rnn, train.clone()).unwrap();
        let mut cpu_t = CpuTrainer::new(cfg.clone(), &params, train).unwrap();
        let tag = format!(
            "{:?} bias={} L={} D={} {kind:?} {loss:?} clip {clip_norm:?}/{clip_value:?}",
            cfg.cell,
            cfg.bias,
            cfg.num_layers,
            cfg.directions()
        );
        let mut clipped = false;
        for step in 0..8 {
            let b = batch(step, loss);
            let g = gpu_t.step_async(&b).await.unwrap();
            let c = cpu_t.step(&b).unwrap();
            assert!(!g.skipped && !c.skipped);
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 + 1e-4 * b.abs();
            assert!(
                close(g.loss, c.loss),
                "{tag} step {step}: loss gpu {} cpu {}",
                g.loss,
                c.loss
            );
            assert!(
                close(g.grad_norm, c.grad_norm),
                "{tag} step {step}: norm gpu {} cpu {}",
                g.grad_norm,
                c.grad_norm
            );
            clipped |= clip_norm.is_some_and(|n| c.grad_norm > n);
        }
        if clip_norm.is_some() {
            assert!(
                clipped,
                "{tag}: the clip threshold never triggered; the test checks nothing"
            );
        }
        let gp = gpu_t.params_async().await.unwrap();
        let cp = cpu_t.params().unwrap();
        for (name, (a, b)) in gp
            .names_for(gpu_t.rnn().config())
            .iter()
            .zip(gp.tensors().iter().zip(cp.tensors()))
        {
            super::assert_close(&format!("{tag} {name}"), a, &super::widen(b), 1e-5, 1e-3);
        }
        assert_eq!(gpu_t.steps(), 8);
    }
}

/// Dropout's masks on the GPU against the CPU reference (`tests/dropout.rs` and the
/// browser's tests).
pub mod dropout {
    use wgpu_rnn::gpu::Recorder;
    use wgpu_rnn::{cpu, CellKind, DropoutKey, Gpu, Params, Rnn, RnnConfig};

    pub const KEY: DropoutKey = DropoutKey { seed: 11, step: 4 };

    /// A model whose head is the identity (O = D·H, W_hy = I, b_y = 0), so y is the
    /// dropped outputs of the last layer.
    pub fn identity_head(cfg: &RnnConfig, seed: u64) -> Params<Vec<f32>> {
        let mut p = cfg.init_params(seed);
        let n = cfg.output_size;
        p.w_hy = (0..n * n)
            .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        p.b_y = vec![0.0; n];
        p
    }

    /// One training-mode forward and backward (of `dy`) on the GPU through the recording
    /// API, with [`KEY`]'s masks: y and the parameter gradients.
    pub async fn gpu_train_pass(
        gpu: &Gpu,
        cfg: &RnnConfig,
        params: &Params<Vec<f32>>,
        x: &[f32],
        (t, b): (usize, usize),
        dy: &[f32],
    ) -> (Vec<f32>, Params<Vec<f32>>) {
        let mut rnn = Rnn::from_params(gpu, cfg.clone(), params).unwrap();
        let slot = rnn.slot(t, b, None).unwrap();
        rnn.input(slot).unwrap().write(x).unwrap();
        rnn.output_grad(slot).unwrap().write(dy).unwrap();
        rnn.set_dropout(Some(KEY));
        let mut rec = Recorder::new(gpu, "dropout test");
        rnn.record_forward(slot, &mut rec, None).unwrap();
        rnn.record_backward(slot, &mut rec, None).unwrap();
        rec.submit().unwrap();
        let y = rnn.output(slot).unwrap().download_async().await.unwrap();
        let grads = rnn.grads().download_async().await.unwrap();
        (y, grads)
    }

    /// A 2-layer bidirectional `cell` model with dropout between the layers and on the
    /// head: the GPU zeroes exactly the units the reference drops, and y agrees (the layer
    /// below's mask decides layer 1's input, so any disagreement there shows in y).
    pub async fn compare_masks_async(gpu: &Gpu, cell: CellKind) {
        let (t, b, h) = (5, 3, 7);
        let cfg = RnnConfig::new(4, h, 2 * h)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true)
            .with_dropout(0.4)
            .with_head_dropout(0.3);
        let params = identity_head(&cfg, 3);
        let x = super::uniform(5, t * b * 4, 1.0);
        let dy = vec![0.0; t * b * 2 * h];
        let (y, _) = gpu_train_pass(gpu, &cfg, &params, &x, (t, b), &dy).await;
        let (p64, x64) = (params.to_f64(), super::widen(&x));
        let fwd = cpu::forward_train(&cfg, &p64, &x64, &[t, b, 4], None, None, KEY).unwrap();
        let head = fwd.dropout[1]
            .as_ref()
            .expect("the head's input is dropped");
        let dropped = head.iter().filter(|&&f| f == 0.0).count();
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
        super::assert_close(&format!("{cell:?} y"), &y, &fwd.y, 1e-5, 1e-4);
        // Evaluation draws nothing: the reference's plain forward has no dropout.
        let plain = cpu::forward(&cfg, &p64, &x64, &[t, b, 4], None, None).unwrap();
        assert!(plain.dropout.iter().all(Option::is_none));
    }
}

/// A model with an embedding (`nn.Embedding` before layer 0) on the GPU against the CPU
/// reference (`tests/embedding.rs` and the browser's tests).
pub mod embedding {
    use wgpu_rnn::{
        cpu, Batch, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets,
        Train, TrainConfig, Trainer,
    };

    /// T·B token ids below `vocab`, skewed like text (a few ids common, most rare), so
    /// that some table rows are read many times, some once and some never.
    pub fn ids(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
        super::uniform(seed, n, 1.0)
            .iter()
            .map(|u| {
                let r = (u + 1.0) / 2.0; // [0, 1)
                ((r * r * r) * vocab as f32) as u32 % vocab as u32
            })
            .collect()
    }

    /// Forward and backward of `cfg` (which has an embedding) on token ids, GPU against the
    /// reference: y, the final state and every gradient, the embedding table's included.
    /// Returns the GPU's embedding gradient (for bitwise comparisons between runs).
    pub async fn compare_async(
        gpu: &wgpu_rnn::Gpu,
        cfg: &RnnConfig,
        (t, b): (usize, usize),
        lengths: Option<&[usize]>,
        seed: u64,
    ) -> Vec<f32> {
        let vocab = cfg.embedding.expect("a model with an embedding");
        let params = cfg.init_params(seed);
        let ids = ids(seed + 1, t * b, vocab);
        let dy = super::uniform(seed + 3, t * b * cfg.output_size, 1.0);
        let mut rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
        let out = rnn
            .forward_tokens_async(&ids, [t, b], None, lengths)
            .await
            .unwrap();
        let grads = rnn
            .backward_async(&gpu.tensor(&[t, b, cfg.output_size], &dy).unwrap(), None)
            .await
            .unwrap();
        let p64 = params.to_f64();
        let (x, fwd) = cpu::forward_tokens(cfg, &p64, &ids, [t, b], None, lengths, None).unwrap();
        let g = cpu::backward(cfg, &p64, &x, &fwd, &super::widen(&dy), None).unwrap();

        let tag = format!(
            "{:?} L={} D={} V={vocab}",
            cfg.cell,
            cfg.num_layers,
            cfg.directions()
        );
        let steps = (t as f64).sqrt();
        let rows = ((t * b) as f64).sqrt();
        let y = out.y.download_async().await.unwrap();
        super::assert_close(&format!("{tag} y"), &y, &fwd.y, 2e-6 * steps, 1e-4);
        let state = out.state.download_async().await.unwrap();
        for (gv, cv) in state.tensors().into_iter().zip(fwd.state.tensors()) {
            super::assert_close(&format!("{tag} final state"), gv, cv, 2e-6 * steps, 1e-4);
        }
        let gp = grads.params.download_async().await.unwrap();
        for ((name, gv), cv) in gp
            .names_for(cfg)
            .iter()
            .zip(gp.tensors())
            .zip(g.params.tensors())
        {
            super::assert_close(&format!("{tag} d{name}"), gv, cv, 2e-6 * rows * steps, 1e-3);
        }
        let demb = gp.embedding.clone().expect("an embedding gradient");
        // Rows no token read have exactly zero gradient; at least one row was read twice.
        for v in 0..vocab {
            if !ids.contains(&(v as u32)) {
                let row = &demb[v * cfg.input_size..][..cfg.input_size];
                assert!(row.iter().all(|&g| g == 0.0), "{tag}: unread row {v}");
            }
        }
        demb
    }

    /// Token batches of (T, B) from `seed`: next-token classes.
    pub fn batch(step: u64, (t, b): (usize, usize), vocab: usize, classes: usize) -> Batch {
        let inputs = ids(400 + step, t * b, vocab);
        let targets = ids(500 + step, t * b, classes);
        Batch::from_tokens(t, b, inputs, Targets::Classes(targets)).unwrap()
    }

    /// Eight Adam steps with clipping on token batches, GPU trainer against the CPU
    /// trainer: losses, gradient norms and every parameter (the table's too) agree.
    pub async fn training_async(gpu: &wgpu_rnn::Gpu, cfg: RnnConfig) {
        let vocab = cfg.embedding.expect("a model with an embedding");
        let params = cfg.init_params(7);
        let mut train = TrainConfig::new(
            OptimizerConfig::new(OptimizerKind::Adam, 0.02),
            LossKind::CrossEntropy,
        );
        train.clip_norm = Some(1.0);
        train.stateful = true;
        let rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
        let mut gpu_t = Trainer::new(rnn, train.clone()).unwrap();
        let mut cpu_t = CpuTrainer::new(cfg.clone(), &params, train).unwrap();
        for step in 0..8 {
            let batch = batch(step, (5, 3), vocab, cfg.output_size);
            let g = gpu_t.step_async(&batch).await.unwrap();
            let c = cpu_t.step(&batch).unwrap();
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 + 1e-4 * b.abs();
            assert!(
                close(g.loss, c.loss),
                "step {step}: loss {} vs {}",
                g.loss,
                c.loss
            );
            assert!(
                close(g.grad_norm, c.grad_norm),
                "step {step}: norm {} vs {}",
                g.grad_norm,
                c.grad_norm
            );
        }
        let gp = gpu_t.params_async().await.unwrap();
        let cp = cpu_t.params().unwrap();
        for (name, (a, b)) in gp
            .names_for(&cfg)
            .iter()
            .zip(gp.tensors().iter().zip(cp.tensors()))
        {
            super::assert_close(&format!("trained {name}"), a, &super::widen(b), 1e-5, 1e-3);
        }
        // The table moved: its gradient reached the optimizer.
        assert_ne!(gp.embedding, params.embedding);
    }
}
