//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::Gpu;

/// One device per test binary. No adapter is a test failure, never a silent pass.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!("adapter: {}", g.adapter());
            g
        }
        Err(e) => panic!(
            "these tests need a working wgpu adapter; creating the GPU context failed: {e}\n\
             On a machine without a GPU run `sudo .ci/install-adapter` (installs Mesa's \
             lavapipe, Debian package mesa-vulkan-drivers), or select one with \
             WGPU_BACKEND / WGPU_ADAPTER_NAME."
        ),
    })
}

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

/// Uploads a host state with `shape` for each part.
pub fn upload(
    s: &wgpu_rnn::State<Vec<f32>>,
    shape: &[usize],
) -> wgpu_rnn::State<wgpu_rnn::GpuTensor> {
    s.map(|v| gpu().tensor(shape, v).unwrap())
}

/// Downloads a device state.
pub fn download(s: &wgpu_rnn::State<wgpu_rnn::GpuTensor>) -> wgpu_rnn::State<Vec<f32>> {
    s.map(|t| t.download().unwrap())
}
