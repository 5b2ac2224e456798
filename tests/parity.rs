//! GPU forward and backward against the CPU reference, every output and every gradient, on
//! edge-case shapes, for every cell (each case runs as Elman with its nonlinearity, LSTM
//! and GRU).

mod common;

use common::{
    assert_close, compare_with_reference, download, gpu, paths, state, uniform, upload, widen,
    Comparison,
};
use wgpu_rnn::{cpu, Activation, CellKind, RecurrencePath, Rnn, RnnConfig, State};

struct Case {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
    o: usize,
    act: Activation,
    layers: usize,
    bidirectional: bool,
    /// Scale of the uniform inputs x.
    x_scale: f32,
    with_h0: bool,
    with_dh_last: bool,
}

impl Case {
    fn new(t: usize, b: usize, i: usize, h: usize, o: usize) -> Self {
        Case {
            t,
            b,
            i,
            h,
            o,
            act: Activation::Tanh,
            layers: 1,
            bidirectional: false,
            x_scale: 1.0,
            with_h0: true,
            with_dh_last: true,
        }
    }
    fn relu(mut self) -> Self {
        self.act = Activation::Relu;
        self
    }
    fn stacked(mut self, layers: usize, bidirectional: bool) -> Self {
        self.layers = layers;
        self.bidirectional = bidirectional;
        self
    }
}

fn check(case: Case) {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        for path in paths(case.b) {
            check_path(&case, cell, path);
        }
    }
}

fn check_path(case: &Case, cell: CellKind, path: RecurrencePath) {
    let &Case { t, b, i, h, o, .. } = case;
    let cfg = RnnConfig::new(i, h, o)
        .with_cell(cell)
        .with_activation(if cell == CellKind::Rnn {
            case.act
        } else {
            Activation::Tanh
        })
        .with_layers(case.layers)
        .with_bidirectional(case.bidirectional);
    let tag = format!(
        "T={t} B={b} I={i} H={h} O={o} L={} D={} {} {:?}",
        case.layers,
        cfg.directions(),
        cell.name(),
        cfg.activation
    );
    let comparison = Comparison {
        t,
        b,
        seed: (t * 1000 + b * 100 + h) as u64,
        x_scale: case.x_scale,
        with_init: case.with_h0,
        with_d_final: case.with_dh_last,
        lengths: None,
    };
    compare_with_reference(&tag, &cfg, path, &comparison);
}

#[test]
fn shapes_that_are_no_tile_multiple() {
    check(Case::new(7, 3, 5, 11, 4));
}

#[test]
fn shapes_that_are_no_tile_multiple_relu() {
    check(Case::new(7, 3, 5, 11, 4).relu());
}

#[test]
fn tile_multiples() {
    check(Case::new(8, 8, 16, 32, 8));
}

#[test]
fn single_step_and_single_row() {
    check(Case::new(1, 1, 3, 5, 2));
}

#[test]
fn hidden_size_one() {
    check(Case::new(6, 2, 3, 1, 2));
}

#[test]
fn input_size_one_output_size_one() {
    check(Case::new(9, 5, 1, 7, 1));
}

#[test]
fn all_sizes_one() {
    check(Case::new(1, 1, 1, 1, 1));
}

#[test]
fn without_h0_or_dh_last() {
    check(Case {
        with_h0: false,
        with_dh_last: false,
        ..Case::new(5, 4, 6, 9, 3)
    });
}

#[test]
fn larger_hidden_and_batch() {
    check(Case::new(12, 33, 20, 130, 17));
}

#[test]
fn larger_hidden_and_batch_relu() {
    check(Case::new(12, 33, 20, 130, 17).relu());
}

#[test]
fn stacked_bidirectional_shapes_that_are_no_tile_multiple() {
    for (layers, bi) in [(2, false), (1, true), (3, true)] {
        check(Case::new(7, 3, 5, 11, 4).stacked(layers, bi));
        check(Case::new(6, 9, 3, 6, 2).stacked(layers, bi).relu());
    }
}

#[test]
fn stacked_bidirectional_without_h0_or_dh_last() {
    let mut c = Case::new(5, 2, 3, 4, 2).stacked(2, true);
    c.with_h0 = false;
    c.with_dh_last = false;
    check(c);
}

#[test]
fn long_sequence() {
    check(Case::new(512, 2, 4, 16, 3));
}

#[test]
fn saturating_inputs_give_no_nan() {
    let case = Case {
        x_scale: 100.0,
        ..Case::new(20, 3, 5, 11, 4)
    };
    check(case);
    // And the saturated states are exactly ±1 where the CPU's are.
    let cfg = RnnConfig::new(5, 11, 4);
    let gpu = gpu();
    let mut rnn = Rnn::new(gpu, cfg, 3).unwrap();
    let x = gpu.tensor(&[20, 3, 5], &uniform(9, 300, 100.0)).unwrap();
    let h = rnn.forward(&x, None).unwrap().state.h.download().unwrap();
    assert!(h.iter().all(|v| v.is_finite() && v.abs() <= 1.0), "{h:?}");
    assert!(
        h.iter().filter(|v| v.abs() == 1.0).count() > h.len() / 2,
        "{h:?}"
    );
}

