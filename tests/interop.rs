//! nn.RNN / nn.LSTM / nn.GRU state_dict import and export: round trips, f64 files,
//! inference of the cell and sizes, and errors that name the tensor.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype};
use wgpu_rnn::files::interop::{load_torch, parse_torch, save_torch};
use wgpu_rnn::{Activation, CellKind, RnnConfig};

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu-rnn-interop-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Serialises (name, shape, f64 values) as `dtype` (F32 or F64).
fn file(tensors: &[(&str, Vec<usize>, Vec<f64>)], dtype: Dtype, meta: &[(&str, &str)]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| (n.to_string(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    let meta: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn ramp(n: usize, k: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64) * 0.37 + k).sin() * 0.5)
        .collect()
}

/// A one-layer bidirectional state_dict without prefix, in f64, biases included.
fn bidirectional_f64(dtype: Dtype) -> Vec<u8> {
    let (i, h, o) = (3, 4, 2);
    let mut t = Vec::new();
    for sfx in ["l0", "l0_reverse"] {
        t.push((format!("weight_ih_{sfx}"), vec![h, i], ramp(h * i, 1.0)));
        t.push((format!("weight_hh_{sfx}"), vec![h, h], ramp(h * h, 2.0)));
        t.push((format!("bias_ih_{sfx}"), vec![h], ramp(h, 3.0)));
        t.push((format!("bias_hh_{sfx}"), vec![h], ramp(h, 4.0)));
    }
    t.push(("head.weight".into(), vec![o, 2 * h], ramp(o * 2 * h, 5.0)));
    t.push(("head.bias".into(), vec![o], ramp(o, 6.0)));
    let t: Vec<(&str, Vec<usize>, Vec<f64>)> = t
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    file(&t, dtype, &[])
}

#[test]
fn sizes_layers_and_directions_are_inferred_and_f64_accepted() {
    for dtype in [Dtype::F32, Dtype::F64] {
        let m = parse_torch(&bidirectional_f64(dtype), Some(Activation::Relu)).unwrap();
        let c = &m.config;
        assert_eq!((c.input_size, c.hidden_size, c.output_size), (3, 4, 2));
        assert_eq!(
            (c.num_layers, c.bidirectional, c.activation),
            (1, true, Activation::Relu)
        );
        assert_eq!((c.cell, c.bias), (CellKind::Rnn, true));
        assert_eq!(m.prefix, "");
        // Both biases are kept as they are (in f32), not summed; their sum is the
        // Elman cell's effective bias bias_ih + bias_hh.
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let cell = &m.params.cells[1];
        assert_eq!(cell.b_ih.as_deref(), Some(&f32s(ramp(4, 3.0))[..]));
        assert_eq!(cell.b_hh.as_deref(), Some(&f32s(ramp(4, 4.0))[..]));
        let want: Vec<f32> = ramp(4, 3.0)
            .iter()
            .zip(ramp(4, 4.0))
            .map(|(a, b)| *a as f32 + b as f32)
            .collect();
        let sum: Vec<f32> = cell
            .b_ih
            .as_ref()
            .unwrap()
            .iter()
            .zip(cell.b_hh.as_ref().unwrap())
            .map(|(a, b)| a + b)
            .collect();
        assert_eq!(sum, want);
    }
}

