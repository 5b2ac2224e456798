//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod synth;

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
    upload_on(gpu(), s, shape)
}

/// [`upload`] to a given GPU context.
pub fn upload_on(
    gpu: &Gpu,
    s: &wgpu_rnn::State<Vec<f32>>,
    shape: &[usize],
) -> wgpu_rnn::State<wgpu_rnn::GpuTensor> {
    s.map(|v| gpu.tensor(shape, v).unwrap())
}

/// Downloads a device state.
pub fn download(s: &wgpu_rnn::State<wgpu_rnn::GpuTensor>) -> wgpu_rnn::State<Vec<f32>> {
    s.map(|t| t.download().unwrap())
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
/// 6e-8 per operation.
pub fn compare_with_reference(
    tag: &str,
    cfg: &wgpu_rnn::RnnConfig,
    path: wgpu_rnn::RecurrencePath,
    c: &Comparison,
) {
    compare_on_with_reference(gpu(), tag, cfg, path, c)
}

/// [`compare_with_reference`] on a given GPU context.
pub fn compare_on_with_reference(
    gpu: &Gpu,
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
    let init_gpu = init.as_ref().map(|s| upload_on(gpu, s, &shape));
    let out = match &c.lengths {
        Some(l) => rnn.forward_with_lengths(&x_gpu, init_gpu.as_ref(), l),
        None => rnn.forward(&x_gpu, init_gpu.as_ref()),
    }
    .unwrap();
    let dy_gpu = gpu.tensor(&[t, b, o], &dy).unwrap();
    let d_final_gpu = d_final.as_ref().map(|s| upload_on(gpu, s, &shape));
    let grads = rnn.backward(&dy_gpu, d_final_gpu.as_ref()).unwrap();

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
    let y = out.y.download().unwrap();
    assert_close(&format!("{tag} y"), &y, &fwd.y, tol * steps, 1e-4);
    let last = download(&out.state);
    assert_eq!(last.c.is_some(), cfg.cell.has_c(), "{tag}");
    for (k, (gv, cv)) in last
        .tensors()
        .into_iter()
        .zip(fwd.state.tensors())
        .enumerate()
    {
        assert_close(&format!("{tag} final state {k}"), gv, cv, tol * steps, 1e-4);
    }
    let gpu_grads = grads.params.try_map(|t| t.download()).unwrap();
    for ((name, gv), cv) in gpu_grads
        .names_for(cfg)
        .iter()
        .zip(gpu_grads.tensors())
        .zip(g.params.tensors())
    {
        assert_close(&format!("{tag} d{name}"), gv, cv, tol * rows * steps, 1e-3);
    }
    let dx = grads.dx.download().unwrap();
    assert_close(&format!("{tag} dx"), &dx, &g.dx, tol * steps, 1e-3);
    let d_init = download(&grads.d_init);
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

/// The tensors of a safetensors file, widened to f64: name -> (shape, values).
pub type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>;

/// The bytes of `tests/fixtures/<name>.safetensors`.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every F32 or F64 tensor of a fixture file's `bytes`, as f64.
pub fn tensors_f64(name: &str, bytes: &[u8]) -> Tensors {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let data: Vec<f64> = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::F64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                d => panic!("{name}: {k} is {d:?}"),
            };
            (k, (v.shape().to_vec(), data))
        })
        .collect()
}

/// Runs the CLI: (exit code, stdout, stderr); a panic is a test failure.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(args)
        .output()
        .expect("run wgpu-rnn");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}