#[test]
fn repeated_calls_and_several_shapes_reuse_workspaces() {
    let cfg = RnnConfig::new(4, 8, 2);
    let gpu = gpu();
    let mut rnn = Rnn::new(gpu, cfg.clone(), 5).unwrap();
    let params = rnn.params_to_host().unwrap().to_f64();
    for &(t, b) in &[(3, 2), (5, 1), (3, 2), (9, 4), (5, 1)] {
        let x = uniform(t as u64, t * b * 4, 1.0);
        let out = rnn
            .forward(&gpu.tensor(&[t, b, 4], &x).unwrap(), None)
            .unwrap();
        let fwd = cpu::forward(&cfg, &params, &widen(&x), &[t, b, 4], None, None).unwrap();
        assert_close("y", &out.y.download().unwrap(), &fwd.y, 1e-5, 1e-4);
    }
}

/// One recurrence dispatch per time step (T + 1 backward, the last giving dL/dh0), or one
/// in all on the persistent path, and one submit per call, whatever the cell. Forward:
/// the input projection, the recurrence, the head. Backward: the head's dh, dW_hy and
/// db_y; the recurrence, dW_hh and db_hh; dW_ih, db_ih and dx.
#[test]
fn dispatch_and_submit_counts() {
    let (t, b) = (10, 3);
    let gpu = gpu();
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let mut rnn = Rnn::new(gpu, RnnConfig::new(4, 8, 2).with_cell(cell), 1).unwrap();
        let x = gpu.zeros(&[t, b, 4]).unwrap();
        for path in paths(b) {
            rnn.set_path(Some(path));
            let stepwise = path == RecurrencePath::Stepwise;
            let (fwd_steps, bwd_steps) = if stepwise { (t, t + 1) } else { (1, 1) };
            rnn.forward(&x, None).unwrap();
            let f = rnn.last_call_stats();
            assert_eq!(
                (f.dispatches, f.submits),
                (fwd_steps + 2, 1),
                "{cell:?} {path}"
            );
            rnn.backward(&gpu.zeros(&[t, b, 2]).unwrap(), None).unwrap();
            let bw = rnn.last_call_stats();
            assert_eq!(
                (bw.dispatches, bw.submits),
                (bwd_steps + 8, 1),
                "{cell:?} {path}"
            );
        }
    }
}

/// Right-padded batches with per-row lengths against the reference (which the PyTorch
/// fixtures pin to packed-sequence semantics), on every path; and against running each
/// row alone at its own length.
#[test]
fn variable_lengths() {
    let gpu = gpu();
    let (t, i, o) = (7, 3, 2);
    for (b, h, layers, bi, cell, act) in [
        (3, 5, 1, false, CellKind::Rnn, Activation::Tanh),
        (9, 6, 2, true, CellKind::Rnn, Activation::Tanh),
        (5, 4, 2, true, CellKind::Rnn, Activation::Relu),
        (5, 4, 2, true, CellKind::Lstm, Activation::Tanh),
        (9, 6, 1, true, CellKind::Gru, Activation::Tanh),
    ] {
        let cfg = RnnConfig::new(i, h, o)
            .with_cell(cell)
            .with_activation(act)
            .with_layers(layers)
            .with_bidirectional(bi);
        let cells = cfg.cells();
        let shape = cfg.state_shape(b);
        let lengths: Vec<usize> = (0..b).map(|r| [t, 1, 4, 6, 2][r % 5]).collect();
        let params = cfg.init_params(b as u64);
        let x = uniform(1, t * b * i, 1.0);
        let init = state(cell, 2, cells * b * h, 0.5);
        for path in paths(b) {
            let tag = format!(
                "B={b} H={h} L={layers} bi={bi} {} {act:?} lengths {lengths:?}",
                cell.name()
            );
            let comparison = Comparison {
                t,
                b,
                seed: b as u64,
                x_scale: 1.0,
                with_init: true,
                with_d_final: true,
                lengths: Some(lengths.clone()),
            };
            compare_with_reference(&tag, &cfg, path, &comparison);
        }
        // Row r alone, at its own length, gives row r's outputs and final state.
        let mut rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
        let out = rnn
            .forward_with_lengths(
                &gpu.tensor(&[t, b, i], &x).unwrap(),
                Some(&upload(&init, &shape)),
                &lengths,
            )
            .unwrap();
        let (y_all, last_all) = (out.y.download().unwrap(), download(&out.state));
        for r in 0..b {
            let l = lengths[r];
            let xr: Vec<f32> = (0..l)
                .flat_map(|s| x[(s * b + r) * i..][..i].to_vec())
                .collect();
            let row_of = |v: &Vec<f32>| -> Vec<f32> {
                (0..cells)
                    .flat_map(|c| v[(c * b + r) * h..][..h].to_vec())
                    .collect()
            };
            let init_r = init.map(row_of);
            let alone = rnn
                .forward(
                    &gpu.tensor(&[l, 1, i], &xr).unwrap(),
                    Some(&upload(&init_r, &cfg.state_shape(1))),
                )
                .unwrap();
            let (ya, last_alone) = (alone.y.download().unwrap(), download(&alone.state));
            for s in 0..t {
                for k in 0..o {
                    let got = y_all[(s * b + r) * o + k];
                    let want = if s < l { ya[s * o + k] } else { 0.0 };
                    assert!(
                        (got - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                        "{} row {r} t {s}: {got} vs alone {want}",
                        cell.name()
                    );
                }
            }
            for (all, alone) in last_all.tensors().into_iter().zip(last_alone.tensors()) {
                let all: State<Vec<f32>> = State::h(row_of(all));
                for (got, want) in all.h.iter().zip(alone) {
                    assert!(
                        (got - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                        "{} row {r} final state: {got} vs {want}",
                        cell.name()
                    );
                }
            }
        }
    }
}
