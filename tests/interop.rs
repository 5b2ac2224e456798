//! nn.RNN state_dict import and export: round trips, f64 files, inference of sizes,
//! and errors that name the tensor.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype};
use wgpu_rnn::interop::{load_torch, parse_torch, save_torch};
use wgpu_rnn::{Activation, RnnConfig};

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
        assert_eq!(m.prefix, "");
        // b_h = bias_ih + bias_hh (in f32)
        let want: Vec<f32> = ramp(4, 3.0)
            .iter()
            .zip(ramp(4, 4.0))
            .map(|(a, b)| *a as f32 + b as f32)
            .collect();
        assert_eq!(m.params.cells[1].b_h, want);
    }
}

#[test]
fn export_then_import_is_exact_and_uses_pytorch_names() {
    let cfg = RnnConfig::new(5, 6, 3)
        .with_layers(2)
        .with_bidirectional(true)
        .with_activation(Activation::Relu);
    let params = cfg.init_params(9);
    let path = temp("export.safetensors");
    save_torch(&path, &cfg, &params, "rnn.").unwrap();
    let back = load_torch(&path, None).unwrap();
    assert_eq!(
        back.config, cfg,
        "nonlinearity comes from the file's metadata"
    );
    assert_eq!(back.params, params);
    assert_eq!(back.prefix, "rnn.");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want = vec!["head.bias".to_string(), "head.weight".to_string()];
    for l in 0..2 {
        for sfx in ["", "_reverse"] {
            for n in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
                want.push(format!("rnn.{n}_l{l}{sfx}"));
            }
        }
    }
    want.sort();
    assert_eq!(
        names, want,
        "exactly nn.RNN's state_dict keys plus the head"
    );
    // Without metadata, the caller's nonlinearity (else tanh) applies.
    let plain = {
        let t = contents(&bytes);
        file(&borrowed(&t), Dtype::F32, &[])
    };
    assert_eq!(
        parse_torch(&plain, None).unwrap().config.activation,
        Activation::Tanh
    );
    assert_eq!(
        parse_torch(&plain, Some(Activation::Relu))
            .unwrap()
            .config
            .activation,
        Activation::Relu
    );
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
    let e = parse_torch(&without("weight_hh_l0_reverse"), None).unwrap_err();
    assert!(
        e.contains("weight_hh_l0_reverse") && e.contains("missing"),
        "{e}"
    );
    let e = parse_torch(&without("head.weight"), None).unwrap_err();
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
    let e = parse_torch(&file(&t, Dtype::F32, &[]), None).unwrap_err();
    assert!(e.contains("weight_ih_l0") && e.contains("[2, 6]"), "{e}");
    let e = parse_torch(&good, None)
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
