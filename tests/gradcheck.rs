//! Finite-difference check of the CPU reference's backward pass, entirely in f64, for every
//! cell (Elman tanh and relu, LSTM, GRU), one and two layers, one and two directions, with
//! and without per-row lengths and biases. The loss is L = Σ r ⊙ y + Σ s ⊙ h_n (+ Σ u ⊙ c_n
//! for LSTM) with fixed random r, s, u, so dL/dy = r, dL/dh_n = s, dL/dc_n = u.

mod common;

use common::{state, uniform, widen};
use wgpu_rnn::{cpu, Activation, CellKind, DropoutKey, Params, RnnConfig, State};

const T: usize = 4;
const B: usize = 2;
const I: usize = 3;
const H: usize = 5;
const O: usize = 2;

struct Problem {
    cfg: RnnConfig,
    x: Vec<f64>,
    init: State<Vec<f64>>,
    r: Vec<f64>,
    s: State<Vec<f64>>,
    lengths: Option<Vec<usize>>,
    /// A training forward's dropout (fixed masks), or none.
    key: Option<DropoutKey>,
}

impl Problem {
    fn forward(&self, p: &Params<Vec<f64>>, x: &[f64], init: &State<Vec<f64>>) -> cpu::Forward {
        let (cfg, shape, l) = (&self.cfg, &[T, B, I], self.lengths.as_deref());
        match self.key {
            Some(k) => cpu::forward_train(cfg, p, x, shape, Some(init), l, k),
            None => cpu::forward(cfg, p, x, shape, Some(init), l),
        }
        .unwrap()
    }

    fn loss(&self, p: &Params<Vec<f64>>, x: &[f64], init: &State<Vec<f64>>) -> f64 {
        let f = self.forward(p, x, init);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        let states: f64 = f
            .state
            .tensors()
            .into_iter()
            .zip(self.s.tensors())
            .map(|(a, b)| dot(a, b))
            .sum();
        dot(&f.y, &self.r) + states
    }
}

/// Central differences for each element of `v`, via `loss_with` which rebuilds the loss.
fn numeric(v: &[f64], mut loss_with: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let eps = 1e-6;
    let mut w = v.to_vec();
    (0..v.len())
        .map(|k| {
            w[k] = v[k] + eps;
            let up = loss_with(&w);
            w[k] = v[k] - eps;
            let down = loss_with(&w);
            w[k] = v[k];
            (up - down) / (2.0 * eps)
        })
        .collect()
}

fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths");
    for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let rel = (a - n).abs() / (a.abs() + n.abs()).max(1e-3);
        assert!(
            rel < 1e-6,
            "{what}[{k}]: analytic {a:.12} vs numeric {n:.12}, relative error {rel:.2e}"
        );
    }
}

fn gradcheck(cfg: RnnConfig, lengths: Option<Vec<usize>>) {
    gradcheck_with(cfg, lengths, None)
}

fn gradcheck_with(cfg: RnnConfig, lengths: Option<Vec<usize>>, key: Option<DropoutKey>) {
    let p = cfg.init_params(11).to_f64();
    // Larger weights than the default so relu units are not all in one regime.
    let p = p.map(|v| v.iter().map(|w| w * 2.0).collect::<Vec<_>>());
    let cells = cfg.cells();
    let n = cells * B * H;
    let prob = Problem {
        x: widen(&uniform(1, T * B * I, 1.0)),
        init: state(cfg.cell, 2, n, 0.5).map(|v| widen(v)),
        r: widen(&uniform(3, T * B * O, 1.0)),
        s: state(cfg.cell, 4, n, 1.0).map(|v| widen(v)),
        cfg,
        lengths,
        key,
    };
    let tag = format!(
        "{} bias={} L={} D={} {:?} lengths={:?}",
        prob.cfg.cell.name(),
        prob.cfg.bias,
        prob.cfg.num_layers,
        prob.cfg.directions(),
        prob.cfg.activation,
        prob.lengths
    );
    let fwd = prob.forward(&p, &prob.x, &prob.init);
    let g = cpu::backward(&prob.cfg, &p, &prob.x, &fwd, &prob.r, Some(&prob.s)).unwrap();

    let names = p.names_for(&prob.cfg);
    let analytic = g.params.tensors();
    for (idx, name) in names.iter().enumerate() {
        let num = numeric(p.tensors()[idx], |w| {
            let mut q = p.clone();
            q.tensors_mut()[idx].copy_from_slice(w);
            prob.loss(&q, &prob.x, &prob.init)
        });
        assert_grad(&format!("{tag} d{name}"), analytic[idx], &num);
    }
    let num = numeric(&prob.x, |x| prob.loss(&p, x, &prob.init));
    assert_grad(&format!("{tag} dx"), &g.dx, &num);
    let num = numeric(&prob.init.h, |h0| {
        let init = State {
            h: h0.to_vec(),
            c: prob.init.c.clone(),
        };
        prob.loss(&p, &prob.x, &init)
    });
    assert_grad(&format!("{tag} dh0"), &g.d_init.h, &num);
    assert_eq!(g.d_init.c.is_some(), prob.cfg.cell.has_c(), "{tag}");
    if let (Some(c0), Some(dc0)) = (&prob.init.c, &g.d_init.c) {
        let num = numeric(c0, |c0| {
            let init = State {
                h: prob.init.h.clone(),
                c: Some(c0.to_vec()),
            };
            prob.loss(&p, &prob.x, &init)
        });
        assert_grad(&format!("{tag} dc0"), dc0, &num);
    }
}

