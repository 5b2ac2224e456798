//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod compare;
pub mod synth;

pub use compare::*;

use std::sync::OnceLock;

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

/// [`compare_on_with_reference`] on the shared device.
pub fn compare_with_reference(
    tag: &str,
    cfg: &wgpu_rnn::RnnConfig,
    path: wgpu_rnn::RecurrencePath,
    c: &Comparison,
) {
    compare_on_with_reference(gpu(), tag, cfg, path, c)
}

/// [`compare_async`], blocking: on a given GPU context.
pub fn compare_on_with_reference(
    gpu: &Gpu,
    tag: &str,
    cfg: &wgpu_rnn::RnnConfig,
    path: wgpu_rnn::RecurrencePath,
    c: &Comparison,
) {
    pollster::block_on(compare_async(gpu, tag, cfg, path, c))
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
