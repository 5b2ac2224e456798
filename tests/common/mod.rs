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
/// (by ratio of error to allowance) on failure. Returns the worst absolute error.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f64); // (index, error / allowance)
    let mut max_abs = 0.0f64;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let g = g as f64;
        let err = (g - c).abs();
        let ratio = if g.is_finite() {
            err / (atol + rtol * c.abs())
        } else {
            f64::INFINITY
        };
        max_abs = max_abs.max(err);
        if ratio > worst.1 || (i == 0 && ratio.is_nan()) {
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
