//! wgpu-rnn against PyTorch: fixtures made by tests/fixtures/make_fixtures.py (nn.RNN +
//! nn.Linear, tanh and relu, 1 and 2 layers, bidirectional, sizes that are no tile multiple,
//! one variable-length batch). The model is read with the crate's importer; the CPU
//! reference and the GPU must give PyTorch's outputs and every gradient within 1e-4
//! relative. "Relative" is to max(|value|, 1e-2·max|tensor|): an element under 1% of its
//! tensor's largest is a sum that mostly cancelled, whose f32 rounding error is set by the
//! terms, not the result, so it is judged against 1% of the tensor's scale.

mod common;

use std::path::PathBuf;

use safetensors::SafeTensors;
use wgpu_rnn::interop::{parse_torch, TorchModel};
use wgpu_rnn::{cpu, Rnn};

const RTOL: f64 = 1e-4;

struct Fixture {
    name: String,
    model: TorchModel,
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let model = parse_torch(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let tensors = st
            .tensors()
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
            .collect();
        Fixture {
            name: name.to_string(),
            model,
            tensors,
        }
    }

    fn get(&self, k: &str) -> &[f64] {
        &self
            .tensors
            .get(k)
            .unwrap_or_else(|| panic!("{}: no tensor {k}", self.name))
            .1
    }

    fn shape(&self, k: &str) -> &[usize] {
        &self.tensors[k].0
    }

    fn f32(&self, k: &str) -> Vec<f32> {
        self.get(k).iter().map(|&v| v as f32).collect()
    }

    fn lengths(&self) -> Option<Vec<usize>> {
        self.tensors
            .get("lengths")
            .map(|(_, v)| v.iter().map(|&l| l as usize).collect())
    }

    /// PyTorch's gradient for each of our parameter tensors (b_h gets bias_ih's, which
    /// PyTorch also gives bias_hh), in `Params::tensors` order.
    fn param_grads(&self) -> Vec<(String, &[f64])> {
        let cfg = &self.model.config;
        let mut out = Vec::new();
        for c in 0..cfg.cells() {
            let sfx = wgpu_rnn::model::cell_suffix(c, cfg.directions());
            for n in ["weight_ih", "weight_hh", "bias_ih"] {
                let k = format!("grad.rnn.{n}_{sfx}");
                out.push((k.clone(), self.get(&k)));
            }
            let (ih, hh) = (
                self.get(&format!("grad.rnn.bias_ih_{sfx}")),
                self.get(&format!("grad.rnn.bias_hh_{sfx}")),
            );
            close("PyTorch's bias_hh gradient vs its bias_ih gradient", hh, ih);
        }
        out.push(("grad.head.weight".into(), self.get("grad.head.weight")));
        out.push(("grad.head.bias".into(), self.get("grad.head.bias")));
        out
    }
}

/// Worst relative error must be ≤ RTOL; a NaN counts as the worst.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = (0, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let rel = (g - w).abs() / w.abs().max(1e-2 * scale).max(1e-30);
        if !(rel <= worst.1) {
            worst = (i, rel);
        }
    }
    let (i, rel) = worst;
    assert!(
        rel <= RTOL,
        "{what}: element {i}: got {} want {} (relative error {rel:.2e} > {RTOL:.0e})",
        got[i],
        want[i]
    );
}

const ALL: [&str; 8] = [
    "tanh_l1",
    "relu_l1",
    "tanh_l2",
    "relu_l2",
    "tanh_bi_l1",
    "tanh_bi_l2",
    "relu_bi_l2",
    "tanh_bi_l2_lengths",
];

#[test]
fn importer_reads_what_pytorch_wrote() {
    let f = Fixture::load("relu_bi_l2");
    let c = &f.model.config;
    assert_eq!((c.input_size, c.hidden_size, c.output_size), (6, 7, 3));
    assert_eq!((c.num_layers, c.bidirectional), (2, true));
    assert_eq!(c.activation, wgpu_rnn::Activation::Relu);
    assert_eq!(f.model.prefix, "rnn.");
    // b_h is the sum of PyTorch's two biases.
    let (ih, hh) = (
        f.get("rnn.bias_ih_l1_reverse"),
        f.get("rnn.bias_hh_l1_reverse"),
    );
    let want: Vec<f64> = ih
        .iter()
        .zip(hh)
        .map(|(a, b)| (*a as f32 + *b as f32) as f64)
        .collect();
    let got: Vec<f64> = f.model.params.cells[3]
        .b_h
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn cpu_reference_matches_pytorch() {
    for name in ALL {
        let f = Fixture::load(name);
        let cfg = &f.model.config;
        let p = f.model.params.to_f64();
        let x = f.get("x");
        let fwd = cpu::forward_with_lengths(
            cfg,
            &p,
            x,
            f.shape("x"),
            Some(f.get("h0")),
            f.lengths().as_deref(),
        )
        .unwrap();
        close(&format!("{name} cpu y"), &fwd.y, f.get("y"));
        close(&format!("{name} cpu h_n"), fwd.h_last(), f.get("h_n"));
        let g = cpu::backward(cfg, &p, x, &fwd, f.get("r"), Some(f.get("s"))).unwrap();
        for ((k, want), got) in f.param_grads().into_iter().zip(g.params.tensors()) {
            close(&format!("{name} cpu {k}"), got, want);
        }
        close(&format!("{name} cpu grad.x"), &g.dx, f.get("grad.x"));
        close(&format!("{name} cpu grad.h0"), &g.dh0, f.get("grad.h0"));
    }
}

#[test]
fn gpu_matches_pytorch() {
    let gpu = common::gpu();
    for name in ALL {
        let f = Fixture::load(name);
        let cfg = f.model.config.clone();
        let mut rnn = Rnn::from_params(gpu, cfg.clone(), &f.model.params).unwrap();
        let x = gpu.tensor(f.shape("x"), &f.f32("x")).unwrap();
        let h0 = gpu.tensor(f.shape("h0"), &f.f32("h0")).unwrap();
        let out = match f.lengths() {
            Some(l) => rnn.forward_with_lengths(&x, Some(&h0), &l).unwrap(),
            None => rnn.forward(&x, Some(&h0)).unwrap(),
        };
        let wide = |t: &wgpu_rnn::GpuTensor| -> Vec<f64> {
            t.download().unwrap().iter().map(|&v| v as f64).collect()
        };
        close(&format!("{name} gpu y"), &wide(&out.y), f.get("y"));
        close(&format!("{name} gpu h_n"), &wide(&out.h_last), f.get("h_n"));
        let dy = gpu.tensor(f.shape("r"), &f.f32("r")).unwrap();
        let dh = gpu.tensor(f.shape("s"), &f.f32("s")).unwrap();
        let g = rnn.backward(&dy, Some(&dh)).unwrap();
        for ((k, want), got) in f.param_grads().into_iter().zip(g.params.tensors()) {
            close(&format!("{name} gpu {k}"), &wide(got), want);
        }
        close(&format!("{name} gpu grad.x"), &wide(&g.dx), f.get("grad.x"));
        close(
            &format!("{name} gpu grad.h0"),
            &wide(&g.dh0),
            f.get("grad.h0"),
        );
    }
}
