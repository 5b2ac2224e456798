//! Every cell (Elman tanh and relu, LSTM, GRU) on the GPU against the CPU reference:
//! forward outputs, final states and every gradient (parameters, x, h0, c0), for 1 and 2
//! layers, one and two directions, full and variable lengths, and every recurrence path,
//! on sizes that are no multiple of any tile.

mod common;

use common::{assert_close, download, gpu, state, uniform, upload, widen};
use wgpu_rnn::{cpu, Activation, CellKind, RecurrencePath, Rnn, RnnConfig, State};

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

/// Every way the recurrence can run at batch `b`: one dispatch per step; one dispatch in
/// all with one row per workgroup, with half the rows per workgroup (4-row tiles once
/// b >= 8), and with W_hh in workgroup memory (where G·H·H fits).
fn paths(b: usize) -> [RecurrencePath; 4] {
    let persistent = |rows_per_workgroup, shared_w| RecurrencePath::Persistent {
        rows_per_workgroup,
        shared_w,
    };
    [
        RecurrencePath::Stepwise,
        persistent(1, false),
        persistent(b.div_ceil(2), false),
        persistent(b, true),
    ]
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

/// f32 on the GPU against f64 on the CPU from the same f32 inputs. The allowance grows
/// with the length of the sums involved (T·B rows for weight gradients, T steps of
/// recurrence): f32 rounding is about 6e-8 per operation.
fn check(case: Case, path: RecurrencePath) {
    let Case { t, b, i, h, o, .. } = case;
    let cfg = case.config();
    let n_state = cfg.cells() * b * h;
    let seed = (t * 1000 + b * 100 + h + case.cell.gates()) as u64;
    let params = cfg.init_params(seed);
    let x = uniform(seed + 1, t * b * i, 1.0);
    let init = state(cfg.cell, seed + 2, n_state, 0.5);
    let dy = uniform(seed + 3, t * b * o, 1.0);
    let d_final = state(cfg.cell, seed + 4, n_state, 1.0);
    let lengths = case.lengths.then(|| lengths_for(t, b));

    let gpu = gpu();
    let shape = cfg.state_shape(b);
    let mut rnn = Rnn::from_params(gpu, cfg.clone(), &params).unwrap();
    rnn.set_path(Some(path));
    let x_gpu = gpu.tensor(&[t, b, i], &x).unwrap();
    let init_gpu = upload(&init, &shape);
    let out = match &lengths {
        Some(l) => rnn.forward_with_lengths(&x_gpu, Some(&init_gpu), l),
        None => rnn.forward(&x_gpu, Some(&init_gpu)),
    }
    .unwrap();
    let dy_gpu = gpu.tensor(&[t, b, o], &dy).unwrap();
    let grads = rnn
        .backward(&dy_gpu, Some(&upload(&d_final, &shape)))
        .unwrap();

    let p64 = params.to_f64();
    let x64 = widen(&x);
    let init64 = init.map(|v| widen(v));
    let fwd = cpu::forward(
        &cfg,
        &p64,
        &x64,
        &[t, b, i],
        Some(&init64),
        lengths.as_deref(),
    )
    .unwrap();
    let d_final64 = d_final.map(|v| widen(v));
    let g = cpu::backward(&cfg, &p64, &x64, &fwd, &widen(&dy), Some(&d_final64)).unwrap();

    let tag = format!("{case:?} {path}");
    let steps = (t as f64).sqrt();
    let rows = ((t * b) as f64).sqrt();
    let tol = 2e-6;
    assert_close(
        &format!("{tag} y"),
        &out.y.download().unwrap(),
        &fwd.y,
        tol * steps,
        1e-4,
    );
    let last = download(&out.state);
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
        .names_for(&cfg)
        .iter()
        .zip(gpu_grads.tensors())
        .zip(g.params.tensors())
    {
        assert_close(&format!("{tag} d{name}"), gv, cv, tol * rows * steps, 1e-3);
    }
    assert_close(
        &format!("{tag} dx"),
        &grads.dx.download().unwrap(),
        &g.dx,
        tol * steps,
        1e-3,
    );
    let d_init = download(&grads.d_init);
    assert_eq!(d_init.c.is_some(), cfg.cell.has_c());
    for (k, (gv, cv)) in d_init
        .tensors()
        .into_iter()
        .zip(g.d_init.tensors())
        .enumerate()
    {
        assert_close(&format!("{tag} d init {k}"), gv, cv, tol * steps, 1e-3);
    }
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

/// Batches past one 4-row tile and one stepwise workgroup of rows, hidden sizes past one
/// stepwise workgroup of units.
#[test]
fn every_cell_matches_the_reference_on_sizes_past_one_workgroup() {
    for cell in CELLS {
        let c = Case {
            t: 4,
            b: 19,
            i: 5,
            h: 67,
            o: 2,
            ..case(cell, 1, true, true)
        };
        for path in paths(c.b) {
            check(c, path);
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
        // The wrong kind of state is refused, naming what is wrong.
        let shape = cfg.state_shape(1);
        let wrong = if cell == CellKind::Lstm {
            State::h(gpu.zeros(&shape).unwrap())
        } else {
            State::filled(cell, gpu.zeros(&shape).unwrap()).map(Clone::clone)
        };
        let wrong = if cell == CellKind::Gru {
            State {
                h: wrong.h.clone(),
                c: Some(wrong.h),
            }
        } else {
            wrong
        };
        let err = rnn.forward(&x, Some(&wrong)).unwrap_err().to_string();
        assert!(err.contains("state"), "{err}");
    }
}
