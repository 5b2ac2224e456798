//! Bad input gives typed errors, never a panic.

mod common;

use common::gpu;
use wgpu_rnn::{cpu, CellKind, Error, Gpu, GpuOptions, Rnn, RnnConfig, State};

fn model() -> Rnn {
    Rnn::new(gpu(), RnnConfig::new(3, 4, 2), 0).unwrap()
}

#[test]
fn x_with_wrong_input_size() {
    let mut rnn = model();
    let x = gpu().zeros(&[5, 2, 4]).unwrap();
    let e = rnn.forward(&x, None).unwrap_err();
    assert!(matches!(e, Error::Shape { what: "x", .. }), "{e}");
    assert!(e.to_string().contains("(T, B, 3)"), "{e}");
}

#[test]
fn x_with_wrong_rank() {
    let mut rnn = model();
    let x = gpu().zeros(&[10, 3]).unwrap();
    assert!(matches!(rnn.forward(&x, None), Err(Error::Shape { .. })));
}

#[test]
fn zero_sized_sequence_or_batch() {
    let mut rnn = model();
    for shape in [[0, 2, 3], [5, 0, 3]] {
        let x = gpu().zeros(&shape).unwrap();
        let e = rnn.forward(&x, None).unwrap_err();
        assert!(matches!(e, Error::ZeroSize { .. }), "{shape:?}: {e}");
    }
}

#[test]
fn zero_sized_config() {
    for cfg in [
        RnnConfig::new(0, 4, 2),
        RnnConfig::new(3, 0, 2),
        RnnConfig::new(3, 4, 0),
    ] {
        let e = Rnn::new(gpu(), cfg.clone(), 0).unwrap_err();
        assert!(matches!(e, Error::ZeroSize { .. }), "{cfg:?}: {e}");
    }
}

#[test]
fn h0_of_wrong_shape() {
    let mut rnn = model();
    let x = gpu().zeros(&[5, 2, 3]).unwrap();
    let h0 = gpu().zeros(&[3, 4]).unwrap();
    let e = rnn.forward(&x, Some(&State::h(h0))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "initial state",
                ..
            }
        ),
        "{e}"
    );
}

/// An initial state must have c exactly when the cell does (LSTM), and a c of the wrong
/// shape is named like a wrong h.
#[test]
fn initial_state_parts_must_fit_the_cell() {
    let x = gpu().zeros(&[5, 2, 3]).unwrap();
    let h = || gpu().zeros(&[1, 2, 4]).unwrap();
    let mut lstm = Rnn::new(gpu(), RnnConfig::new(3, 4, 2).with_cell(CellKind::Lstm), 0).unwrap();
    let e = lstm.forward(&x, Some(&State::h(h()))).unwrap_err();
    assert!(matches!(e, Error::IncompatibleArgs(_)), "{e}");
    let bad_c = State {
        h: h(),
        c: Some(gpu().zeros(&[1, 2, 5]).unwrap()),
    };
    let e = lstm.forward(&x, Some(&bad_c)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "initial state",
                ..
            }
        ),
        "{e}"
    );
    lstm.forward(&x, Some(&State::filled(CellKind::Lstm, h())))
        .unwrap();
    for cell in [CellKind::Rnn, CellKind::Gru] {
        let mut rnn = Rnn::new(gpu(), RnnConfig::new(3, 4, 2).with_cell(cell), 0).unwrap();
        let with_c = State {
            h: h(),
            c: Some(h()),
        };
        let e = rnn.forward(&x, Some(&with_c)).unwrap_err();
        assert!(matches!(e, Error::IncompatibleArgs(_)), "{cell:?}: {e}");
        rnn.forward(&x, Some(&State::h(h()))).unwrap();
    }
}

#[test]
fn dy_of_wrong_shape() {
    let mut rnn = model();
    let x = gpu().zeros(&[5, 2, 3]).unwrap();
    rnn.forward(&x, None).unwrap();
    for shape in [vec![5, 2, 3], vec![4, 2, 2], vec![10, 2]] {
        let dy = gpu().zeros(&shape).unwrap();
        let e = rnn.backward(&dy, None).unwrap_err();
        assert!(
            matches!(e, Error::Shape { what: "dy", .. }),
            "{shape:?}: {e}"
        );
    }
}

