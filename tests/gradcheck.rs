//! Finite-difference check of the CPU reference's backward pass, entirely in f64.
//! The loss is L = Σ r ⊙ y + Σ s ⊙ h_T with fixed random r, s, so dL/dy = r, dL/dh_T = s.

mod common;

use common::{uniform, widen};
use wgpu_rnn::{cpu, Activation, Params, RnnConfig};

const T: usize = 4;
const B: usize = 2;
const I: usize = 3;
const H: usize = 5;
const O: usize = 2;

struct Problem {
    cfg: RnnConfig,
    x: Vec<f64>,
    h0: Vec<f64>,
    r: Vec<f64>,
    s: Vec<f64>,
}

impl Problem {
    fn loss(&self, p: &Params<Vec<f64>>, x: &[f64], h0: &[f64]) -> f64 {
        let f = cpu::forward(&self.cfg, p, x, &[T, B, I], Some(h0)).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        dot(&f.y, &self.r) + dot(f.h_last(), &self.s)
    }
}

/// Central differences for each element of `v`, via `set` which rebuilds the loss.
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
    for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let rel = (a - n).abs() / (a.abs() + n.abs()).max(1e-3);
        assert!(
            rel < 1e-6,
            "{what}[{k}]: analytic {a:.12} vs numeric {n:.12}, relative error {rel:.2e}"
        );
    }
}

fn gradcheck(act: Activation) {
    let cfg = RnnConfig::new(I, H, O).with_activation(act);
    let p = cfg.init_params(11).to_f64();
    // Larger weights than the default so relu units are not all in one regime.
    let p = p.map(|v| v.iter().map(|w| w * 2.0).collect::<Vec<_>>());
    let prob = Problem {
        x: widen(&uniform(1, T * B * I, 1.0)),
        h0: widen(&uniform(2, B * H, 0.5)),
        r: widen(&uniform(3, T * B * O, 1.0)),
        s: widen(&uniform(4, B * H, 1.0)),
        cfg,
    };
    let fwd = cpu::forward(&prob.cfg, &p, &prob.x, &[T, B, I], Some(&prob.h0)).unwrap();
    let g = cpu::backward(&prob.cfg, &p, &prob.x, &fwd, &prob.r, Some(&prob.s)).unwrap();

    for (idx, name) in Params::<()>::NAMES.iter().enumerate() {
        let num = numeric(p.as_array()[idx], |w| {
            let mut q = p.clone();
            let slots = [
                &mut q.w_xh,
                &mut q.w_hh,
                &mut q.b_h,
                &mut q.w_hy,
                &mut q.b_y,
            ];
            slots.into_iter().nth(idx).unwrap().copy_from_slice(w);
            prob.loss(&q, &prob.x, &prob.h0)
        });
        assert_grad(&format!("{act:?} d{name}"), g.params.as_array()[idx], &num);
    }
    let num = numeric(&prob.x, |x| prob.loss(&p, x, &prob.h0));
    assert_grad(&format!("{act:?} dx"), &g.dx, &num);
    let num = numeric(&prob.h0, |h0| prob.loss(&p, &prob.x, h0));
    assert_grad(&format!("{act:?} dh0"), &g.dh0, &num);
}

#[test]
fn cpu_backward_matches_finite_differences_tanh() {
    gradcheck(Activation::Tanh);
}

#[test]
fn cpu_backward_matches_finite_differences_relu() {
    gradcheck(Activation::Relu);
}