#[test]
fn one_layer_tanh_and_relu() {
    for act in [Activation::Tanh, Activation::Relu] {
        gradcheck(RnnConfig::new(I, H, O).with_activation(act), None);
    }
}

#[test]
fn stacked_and_bidirectional() {
    for act in [Activation::Tanh, Activation::Relu] {
        for (layers, bi) in [(2, false), (1, true), (2, true)] {
            let cfg = RnnConfig::new(I, H, O)
                .with_activation(act)
                .with_layers(layers)
                .with_bidirectional(bi);
            gradcheck(cfg, None);
        }
    }
}

#[test]
fn variable_lengths() {
    for (layers, bi) in [(1, false), (2, true)] {
        let cfg = RnnConfig::new(I, H, O)
            .with_layers(layers)
            .with_bidirectional(bi);
        gradcheck(cfg, Some(vec![T, 2]));
    }
}

#[test]
fn lstm_and_gru_every_layout() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        for (layers, bi) in [(1, false), (2, false), (1, true), (2, true)] {
            let cfg = RnnConfig::new(I, H, O)
                .with_cell(cell)
                .with_layers(layers)
                .with_bidirectional(bi);
            gradcheck(cfg, None);
        }
    }
}

#[test]
fn lstm_and_gru_variable_lengths_and_no_bias() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        let cfg = RnnConfig::new(I, H, O)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true);
        gradcheck(cfg.clone(), Some(vec![T, 2]));
        gradcheck(cfg.with_bias(false), None);
    }
}

/// Dropout between the layers and on the head's input, with fixed masks: the gradient
/// flows through the kept units, scaled, and not through the dropped ones.
#[test]
fn dropout_between_layers_and_on_the_head() {
    let key = DropoutKey { seed: 3, step: 9 };
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig::new(I, H, O)
            .with_cell(cell)
            .with_layers(2)
            .with_bidirectional(true)
            .with_dropout(0.4)
            .with_head_dropout(0.3);
        gradcheck_with(cfg.clone(), None, Some(key));
        gradcheck_with(cfg, Some(vec![T, 2]), Some(key));
    }
}

/// The embedding table's gradient (and every other) on token ids, where some ids repeat
/// and some rows are never read, with dropout and variable lengths in the mix.
#[test]
fn embedding_table() {
    let vocab = 6;
    let ids: Vec<u32> = vec![0, 3, 3, 5, 1, 3, 0, 0]; // (T, B) = (4, 2); rows 2 and 4 unread
    for (cell, lengths, key) in [
        (CellKind::Rnn, None, None),
        (CellKind::Lstm, Some(vec![T, 2]), None),
        (CellKind::Gru, None, Some(DropoutKey { seed: 1, step: 2 })),
    ] {
        let cfg = RnnConfig::new(I, H, O)
            .with_cell(cell)
            .with_layers(2)
            .with_dropout(0.3)
            .with_embedding(vocab);
        let p = cfg.init_params(5).to_f64();
        let l = lengths.as_deref();
        let r = widen(&uniform(3, T * B * O, 1.0));
        let loss = |p: &Params<Vec<f64>>| {
            let (_, f) = cpu::forward_tokens(&cfg, p, &ids, [T, B], None, l, key).unwrap();
            f.y.iter().zip(&r).map(|(y, r)| y * r).sum::<f64>()
        };
        let (x, fwd) = cpu::forward_tokens(&cfg, &p, &ids, [T, B], None, l, key).unwrap();
        let g = cpu::backward(&cfg, &p, &x, &fwd, &r, None).unwrap();
        for (idx, name) in p.names_for(&cfg).iter().enumerate() {
            let num = numeric(p.tensors()[idx], |w| {
                let mut q = p.clone();
                q.tensors_mut()[idx].copy_from_slice(w);
                loss(&q)
            });
            assert_grad(&format!("{cell:?} d{name}"), g.params.tensors()[idx], &num);
        }
        let table = g.params.embedding.as_ref().unwrap();
        assert!(table[2 * I..3 * I].iter().all(|&v| v == 0.0));
        assert!(table[3 * I..4 * I].iter().any(|&v| v != 0.0));
    }
}
