//! The cells' pointwise math, one unit at a time, in f64: the reference for the WGSL pair
//! in shaders/cell.wgsl. A unit j of a step sees its G gate pre-activations split as
//! `p[g] = (W_ih x + b_ih)[g·H + j]` and `r[g] = (W_hh h_prev + b_hh)[g·H + j]`.

use crate::model::{Activation, CellKind};

pub use crate::model::SAVED;

/// One unit's step forward: its new h and c and what backward needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitForward {
    pub h: f64,
    /// LSTM's new cell state (0 for the other cells).
    pub c: f64,
    pub saved: [f64; SAVED],
}

/// One unit's step backward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitBackward {
    /// dL/dp per gate (the input projection's pre-activation).
    pub dp: [f64; 4],
    /// dL/dr per gate (the recurrent product's pre-activation): dp, except GRU's n gate,
    /// where dr = dp ⊙ r.
    pub dr: [f64; 4],
    /// The part of dL/dh_prev that does not go through W_hh: GRU's z ⊙ dh.
    pub dh_prev: f64,
    /// dL/dc_prev (LSTM).
    pub dc_prev: f64,
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// h' and c' of one unit from its gate pre-activations, previous h and c.
pub fn step_forward(
    cell: CellKind,
    act: Activation,
    p: &[f64; 4],
    r: &[f64; 4],
    h_prev: f64,
    c_prev: f64,
) -> UnitForward {
    match cell {
        CellKind::Rnn => {
            let a = p[0] + r[0];
            let h = match act {
                Activation::Tanh => a.tanh(),
                Activation::Relu => a.max(0.0),
            };
            UnitForward {
                h,
                c: 0.0,
                saved: [0.0; SAVED],
            }
        }
        CellKind::Lstm => {
            let i = sigmoid(p[0] + r[0]);
            let f = sigmoid(p[1] + r[1]);
            let g = (p[2] + r[2]).tanh();
            let o = sigmoid(p[3] + r[3]);
            let c = f * c_prev + i * g;
            UnitForward {
                h: o * c.tanh(),
                c,
                saved: [i, f, g, o],
            }
        }
        CellKind::Gru => {
            let rg = sigmoid(p[0] + r[0]);
            let z = sigmoid(p[1] + r[1]);
            let n = (p[2] + rg * r[2]).tanh();
            UnitForward {
                h: (1.0 - z) * n + z * h_prev,
                c: 0.0,
                saved: [rg, z, n, r[2]],
            }
        }
    }
}

/// Gradients of one unit's step from dL/dh' and dL/dc' (c' only for LSTM). `h` and `c`
/// are the step's outputs, `h_prev` and `c_prev` its inputs.
#[allow(clippy::too_many_arguments)]
pub fn step_backward(
    cell: CellKind,
    act: Activation,
    dh: f64,
    dc: f64,
    saved: &[f64; SAVED],
    h: f64,
    h_prev: f64,
    c_prev: f64,
    c: f64,
) -> UnitBackward {
    let mut out = UnitBackward {
        dp: [0.0; 4],
        dr: [0.0; 4],
        dh_prev: 0.0,
        dc_prev: 0.0,
    };
    match cell {
        CellKind::Rnn => {
            let da = dh
                * match act {
                    Activation::Tanh => 1.0 - h * h,
                    Activation::Relu => (h > 0.0) as u8 as f64,
                };
            out.dp[0] = da;
        }
        CellKind::Lstm => {
            let [i, f, g, o] = *saved;
            let tc = c.tanh();
            let dc = dc + dh * o * (1.0 - tc * tc);
            out.dp = [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ];
            out.dc_prev = dc * f;
        }
        CellKind::Gru => {
            let [r, z, n, hn] = *saved;
            let dn = dh * (1.0 - z) * (1.0 - n * n);
            out.dp = [
                dn * hn * r * (1.0 - r),
                dh * (h_prev - n) * z * (1.0 - z),
                dn,
                0.0,
            ];
            out.dr = out.dp;
            out.dr[2] = dn * r;
            out.dh_prev = dh * z;
            return out;
        }
    }
    out.dr = out.dp;
    out
}