#[test]
fn dh_last_of_wrong_shape() {
    let mut rnn = model();
    rnn.forward(&gpu().zeros(&[5, 2, 3]).unwrap(), None)
        .unwrap();
    let dy = gpu().zeros(&[5, 2, 2]).unwrap();
    let dh = gpu().zeros(&[2, 5]).unwrap();
    let e = rnn.backward(&dy, Some(&State::h(dh))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "gradient of the final state",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn backward_without_forward() {
    let mut rnn = model();
    let dy = gpu().zeros(&[5, 2, 2]).unwrap();
    assert!(matches!(rnn.backward(&dy, None), Err(Error::NoForward(_))));
    // set_params invalidates the stored forward state.
    rnn.forward(&gpu().zeros(&[5, 2, 3]).unwrap(), None)
        .unwrap();
    let p = rnn.params_to_host().unwrap();
    rnn.set_params(&p).unwrap();
    assert!(matches!(rnn.backward(&dy, None), Err(Error::NoForward(_))));
}

#[test]
fn params_of_wrong_length() {
    let cfg = RnnConfig::new(3, 4, 2);
    let mut p = cfg.init_params(0);
    p.cells[0].w_hh.pop();
    let e = Rnn::from_params(gpu(), cfg, &p).unwrap_err();
    assert!(
        matches!(&e, Error::ParamLength { name, .. } if name == "w_hh_l0"),
        "{e}"
    );
}

#[test]
fn tensor_data_of_wrong_length() {
    let e = gpu().tensor(&[2, 3], &[1.0; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DataLength {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn adapter_name_that_matches_nothing() {
    let options = GpuOptions::from_env().with_adapter_name("no adapter is called this");
    let e = Gpu::with_options(&options).unwrap_err();
    assert!(matches!(e, Error::AdapterNotFound { .. }), "{e}");
    assert!(e.to_string().contains("adapters present"), "{e}");
}

/// An adapter index counts devices of the preferred kind and backend, not the same device
/// again through another backend; it wraps around, and a name still filters first.
#[test]
fn adapter_index_counts_devices_of_the_preferred_kind() {
    let all = Gpu::adapters(&GpuOptions::from_env());
    let best = Gpu::with_options(&GpuOptions::from_env()).unwrap();
    let info = best.adapter().clone();
    let devices = all
        .iter()
        .filter(|a| a.backend == info.backend && a.device_type == info.device_type)
        .count();
    assert!(devices >= 1);
    for index in [0, devices, 3 * devices + 1] {
        let g = Gpu::with_options(&GpuOptions::from_env().with_adapter_index(index)).unwrap();
        let got = g.adapter();
        assert_eq!(
            (got.backend, got.device_type),
            (info.backend, info.device_type),
            "index {index}"
        );
        if index % devices == 0 {
            assert_eq!(
                got.name, info.name,
                "index {index} wraps around to the first"
            );
        }
    }
    let named = GpuOptions::from_env()
        .with_adapter_name("no adapter is called this")
        .with_adapter_index(1);
    assert!(matches!(
        Gpu::with_options(&named),
        Err(Error::AdapterNotFound { .. })
    ));
}

#[test]
fn cpu_reference_rejects_bad_shapes_too() {
    let cfg = RnnConfig::new(3, 4, 2);
    let p = cfg.init_params(0).to_f64();
    let x = vec![0.0; 30];
    assert!(matches!(
        cpu::forward(&cfg, &p, &x, &[5, 2, 4], None, None),
        Err(Error::Shape { .. })
    ));
    assert!(cpu::forward(&cfg, &p, &x[..29], &[5, 2, 3], None, None).is_err());
    let f = cpu::forward(&cfg, &p, &x, &[5, 2, 3], None, None).unwrap();
    assert!(cpu::backward(&cfg, &p, &x, &f, &[0.0; 7], None).is_err());
}

/// Found in review: state that is gone, inputs that do not fit each other.
#[test]
fn evicted_state_mismatched_reference_inputs_and_bad_vocabularies_are_errors() {
    let gpu = gpu();
    let cfg = RnnConfig::new(2, 3, 2);
    let mut rnn = Rnn::new(gpu, cfg.clone(), 1).unwrap();
    rnn.forward(&gpu.zeros(&[4, 2, 2]).unwrap(), None).unwrap();
    // Building workspaces for more shapes than the model keeps (8) evicts the forward's
    // state.
    for t in 5..21 {
        rnn.path(t, 2).unwrap();
    }
    let e = rnn
        .backward(&gpu.zeros(&[4, 2, 2]).unwrap(), None)
        .unwrap_err();
    assert!(matches!(e, Error::NoForward(_)), "{e}");

    // The CPU reference checks that its inputs belong together.
    let p = cfg.init_params(1).to_f64();
    let x = vec![0.1; 4 * 2 * 2];
    let fwd = wgpu_rnn::cpu::forward(&cfg, &p, &x, &[4, 2, 2], None, None).unwrap();
    let other = RnnConfig::new(2, 3, 2).with_layers(2);
    let p2 = other.init_params(1).to_f64();
    let e = wgpu_rnn::cpu::backward(&other, &p2, &x, &fwd, &[0.0; 16], None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                what: "forward state",
                ..
            }
        ),
        "{e}"
    );
    let e = wgpu_rnn::cpu::backward(&cfg, &p2, &x, &fwd, &[0.0; 16], None).unwrap_err();
    assert!(
        matches!(e, Error::DataLength { .. } | Error::ParamLength { .. }),
        "{e}"
    );
    let e = wgpu_rnn::cpu::backward(&cfg, &p, &x[..8], &fwd, &[0.0; 16], None).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");

    // A text checkpoint whose vocabulary does not match its sizes.
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vocab.safetensors");
    let ck = wgpu_rnn::files::checkpoint::Checkpoint {
        params: cfg.init_params(1),
        config: cfg,
        task: "text".into(),
        vocab: Some(vec!['a', 'b', 'c']),
        optim: None,
        step: 0,
        carried_state: None,
        extra: Default::default(),
    };
    ck.save(&path).unwrap();
    let e = wgpu_rnn::files::checkpoint::Checkpoint::load(&path).unwrap_err();
    assert!(e.to_string().contains("vocabulary has 3"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
