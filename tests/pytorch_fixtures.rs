//! wgpu-rnn against PyTorch: fixtures made by tests/fixtures/make_fixtures.py (nn.RNN tanh
//! and relu, nn.LSTM, nn.GRU, each + nn.Linear; 1 and 2 layers, bidirectional, bias=False,
//! sizes that are no tile multiple, packed variable-length batches). The model is read with the crate's importer; the CPU
//! reference and the GPU must give PyTorch's outputs and every gradient within 1e-4
//! relative. "Relative" is to max(|value|, 1e-2·max|tensor|): an element under 1% of its
//! tensor's largest is a sum that mostly cancelled, whose f32 rounding error is set by the
//! terms, not the result, so it is judged against 1% of the tensor's scale.

mod common;

use wgpu_rnn::files::interop::{parse_torch, TorchModel};
use wgpu_rnn::{cpu, CellKind, Rnn, State};

const RTOL: f64 = 1e-4;

struct Fixture {
    name: String,
    model: TorchModel,
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let bytes = common::fixture_bytes(name);
        let model = parse_torch(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tensors = common::tensors_f64(name, &bytes);
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

    /// PyTorch's gradient for each of our parameter tensors, in `Params::tensors` order.
    fn param_grads(&self) -> Vec<(String, &[f64])> {
        let cfg = &self.model.config;
        let mut out = Vec::new();
        if cfg.embedding.is_some() {
            out.push((
                "grad.embedding.weight".into(),
                self.get("grad.embedding.weight"),
            ));
        }
        for c in 0..cfg.cells() {
            let sfx = wgpu_rnn::model::cell_suffix(c, cfg.directions());
            let mut names = vec!["weight_ih", "weight_hh"];
            if cfg.bias {
                names.extend(["bias_ih", "bias_hh"]);
            }
            for n in names {
                let k = format!("grad.rnn.{n}_{sfx}");
                out.push((k.clone(), self.get(&k)));
            }
        }
        out.push(("grad.head.weight".into(), self.get("grad.head.weight")));
        out.push(("grad.head.bias".into(), self.get("grad.head.bias")));
        out
    }

    /// A state from the tensors `h` and, for LSTM, `c`.
    fn state(&self, h: &str, c: &str) -> State<Vec<f64>> {
        State {
            h: self.get(h).to_vec(),
            c: self.model.config.cell.has_c().then(|| self.get(c).to_vec()),
        }
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

/// Every model fixture: nn.RNN, nn.LSTM and nn.GRU; 1 and 2 layers; one and two
/// directions; packed variable-length batches; bias=False.
const ALL: [&str; 23] = [
    "tanh_l1",
    "relu_l1",
    "tanh_l2",
    "relu_l2",
    "tanh_bi_l1",
    "tanh_bi_l2",
    "relu_bi_l2",
    "tanh_bi_l2_lengths",
    "rnn_nobias_bi_l1",
    "lstm_l1",
    "lstm_l2",
    "lstm_bi_l1",
    "lstm_bi_l2",
    "lstm_bi_l2_lengths",
    "lstm_l2_lengths",
    "lstm_nobias_l1",
    "gru_l1",
    "gru_l2",
    "gru_bi_l1",
    "gru_bi_l2",
    "gru_bi_l2_lengths",
    "gru_l2_lengths",
    "gru_nobias_l1",
];

#[test]
fn importer_reads_what_pytorch_wrote() {
    let f = Fixture::load("relu_bi_l2");
    let c = &f.model.config;
    assert_eq!((c.input_size, c.hidden_size, c.output_size), (6, 7, 3));
    assert_eq!((c.num_layers, c.bidirectional), (2, true));
    assert_eq!(c.activation, wgpu_rnn::Activation::Relu);
    assert_eq!(f.model.prefix, "rnn.");
    // Both biases are kept as PyTorch has them.
    let cell = &f.model.params.cells[3];
    for (ours, name) in [
        (&cell.b_ih, "rnn.bias_ih_l1_reverse"),
        (&cell.b_hh, "rnn.bias_hh_l1_reverse"),
    ] {
        let want: Vec<f32> = f.get(name).iter().map(|&v| v as f32).collect();
        assert_eq!(ours.as_ref().unwrap(), &want, "{name}");
    }
}

#[test]
fn importer_infers_the_cell_from_the_shapes() {
    for (name, cell, g, bias) in [
        ("tanh_l1", CellKind::Rnn, 1, true),
        ("lstm_bi_l2", CellKind::Lstm, 4, true),
        ("gru_l2", CellKind::Gru, 3, true),
        ("lstm_nobias_l1", CellKind::Lstm, 4, false),
        ("rnn_nobias_bi_l1", CellKind::Rnn, 1, false),
    ] {
        let f = Fixture::load(name);
        let c = &f.model.config;
        assert_eq!((c.cell, c.gates(), c.bias), (cell, g, bias), "{name}");
        assert_eq!(
            f.model.params.cells[0].w_hh.len(),
            g * c.hidden_size * c.hidden_size,
            "{name}"
        );
    }
}

#[test]
fn cpu_reference_matches_pytorch() {
    for name in ALL {
        let f = Fixture::load(name);
        let cfg = &f.model.config;
        let p = f.model.params.to_f64();
        let x = f.get("x");
        let init = f.state("h0", "c0");
        let fwd = cpu::forward(
            cfg,
            &p,
            x,
            f.shape("x"),
            Some(&init),
            f.lengths().as_deref(),
        )
        .unwrap();
        close(&format!("{name} cpu y"), &fwd.y, f.get("y"));
        close(&format!("{name} cpu h_n"), &fwd.state.h, f.get("h_n"));
        if let Some(c) = &fwd.state.c {
            close(&format!("{name} cpu c_n"), c, f.get("c_n"));
        }
        let d_final = f.state("s", "u");
        let g = cpu::backward(cfg, &p, x, &fwd, f.get("r"), Some(&d_final)).unwrap();
        for ((k, want), got) in f.param_grads().into_iter().zip(g.params.tensors()) {
            close(&format!("{name} cpu {k}"), got, want);
        }
        close(&format!("{name} cpu grad.x"), &g.dx, f.get("grad.x"));
        close(
            &format!("{name} cpu grad.h0"),
            &g.d_init.h,
            f.get("grad.h0"),
        );
        if let Some(dc) = &g.d_init.c {
            close(&format!("{name} cpu grad.c0"), dc, f.get("grad.c0"));
        }
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
        let upload = |s: State<Vec<f64>>| {
            s.map(|v| {
                let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
                gpu.tensor(f.shape("h0"), &v).unwrap()
            })
        };
        let init = upload(f.state("h0", "c0"));
        let out = match f.lengths() {
            Some(l) => rnn.forward_with_lengths(&x, Some(&init), &l).unwrap(),
            None => rnn.forward(&x, Some(&init)).unwrap(),
        };
        let wide = |t: &wgpu_rnn::GpuTensor| -> Vec<f64> {
            t.download().unwrap().iter().map(|&v| v as f64).collect()
        };
        close(&format!("{name} gpu y"), &wide(&out.y), f.get("y"));
        close(
            &format!("{name} gpu h_n"),
            &wide(&out.state.h),
            f.get("h_n"),
        );
        if let Some(c) = &out.state.c {
            close(&format!("{name} gpu c_n"), &wide(c), f.get("c_n"));
        }
        let dy = gpu.tensor(f.shape("r"), &f.f32("r")).unwrap();
        let g = rnn.backward(&dy, Some(&upload(f.state("s", "u")))).unwrap();
        for ((k, want), got) in f.param_grads().into_iter().zip(g.params.tensors()) {
            close(&format!("{name} gpu {k}"), &wide(got), want);
        }
        close(&format!("{name} gpu grad.x"), &wide(&g.dx), f.get("grad.x"));
        close(
            &format!("{name} gpu grad.h0"),
            &wide(&g.d_init.h),
            f.get("grad.h0"),
        );
        if let Some(dc) = &g.d_init.c {
            close(&format!("{name} gpu grad.c0"), &wide(dc), f.get("grad.c0"));
        }
    }
}

/// The embedding fixtures: nn.Embedding + nn.LSTM / nn.GRU / nn.RNN + nn.Linear on token
/// ids (repeated ids, unread rows, a packed batch).
const EMBEDDED: [&str; 4] = [
    "emb_lstm_l1",
    "emb_gru_bi_l2",
    "emb_lstm_bi_l2_lengths",
    "emb_rnn_l2",
];

#[test]
fn embedding_models_match_pytorch_on_the_cpu_and_the_gpu() {
    let gpu = common::gpu();
    for name in EMBEDDED {
        let f = Fixture::load(name);
        let cfg = f.model.config.clone();
        assert!(
            cfg.embedding.is_some(),
            "{name}: the importer found the table"
        );
        let (t, b) = (f.shape("ids")[0], f.shape("ids")[1]);
        let ids: Vec<u32> = f.get("ids").iter().map(|&v| v as u32).collect();
        let lengths = f.lengths();
        let d_final = f.state("s", "u");
        let p = f.model.params.to_f64();
        let (x, fwd) =
            cpu::forward_tokens(&cfg, &p, &ids, [t, b], None, lengths.as_deref(), None).unwrap();
        let g = cpu::backward(&cfg, &p, &x, &fwd, f.get("r"), Some(&d_final)).unwrap();
        let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&a| a as f64).collect() };
        let mut rnn = Rnn::from_params(gpu, cfg.clone(), &f.model.params).unwrap();
        let out = rnn
            .forward_tokens(&ids, [t, b], None, lengths.as_deref())
            .unwrap();
        let dy = gpu.tensor(f.shape("r"), &f.f32("r")).unwrap();
        let d_final_gpu = d_final.map(|v| {
            let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
            gpu.tensor(f.shape("s"), &v).unwrap()
        });
        let gg = rnn.backward(&dy, Some(&d_final_gpu)).unwrap();
        let gpu_y = wide(&out.y.download().unwrap());
        let gpu_h = wide(&out.state.h.download().unwrap());
        let gpu_grads = gg.params.try_map(|t| t.download()).unwrap().to_f64();
        for (device, y, h, grads) in [
            ("cpu", &fwd.y, &fwd.state.h, &g.params),
            ("gpu", &gpu_y, &gpu_h, &gpu_grads),
        ] {
            close(&format!("{name} {device} y"), y, f.get("y"));
            close(&format!("{name} {device} h_n"), h, f.get("h_n"));
            for ((k, want), got) in f.param_grads().into_iter().zip(grads.tensors()) {
                close(&format!("{name} {device} {k}"), got, want);
            }
        }
        if let (Some(c), Some(gc)) = (&fwd.state.c, &out.state.c) {
            close(&format!("{name} cpu c_n"), c, f.get("c_n"));
            close(
                &format!("{name} gpu c_n"),
                &wide(&gc.download().unwrap()),
                f.get("c_n"),
            );
        }
    }
}

/// What `load_state_dict(strict=True)` needs: an export holds exactly the fixture's
/// PyTorch state_dict names (`rnn.*` and `head.*`) with the same shapes, and both biases
/// come back bit for bit.
#[test]
fn export_has_pytorchs_names_and_round_trips_exactly() {
    for name in ALL {
        let f = Fixture::load(name);
        let cfg = &f.model.config;
        let ours: Vec<(String, Vec<usize>, Vec<f32>)> =
            wgpu_rnn::files::interop::torch_entries(cfg, &f.model.params, "rnn.")
                .into_iter()
                .map(|(n, s, v)| (n, s, v.to_vec()))
                .collect();
        let mut theirs: Vec<&String> = f
            .tensors
            .keys()
            .filter(|k| k.starts_with("rnn.") || k.starts_with("head."))
            .collect();
        theirs.sort();
        let mut names: Vec<&String> = ours.iter().map(|(n, _, _)| n).collect();
        names.sort();
        assert_eq!(names, theirs, "{name}");
        for (n, shape, v) in &ours {
            assert_eq!(shape.as_slice(), f.shape(n), "{name} {n}");
            assert_eq!(v, &f.f32(n), "{name} {n}");
        }
        let dir = std::env::temp_dir().join(format!("wgpu-rnn-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.safetensors"));
        wgpu_rnn::files::interop::save_torch(&path, cfg, &f.model.params, "rnn.").unwrap();
        let back = wgpu_rnn::files::interop::load_torch(&path, None).unwrap();
        assert_eq!(&back.config, cfg, "{name}");
        assert_eq!(back.params, f.model.params, "{name}");
        std::fs::remove_file(&path).ok();
    }
}
