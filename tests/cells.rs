//! Every cell (Elman tanh and relu, LSTM, GRU) on the GPU against the CPU reference:
//! forward outputs, final states and every gradient (parameters, x, h0, c0), for 1 and 2
//! layers, one and two directions, full and variable lengths, and every recurrence path,
//! on sizes that are no multiple of any tile.

mod common;

use common::{compare_on_with_reference, gpu, paths, Comparison};
use wgpu_rnn::{Activation, CellKind, Gpu, GpuOptions, RecurrencePath, Rnn, RnnConfig, State};

#[derive(Clone, Copy, Debug)]
struct Case {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
    o: usize,
    cell: CellKind,
    act: Activation,
    layers: usize,
    bidirectional: bool,
    lengths: bool,
}

impl Case {
    fn config(&self) -> RnnConfig {
        RnnConfig::new(self.i, self.h, self.o)
            .with_cell(self.cell)
            .with_activation(self.act)
            .with_layers(self.layers)
            .with_bidirectional(self.bidirectional)
    }
}

/// Row lengths in 1..=T with the first row full and one of length 1.
fn lengths_for(t: usize, b: usize) -> Vec<usize> {
    (0..b)
        .map(|r| match r {
            0 => t,
            1 => 1,
            _ => 1 + (r * 7) % t,
        })
        .collect()
}

fn check(case: Case, path: RecurrencePath) {
    check_on(gpu(), case, path)
}

fn check_on(gpu: &Gpu, case: Case, path: RecurrencePath) {
    let Case { t, b, h, .. } = case;
    let comparison = Comparison {
        t,
        b,
        seed: (t * 1000 + b * 100 + h + case.cell.gates()) as u64,
        x_scale: 1.0,
        with_init: true,
        with_d_final: true,
        lengths: case.lengths.then(|| lengths_for(t, b)),
    };
    compare_on_with_reference(gpu, &format!("{case:?}"), &case.config(), path, &comparison);
}

const CELLS: [(CellKind, Activation); 4] = [
    (CellKind::Rnn, Activation::Tanh),
    (CellKind::Rnn, Activation::Relu),
    (CellKind::Lstm, Activation::Tanh),
    (CellKind::Gru, Activation::Tanh),
];

fn case(cell: (CellKind, Activation), layers: usize, bidirectional: bool, lengths: bool) -> Case {
    Case {
        t: 5,
        b: 3,
        i: 4,
        h: 7,
        o: 3,
        cell: cell.0,
        act: cell.1,
        layers,
        bidirectional,
        lengths,
    }
}

#[test]
fn every_cell_layout_length_and_path_matches_the_reference() {
    for cell in CELLS {
        for (layers, bi) in [(1, false), (1, true), (2, false), (2, true)] {
            for lengths in [false, true] {
                let c = case(cell, layers, bi, lengths);
                for path in paths(c.b) {
                    check(c, path);
                }
            }
        }
    }
}

/// B = 19 rows: past one 4-row tile and one stepwise workgroup of rows; H = 67 units:
/// past one stepwise workgroup of units and one subgroup of k (bidirectional, lengths).
fn past_one_workgroup(cell: (CellKind, Activation)) -> Case {
    Case {
        t: 4,
        b: 19,
        i: 5,
        h: 67,
        o: 2,
        ..case(cell, 1, true, true)
    }
}

/// Batches past one 4-row tile and one stepwise workgroup of rows, hidden sizes past one
/// stepwise workgroup of units.
#[test]
fn every_cell_matches_the_reference_on_sizes_past_one_workgroup() {
    for cell in CELLS {
        let c = past_one_workgroup(cell);
        for path in paths(c.b) {
            check(c, path);
        }
    }
}

/// The subgroup forward recurrence (the GPU default where the adapter offers subgroups,
/// asked for here on any adapter) on every cell, layout, length and path, at a size past
/// one subgroup of k and one workgroup of units and rows.
#[test]
fn subgroup_forward_recurrence_matches_the_reference() {
    let sg = Gpu::with_options(&GpuOptions::from_env().with_subgroup_recurrence(true)).unwrap();
    if !sg.subgroups() {
        eprintln!(
            "note: {} offers no subgroups (or WGPU_RNN_SUBGROUPS=0): the plain recurrence \
             is the only one there",
            sg.adapter()
        );
        return;
    }
    assert!(sg.subgroup_recurrence());
    for cell in CELLS {
        for (layers, bi, lengths) in [(1, true, true), (2, false, false)] {
            let c = case(cell, layers, bi, lengths);
            for path in paths(c.b) {
                check_on(&sg, c, path);
            }
        }
        let big = past_one_workgroup(cell);
        for path in paths(big.b) {
            check_on(&sg, big, path);
        }
    }
}

#[test]
fn lstm_state_carries_c_and_gru_has_none() {
    let gpu = gpu();
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(2, 3, 1).with_cell(cell);
        let mut rnn = Rnn::new(gpu, cfg.clone(), 1).unwrap();
        let x = gpu.tensor(&[2, 1, 2], &[0.5; 4]).unwrap();
        let out = rnn.forward(&x, None).unwrap();
        assert_eq!(out.state.c.is_some(), cell == CellKind::Lstm);
        // The wrong kind of state is refused, naming what is wrong: an LSTM state
        // without c, a GRU state with one.
        let shape = cfg.state_shape(1);
        let zeros = || gpu.zeros(&shape).unwrap();
        let wrong = State {
            h: zeros(),
            c: (cell == CellKind::Gru).then(zeros),
        };
        let err = rnn.forward(&x, Some(&wrong)).unwrap_err().to_string();
        assert!(err.contains("state"), "{err}");
    }
}