#[test]
fn export_then_import_is_exact_and_uses_pytorch_names() {
    let configs = [
        RnnConfig::new(5, 6, 3)
            .with_layers(2)
            .with_bidirectional(true)
            .with_activation(Activation::Relu),
        RnnConfig::new(5, 6, 3)
            .with_cell(CellKind::Lstm)
            .with_layers(2)
            .with_bidirectional(true),
        RnnConfig::new(5, 6, 3)
            .with_cell(CellKind::Gru)
            .with_layers(2)
            .with_bidirectional(true),
        RnnConfig::new(5, 6, 3)
            .with_cell(CellKind::Lstm)
            .with_bias(false),
        RnnConfig::new(5, 6, 3)
            .with_cell(CellKind::Gru)
            .with_bidirectional(true)
            .with_bias(false),
    ];
    for (k, cfg) in configs.into_iter().enumerate() {
        let tag = format!("{cfg:?}");
        let params = cfg.init_params(9);
        let path = temp(&format!("export-{k}.safetensors"));
        save_torch(&path, &cfg, &params, "rnn.").unwrap();
        let back = load_torch(&path, None).unwrap();
        assert_eq!(
            back.config, cfg,
            "{tag}: nonlinearity comes from the file's metadata, the cell from the shapes"
        );
        assert_eq!(back.params, params, "{tag}");
        assert_eq!(back.prefix, "rnn.");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        let mut want = vec!["head.bias".to_string(), "head.weight".to_string()];
        let tensors: &[&str] = if cfg.bias {
            &["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        } else {
            &["weight_ih", "weight_hh"]
        };
        for l in 0..cfg.num_layers {
            for sfx in &["", "_reverse"][..cfg.directions()] {
                for n in tensors {
                    want.push(format!("rnn.{n}_l{l}{sfx}"));
                }
            }
        }
        want.sort();
        assert_eq!(
            names, want,
            "{tag}: exactly nn.RNN's / nn.LSTM's / nn.GRU's state_dict keys plus the head"
        );
        // PyTorch's shapes, and both biases exactly as they are (no zero bias_hh, no sum).
        let (g, h) = (cfg.gates(), cfg.hidden_size);
        assert_eq!(
            st.tensor("rnn.weight_hh_l0").unwrap().shape(),
            [g * h, h],
            "{tag}"
        );
        if cfg.bias {
            let file_bias = |name: &str| -> Vec<f32> {
                st.tensor(name)
                    .unwrap()
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            };
            assert_eq!(
                Some(file_bias("rnn.bias_ih_l0")),
                params.cells[0].b_ih,
                "{tag}"
            );
            assert_eq!(
                Some(file_bias("rnn.bias_hh_l0")),
                params.cells[0].b_hh,
                "{tag}"
            );
            assert!(
                file_bias("rnn.bias_hh_l0").iter().any(|&b| b != 0.0),
                "{tag}"
            );
        }
        // Without metadata, the cell still comes from the shapes. An nn.RNN's tensors do
        // not tell tanh from relu, so it needs the caller's nonlinearity; LSTM and GRU
        // have none to choose.
        let plain = {
            let t = contents(&bytes);
            file(&borrowed(&t), Dtype::F32, &[])
        };
        let m = if cfg.cell == CellKind::Rnn {
            let e = parse_torch(&plain, None).unwrap_err();
            assert!(
                e.contains("nonlinearity") && e.contains("--nonlinearity"),
                "{tag}: {e}"
            );
            parse_torch(&plain, Some(cfg.activation)).unwrap()
        } else {
            parse_torch(&plain, None).unwrap()
        };
        assert_eq!(m.config, cfg, "{tag}");
        assert_eq!(m.params, params, "{tag}");
        let relu = parse_torch(&plain, Some(Activation::Relu));
        if cfg.cell == CellKind::Rnn {
            assert_eq!(relu.unwrap().config.activation, Activation::Relu);
        } else {
            let e = relu.unwrap_err();
            assert!(
                e.contains("relu") && e.contains(cfg.cell.name()),
                "{tag}: {e}"
            );
        }
        // Metadata that contradicts the caller, or the tensors, is an error.
        let meta_act = cfg.activation.name();
        let other = if cfg.activation == Activation::Tanh {
            Activation::Relu
        } else {
            Activation::Tanh
        };
        let e = parse_torch(&bytes, Some(other)).unwrap_err();
        assert!(
            e.contains("nonlinearity") && e.contains(other.name()),
            "{tag}: {e}"
        );
        if cfg.cell == CellKind::Rnn {
            assert!(e.contains(meta_act), "{tag}: {e}");
        }
        assert_eq!(
            parse_torch(&bytes, Some(cfg.activation)).unwrap().config,
            cfg
        );
        let t = contents(&bytes);
        let liar = if cfg.cell == CellKind::Gru {
            "lstm"
        } else {
            "gru"
        };
        let e = parse_torch(&file(&borrowed(&t), Dtype::F32, &[("cell", liar)]), None).unwrap_err();
        assert!(
            e.contains(liar) && e.contains(cfg.cell.name()),
            "{tag}: {e}"
        );
    }
}

/// The cell is read off weight_hh_l0's (G·H, H): a row count that is no 1, 3 or 4 times
/// the columns is an error that names the tensor.
#[test]
fn gate_counts_other_than_one_three_or_four_are_errors() {
    let (i, h, o) = (3, 4, 2);
    for g in [2, 5] {
        let t = vec![
            ("weight_ih_l0", vec![g * h, i], ramp(g * h * i, 1.0)),
            ("weight_hh_l0", vec![g * h, h], ramp(g * h * h, 2.0)),
            ("head.weight", vec![o, h], ramp(o * h, 3.0)),
        ];
        let e = parse_torch(&file(&t, Dtype::F32, &[]), None).unwrap_err();
        assert!(
            e.contains("weight_hh_l0") && e.contains(&format!("{g} gate")),
            "{e}"
        );
    }
    for (g, cell) in [(1, CellKind::Rnn), (3, CellKind::Gru), (4, CellKind::Lstm)] {
        let t = vec![
            ("weight_ih_l0", vec![g * h, i], ramp(g * h * i, 1.0)),
            ("weight_hh_l0", vec![g * h, h], ramp(g * h * h, 2.0)),
            ("head.weight", vec![o, h], ramp(o * h, 3.0)),
        ];
        let nonlinearity = (cell == CellKind::Rnn).then_some(Activation::Tanh);
        let m = parse_torch(&file(&t, Dtype::F32, &[]), nonlinearity).unwrap();
        assert_eq!(
            m.config,
            RnnConfig::new(i, h, o).with_cell(cell).with_bias(false)
        );
    }
}

#[test]
fn bad_files_name_the_tensor_and_shapes() {
    let good = bidirectional_f64(Dtype::F32);
    let all = contents(&good);
    let without = |skip: &str| -> Vec<u8> {
        let t: Vec<(&str, Vec<usize>, Vec<f64>)> = all
            .iter()
            .filter(|(n, _, _)| n != skip)
            .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
            .collect();
        file(&t, Dtype::F32, &[])
    };
    // An nn.RNN without metadata: the nonlinearity comes from the caller.
    let relu = Some(Activation::Relu);
    let e = parse_torch(&without("weight_hh_l0_reverse"), relu).unwrap_err();
    assert!(
        e.contains("weight_hh_l0_reverse") && e.contains("missing"),
        "{e}"
    );
    let e = parse_torch(&without("head.weight"), relu).unwrap_err();
    assert!(e.contains("head.weight"), "{e}");
    // A reshaped tensor: same values, wrong shape.
    let t: Vec<(&str, Vec<usize>, Vec<f64>)> = all
        .iter()
        .map(|(n, s, v)| {
            let s = if n == "weight_ih_l0" {
                vec![2, 6]
            } else {
                s.clone()
            };
            (n.as_str(), s, v.clone())
        })
        .collect();
    let e = parse_torch(&file(&t, Dtype::F32, &[]), relu).unwrap_err();
    assert!(e.contains("weight_ih_l0") && e.contains("[2, 6]"), "{e}");
    let e = parse_torch(&good, relu)
        .map(|_| ())
        .and(parse_torch(b"garbage", None).map(|_| ()))
        .unwrap_err();
    assert!(e.contains("safetensors"), "{e}");
    let e = parse_torch(&file(&[("x", vec![1], vec![0.0])], Dtype::F32, &[]), None).unwrap_err();
    assert!(e.contains("weight_ih_l0"), "{e}");
    let e = parse_torch(&good_with_meta(&all, "sigmoid"), None).unwrap_err();
    assert!(e.contains("sigmoid"), "{e}");
    let e = load_torch(std::path::Path::new("/no/such/model.safetensors"), None).unwrap_err();
    assert!(e.to_string().contains("/no/such/model.safetensors"), "{e}");
}

fn good_with_meta(all: &[(String, Vec<usize>, Vec<f64>)], nonlinearity: &str) -> Vec<u8> {
    let t: Vec<(&str, Vec<usize>, Vec<f64>)> = all
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    file(&t, Dtype::F32, &[("nonlinearity", nonlinearity)])
}

/// The (name, shape, values) of every f32 tensor of a file.
fn contents(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect();
            (n, v.shape().to_vec(), data)
        })
        .collect()
}

fn borrowed(t: &[(String, Vec<usize>, Vec<f64>)]) -> Vec<(&str, Vec<usize>, Vec<f64>)> {
    t.iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect()
}
