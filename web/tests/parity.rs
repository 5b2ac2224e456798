//! The GPU against the f64 CPU reference inside a browser tab, on WebGPU (Chromium's Dawn and
//! Tint; SwiftShader in CI): the same comparisons as the native tests
//! (`tests/common/compare.rs`, included by path) through the library's async calls.
//!
//! Run: `CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=600
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! cargo test -p wgpu-rnn-web --target wasm32-unknown-unknown --test parity` from the
//! repository root (`web/webdriver.json` gives Chromium its WebGPU flags).
#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/compare.rs"]
mod compare;

use compare::{assert_close, compare_async, paths, training, widen, Comparison};
use wasm_bindgen_test::*;
use wgpu_rnn::ctc::{self, CtcOptions, Labels, Reduction};
use wgpu_rnn::{Activation, CellKind, Gpu, GpuOptions, LossKind, OptimizerKind, RnnConfig};

wasm_bindgen_test_configure!(run_in_browser);

/// The page's device. No adapter fails the test with the fix, never a quiet pass.
async fn gpu() -> Gpu {
    gpu_with(GpuOptions::default()).await
}

/// A device whose kernels are chosen by `options` (the browser has no environment
/// variables, so the variants are named here).
async fn gpu_with(options: GpuOptions) -> Gpu {
    match Gpu::with_options_async(&options).await {
        Ok(g) => {
            let a = g.adapter();
            web_sys_log(&format!("adapter: {} ({:?})", a.name, a.backend));
            assert_eq!(
                format!("{:?}", a.backend),
                "BrowserWebGpu",
                "the browser tests must run on the browser's WebGPU"
            );
            g
        }
        Err(e) => panic!(
            "these tests need WebGPU in the browser and found none: {e}\nRun them in \
             Chromium with --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader (see \
             web/webdriver.json) through CHROMEDRIVER=/usr/bin/chromedriver (Debian's \
             chromium-driver)."
        ),
    }
}

fn web_sys_log(s: &str) {
    wasm_bindgen_test::console_log!("{s}");
}

/// The cells as the native parity tests name them.
const CELLS: [(CellKind, Activation); 4] = [
    (CellKind::Rnn, Activation::Tanh),
    (CellKind::Rnn, Activation::Relu),
    (CellKind::Lstm, Activation::Tanh),
    (CellKind::Gru, Activation::Tanh),
];

async fn check(gpu: &Gpu, cfg: RnnConfig, t: usize, b: usize, lengths: Option<Vec<usize>>) {
    let tag = format!(
        "T={t} B={b} {} {:?} L={} D={} lengths={lengths:?}",
        cfg.cell.name(),
        cfg.activation,
        cfg.num_layers,
        cfg.directions()
    );
    let c = Comparison {
        t,
        b,
        seed: (t * 1000 + b * 100 + cfg.hidden_size) as u64,
        x_scale: 1.0,
        with_init: true,
        with_d_final: true,
        lengths,
    };
    for path in paths(b) {
        compare_async(gpu, &tag, &cfg, path, &c).await;
    }
}

#[wasm_bindgen_test]
async fn every_cell_forward_final_state_and_gradients() {
    let gpu = gpu().await;
    for (cell, act) in CELLS {
        let cfg = RnnConfig::new(5, 11, 4)
            .with_cell(cell)
            .with_activation(act);
        check(&gpu, cfg, 7, 3, None).await;
    }
}

/// The kernels a GPU adapter gets by default (the tiled matrix products, split-K, 4-row
/// stepwise blocks) rather than a CPU adapter's, with `gemm`: as `.ci/run` forces them
/// natively.
async fn gpu_default_kernels(gemm: &str) {
    let options = GpuOptions::default()
        .with_gemm(gemm.parse().unwrap())
        .with_stepwise_rows(4);
    let gpu = gpu_with(options).await;
    for (cell, act) in CELLS {
        let cfg = RnnConfig::new(5, 11, 4)
            .with_cell(cell)
            .with_activation(act)
            .with_layers(2);
        check(&gpu, cfg, 7, 9, Some(vec![7, 3, 5, 1, 7, 2, 6, 4, 7])).await;
    }
    let (i, h, o) = (training::I, training::H, training::O);
    training::compare_async(
        &gpu,
        RnnConfig::new(i, h, o).with_cell(CellKind::Lstm),
        OptimizerKind::AdamW,
        0.05,
        LossKind::CrossEntropy,
        Some(0.2),
        None,
    )
    .await;
}

#[wasm_bindgen_test]
async fn gpu_default_kernels_large_tiles() {
    gpu_default_kernels("tiled:64x64x16/split8").await;
}

/// Small tiles, so that the awkward shapes cross tile edges.
#[wasm_bindgen_test]
async fn gpu_default_kernels_small_tiles() {
    gpu_default_kernels("tiled:16x32x8/split4").await;
}

#[wasm_bindgen_test]
async fn two_layers_bidirectional() {
    let gpu = gpu().await;
    for (cell, act) in CELLS {
        let cfg = RnnConfig::new(3, 6, 2)
            .with_cell(cell)
            .with_activation(act)
            .with_layers(2)
            .with_bidirectional(true);
        check(&gpu, cfg, 5, 4, None).await;
    }
}

#[wasm_bindgen_test]
async fn variable_lengths() {
    let gpu = gpu().await;
    for (cell, act) in CELLS {
        let cfg = RnnConfig::new(4, 7, 3)
            .with_cell(cell)
            .with_activation(act)
            .with_layers(2)
            .with_bidirectional(true);
        check(&gpu, cfg, 6, 4, Some(vec![6, 2, 5, 1])).await;
    }
}

#[wasm_bindgen_test]
async fn gpu_trainer_steps_like_the_cpu_trainer() {
    let gpu = gpu().await;
    let (i, h, o) = (training::I, training::H, training::O);
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(i, h, o).with_cell(cell);
        training::compare_async(
            &gpu,
            cfg,
            OptimizerKind::Adam,
            0.05,
            LossKind::CrossEntropy,
            Some(0.2),
            None,
        )
        .await;
    }
    let stacked = RnnConfig::new(i, h, o)
        .with_layers(2)
        .with_bidirectional(true);
    training::compare_async(
        &gpu,
        stacked,
        OptimizerKind::Sgd,
        0.1,
        LossKind::Mse,
        None,
        None,
    )
    .await;
}

#[wasm_bindgen_test]
async fn ctc_loss_matches_the_reference() {
    let gpu = gpu().await;
    let (t, c) = (9, 5);
    let targets: Vec<Vec<u32>> = vec![vec![1, 2, 2], vec![3], vec![4, 1, 4, 2]];
    let labels = Labels::from_rows(&targets);
    let lengths = [9, 6, 8];
    let b = lengths.len();
    let logits = compare::uniform(17, t * b * c, 2.0);
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let opts = CtcOptions {
            blank: 0,
            reduction,
            zero_infinity: false,
        };
        let want = ctc::ctc_loss(&widen(&logits), [t, b, c], &lengths, &labels, &opts).unwrap();
        let y = gpu.tensor(&[t, b, c], &logits).unwrap();
        let got = ctc::gpu::ctc_loss_async(&gpu, &y, &lengths, &labels, &opts)
            .await
            .unwrap();
        let what = format!("CTC {reduction:?}");
        assert_close(
            &format!("{what} loss"),
            &[got.loss],
            &[want.loss],
            1e-4,
            1e-4,
        );
        assert_close(&format!("{what} rows"), &got.rows, &want.rows, 1e-4, 1e-4);
        assert_close(&format!("{what} grad"), &got.grad, &want.grad, 1e-5, 1e-4);
    }
}

/// Dropout masks drawn by Tint's compile of the Philox kernel (32-bit halves, wrapping
/// arithmetic) are the CPU reference's, bit for bit.
#[wasm_bindgen_test]
async fn dropout_masks_match_the_reference() {
    let gpu = gpu().await;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        compare::dropout::compare_masks_async(&gpu, cell).await;
    }
}

/// The embedding's gather and its segmented-sum backward (Tint's compile) against the
/// reference, for every cell, with a packed batch; and training on token ids.
#[wasm_bindgen_test]
async fn embedding_matches_the_reference() {
    let gpu = gpu().await;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(6, 8, 5)
            .with_cell(cell)
            .with_layers(2)
            .with_embedding(13);
        compare::embedding::compare_async(&gpu, &cfg, (7, 4), None, 1).await;
        compare::embedding::compare_async(&gpu, &cfg, (6, 3), Some(&[6, 2, 4]), 2).await;
    }
    let cfg = RnnConfig::new(6, 8, 5)
        .with_cell(CellKind::Gru)
        .with_embedding(9);
    compare::embedding::training_async(&gpu, cfg).await;
}
