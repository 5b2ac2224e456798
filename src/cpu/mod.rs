//! The CPU reference: the equations of the README's cell table as plain loops in f64, with
//! no GPU or training types. Everything on the GPU is judged against this. Shapes are
//! row-major and time-major: x (T, B, I), y (T, B, O), states (L·D, B, H).
//!
//! Stacked and bidirectional models follow PyTorch: layer k > 0 reads the D·H outputs of
//! layer k−1 (forward direction's units first), the reverse direction runs from t = T down
//! to 1. With per-row `lengths` (right-padded batches, PyTorch's packed sequences), a
//! row's steps at t > length are skipped: the state is carried unchanged (so h_n is the
//! state at the row's own last step, and the reverse direction starts at t = length from
//! h0), the outputs and y there are zero, and dy there is ignored.
//!
//! Per cell the work splits as on the GPU: the input projection P = x W_ihᵀ + b_ih, per
//! step the recurrent product R = h_prev W_hhᵀ + b_hh, and the pointwise cell function of
//! [`cell`] on (P, R, h_prev, c_prev).

pub mod cell;

use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig, State};
use crate::shapes::{check_lengths, check_shape, numel};
use cell::{step_backward, step_forward, SAVED};

/// What one cell kept in [`forward`] for [`backward`].
#[derive(Debug, Clone)]
pub struct CellTrace {
    /// (T+1, B, H) states: a forward cell has h_0 at block 0 and h_t at block t, a
    /// reverse cell h_t at block t−1 and h_0 at block T.
    pub h: Vec<f64>,
    /// LSTM's cell states, in h's layout (empty for the other cells).
    pub c: Vec<f64>,
    /// (T, B, S·H) saved values of each step (see [`crate::model::CellKind::saved_slots`]), block t−1 for time t.
    pub saved: Vec<f64>,
}

/// What [`forward`] returns: everything [`backward`] needs.
#[derive(Debug, Clone)]
pub struct Forward {
    pub t: usize,
    pub b: usize,
    /// (T, B, O); zero past a row's length.
    pub y: Vec<f64>,
    /// Per cell, its states and saved values.
    pub cells: Vec<CellTrace>,
    /// Per layer, (T, B, D·H) outputs (zero past a row's length).
    pub out: Vec<Vec<f64>>,
    /// h_n (and c_n): each cell's state after its last step, (L·D, B, H).
    pub state: State<Vec<f64>>,
    pub lengths: Option<Vec<usize>>,
}

/// Gradients of the loss with respect to every parameter, x and the initial state.
#[derive(Debug, Clone)]
pub struct Grads {
    pub params: Params<Vec<f64>>,
    /// (T, B, I)
    pub dx: Vec<f64>,
    /// dL/dh0 (and dL/dc0), (L·D, B, H).
    pub d_init: State<Vec<f64>>,
}

/// n zeros, or an error instead of an aborted process when the host cannot hold them.
fn zeros(n: usize) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::TooLarge {
        what: "values the CPU reference needs at once",
        value: n as u64,
        limit: (isize::MAX as u64) / 8,
        why: "host memory; use a smaller batch, sequence or hidden size",
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Block of the state written at (0-based) time t, and of the one it reads.
fn blocks(reverse: bool, t: usize) -> (usize, usize) {
    if reverse {
        (t, t + 1)
    } else {
        (t + 1, t)
    }
}

/// The times a cell steps through in its forward order.
fn forward_times(reverse: bool, t_len: usize) -> Vec<usize> {
    if reverse {
        (0..t_len).rev().collect()
    } else {
        (0..t_len).collect()
    }
}

/// out[j] = bias[j] + Σ_k w[j, k] v[k] for a row-major w (out.len(), v.len()).
fn affine(out: &mut [f64], w: &[f64], v: &[f64], bias: Option<&Vec<f64>>) {
    let n = v.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = bias.map_or(0.0, |b| b[j]) + (0..n).map(|k| w[j * n + k] * v[k]).sum::<f64>();
    }
}

/// The forward pass. x is (T, B, I) given with its shape; `init` is h0 (and c0), (L·D,
/// B, H), or zeros; `lengths` are per-row lengths (see the module documentation).
pub fn forward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    init: Option<&State<Vec<f64>>>,
    lengths: Option<&[usize]>,
) -> Result<Forward> {
    cfg.validate()?;
    p.check_f64(cfg)?;
    let (t_len, b_len) = cfg.check_input(x_shape)?;
    check_shape(
        "x data",
        &[x.len()],
        &[numel(&[t_len, b_len, cfg.input_size])],
    )?;
    if let Some(l) = lengths {
        check_lengths(l, t_len, b_len)?;
    }
    if let Some(s) = init {
        cfg.check_host_state("initial state", s, b_len)?;
    }
    let valid = |t: usize, b: usize| lengths.is_none_or(|l| t < l[b]);
    let (nh, no, d, g) = (
        cfg.hidden_size,
        cfg.output_size,
        cfg.directions(),
        cfg.gates(),
    );
    let slots = cfg.cell.saved_slots();
    let lstm = cfg.cell.has_c();
    let block = b_len * nh;
    let mut traces = Vec::new();
    let mut outs: Vec<Vec<f64>> = Vec::new();
    let mut h_n = zeros(cfg.cells() * block)?;
    let mut c_n = zeros(if lstm { cfg.cells() * block } else { 0 })?;
    let (mut pre, mut rec) = (vec![0.0; g * nh], vec![0.0; g * nh]);
    for layer in 0..cfg.num_layers {
        let input: &[f64] = if layer == 0 { x } else { &outs[layer - 1] };
        let ni = cfg.layer_input_size(layer);
        let mut out = zeros(t_len * b_len * d * nh)?;
        for dir in 0..d {
            let c = layer * d + dir;
            let reverse = dir == 1;
            let pc = &p.cells[c];
            let mut tr = CellTrace {
                h: zeros((t_len + 1) * block)?,
                c: zeros(if lstm { (t_len + 1) * block } else { 0 })?,
                saved: zeros(t_len * b_len * slots * nh)?,
            };
            let first = if reverse { t_len } else { 0 };
            if let Some(s) = init {
                tr.h[first * block..][..block].copy_from_slice(&s.h[c * block..][..block]);
                if let Some(c0) = &s.c {
                    tr.c[first * block..][..block].copy_from_slice(&c0[c * block..][..block]);
                }
            }
            for t in forward_times(reverse, t_len) {
                let (cur, prev) = blocks(reverse, t);
                for b in 0..b_len {
                    let (cur, prev) = (cur * block + b * nh, prev * block + b * nh);
                    if !valid(t, b) {
                        tr.h.copy_within(prev..prev + nh, cur);
                        if lstm {
                            tr.c.copy_within(prev..prev + nh, cur);
                        }
                        continue;
                    }
                    let row = t * b_len + b;
                    affine(
                        &mut pre,
                        &pc.w_ih,
                        &input[row * ni..][..ni],
                        pc.b_ih.as_ref(),
                    );
                    let h_prev = tr.h[prev..prev + nh].to_vec();
                    affine(&mut rec, &pc.w_hh, &h_prev, pc.b_hh.as_ref());
                    for j in 0..nh {
                        let gate = |v: &[f64]| -> [f64; 4] {
                            std::array::from_fn(|k| if k < g { v[k * nh + j] } else { 0.0 })
                        };
                        let c_prev = if lstm { tr.c[prev + j] } else { 0.0 };
                        let u = step_forward(
                            cfg.cell,
                            cfg.activation,
                            &gate(&pre),
                            &gate(&rec),
                            h_prev[j],
                            c_prev,
                        );
                        tr.h[cur + j] = u.h;
                        if lstm {
                            tr.c[cur + j] = u.c;
                        }
                        for s in 0..slots {
                            tr.saved[(row * slots + s) * nh + j] = u.saved[s];
                        }
                        out[(row * d + dir) * nh + j] = u.h;
                    }
                }
            }
            let last = if reverse { 0 } else { t_len };
            h_n[c * block..][..block].copy_from_slice(&tr.h[last * block..][..block]);
            if lstm {
                c_n[c * block..][..block].copy_from_slice(&tr.c[last * block..][..block]);
            }
            traces.push(tr);
        }
        outs.push(out);
    }
    let top = outs.last().map(Vec::as_slice).unwrap_or(&[]);
    let dh = d * nh;
    let mut y = zeros(t_len * b_len * no)?;
    for row in 0..t_len * b_len {
        if valid(row / b_len, row % b_len) {
            affine(
                &mut y[row * no..][..no],
                &p.w_hy,
                &top[row * dh..][..dh],
                Some(&p.b_y),
            );
        }
    }
    Ok(Forward {
        t: t_len,
        b: b_len,
        y,
        cells: traces,
        out: outs,
        state: State {
            h: h_n,
            c: lstm.then_some(c_n),
        },
        lengths: lengths.map(<[usize]>::to_vec),
    })
}

/// Backpropagation through time for dL/dy (T, B, O), plus dL/dh_n (and dL/dc_n) if given.
/// Per cell, in the reverse of its forward order, each step takes as dh the sum of
/// dL/d(its output) and what flowed back from the step after it, and the cell's
/// [`cell::step_backward`] gives dP and dR; then dW_ih += dPᵀ in, db_ih += dP, dW_hh += dRᵀ h_prev, db_hh += dR,
/// d in += dP W_ih, and dh_prev = dR W_hh (+ GRU's direct part); dL/dh0 (dc0) is what
/// flows out of the first step. Skipped steps (past a row's length) pass dh and dc
/// through unchanged.
pub fn backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    fwd: &Forward,
    dy: &[f64],
    d_final: Option<&State<Vec<f64>>>,
) -> Result<Grads> {
    let (t_len, b_len) = (fwd.t, fwd.b);
    let (nh, no, d, g) = (
        cfg.hidden_size,
        cfg.output_size,
        cfg.directions(),
        cfg.gates(),
    );
    cfg.validate()?;
    p.check_f64(cfg)?;
    // `fwd` must come from `forward` with this config and x.
    check_shape(
        "x data",
        &[x.len()],
        &[numel(&[t_len, b_len, cfg.input_size])],
    )?;
    let block = b_len * nh;
    let slots = cfg.cell.saved_slots();
    let lstm = cfg.cell.has_c();
    let fits = fwd.cells.len() == cfg.cells()
        && fwd.out.len() == cfg.num_layers
        && fwd.cells.iter().all(|c| {
            c.h.len() == (t_len + 1) * block
                && c.c.len() == if lstm { (t_len + 1) * block } else { 0 }
                && c.saved.len() == t_len * b_len * slots * nh
        })
        && fwd.out.iter().all(|o| o.len() == t_len * b_len * d * nh)
        && fwd
            .lengths
            .as_ref()
            .is_none_or(|l| check_lengths(l, t_len, b_len).is_ok());
    if !fits {
        return Err(Error::Shape {
            what: "forward state",
            expected: "the result of cpu::forward with this config and x".into(),
            got: vec![fwd.t, fwd.b, fwd.cells.len(), fwd.out.len()],
        });
    }
    check_shape("dy data", &[dy.len()], &[t_len * b_len * no])?;
    if let Some(s) = d_final {
        cfg.check_host_state("gradient of the final state", s, b_len)?;
    }
    let lengths = fwd.lengths.as_deref();
    let valid = |t: usize, b: usize| lengths.is_none_or(|l| t < l[b]);
    let mut gr = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
    let dhd = d * nh;
    // dL/d(outputs of the current layer), (T, B, D·H)
    let mut d_out = zeros(t_len * b_len * dhd)?;
    let top = &fwd.out[cfg.num_layers - 1];
    for row in 0..t_len * b_len {
        if !valid(row / b_len, row % b_len) {
            continue;
        }
        for o in 0..no {
            let dyv = dy[row * no + o];
            gr.b_y[o] += dyv;
            for k in 0..dhd {
                gr.w_hy[o * dhd + k] += dyv * top[row * dhd + k];
                d_out[row * dhd + k] += p.w_hy[o * dhd + k] * dyv;
            }
        }
    }
    let mut d_init = State {
        h: zeros(cfg.cells() * block)?,
        c: lstm.then(|| vec![0.0; cfg.cells() * block]),
    };
    let mut dx = Vec::new();
    let (mut dp, mut dr) = (vec![0.0; g * nh], vec![0.0; g * nh]);
    for layer in (0..cfg.num_layers).rev() {
        let input: &[f64] = if layer == 0 { x } else { &fwd.out[layer - 1] };
        let ni = cfg.layer_input_size(layer);
        let mut d_in = zeros(t_len * b_len * ni)?;
        for dir in 0..d {
            let c = layer * d + dir;
            let reverse = dir == 1;
            let (pc, tr) = (&p.cells[c], &fwd.cells[c]);
            let gc = &mut gr.cells[c];
            // dL/dh and dL/dc flowing into the state the next step (in backward order)
            // wrote: dL/dh_n and dL/dc_n at first.
            let mut carry_h = vec![0.0; block];
            let mut carry_c = vec![0.0; block];
            if let Some(s) = d_final {
                carry_h.copy_from_slice(&s.h[c * block..][..block]);
                if let Some(dc) = &s.c {
                    carry_c.copy_from_slice(&dc[c * block..][..block]);
                }
            }
            for t in forward_times(reverse, t_len).into_iter().rev() {
                let (cur, prev) = blocks(reverse, t);
                for b in 0..b_len {
                    if !valid(t, b) {
                        continue;
                    }
                    let row = t * b_len + b;
                    let (cur, prev) = (cur * block + b * nh, prev * block + b * nh);
                    let mut dh_direct = vec![0.0; nh];
                    for j in 0..nh {
                        let dh = carry_h[b * nh + j] + d_out[row * dhd + dir * nh + j];
                        let saved: [f64; SAVED] = std::array::from_fn(|s| {
                            if s < slots {
                                tr.saved[(row * slots + s) * nh + j]
                            } else {
                                0.0
                            }
                        });
                        let (c_prev, c_cur) = if lstm {
                            (tr.c[prev + j], tr.c[cur + j])
                        } else {
                            (0.0, 0.0)
                        };
                        let u = step_backward(
                            cfg.cell,
                            cfg.activation,
                            dh,
                            carry_c[b * nh + j],
                            &saved,
                            tr.h[cur + j],
                            tr.h[prev + j],
                            c_prev,
                            c_cur,
                        );
                        for k in 0..g {
                            dp[k * nh + j] = u.dp[k];
                            dr[k * nh + j] = u.dr[k];
                        }
                        dh_direct[j] = u.dh_prev;
                        carry_c[b * nh + j] = u.dc_prev;
                    }
                    let x_tb = &input[row * ni..][..ni];
                    let h_prev = &tr.h[prev..prev + nh];
                    let carry_b = &mut carry_h[b * nh..][..nh];
                    carry_b.copy_from_slice(&dh_direct);
                    for j in 0..g * nh {
                        if let Some(bi) = &mut gc.b_ih {
                            bi[j] += dp[j];
                        }
                        if let Some(bh) = &mut gc.b_hh {
                            bh[j] += dr[j];
                        }
                        for k in 0..ni {
                            gc.w_ih[j * ni + k] += dp[j] * x_tb[k];
                            d_in[row * ni + k] += pc.w_ih[j * ni + k] * dp[j];
                        }
                        for k in 0..nh {
                            gc.w_hh[j * nh + k] += dr[j] * h_prev[k];
                            carry_b[k] += pc.w_hh[j * nh + k] * dr[j];
                        }
                    }
                }
            }
            d_init.h[c * block..][..block].copy_from_slice(&carry_h);
            if let Some(dc) = &mut d_init.c {
                dc[c * block..][..block].copy_from_slice(&carry_c);
            }
        }
        if layer == 0 {
            dx = d_in;
        } else {
            d_out = d_in;
        }
    }
    Ok(Grads {
        params: gr,
        dx,
        d_init,
    })
}

/// Softmax cross-entropy over rows of y (rows, cols): returns (`Σ_r s·w_r·(lse_r − y_r[c_r])`,
/// dL/dy) with s the normaliser (1 / Σ w for a mean).
pub fn softmax_xent(y: &[f64], cols: usize, classes: &[u32], w: &[f64], s: f64) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut dy = vec![0.0; y.len()];
    for (r, row) in y.chunks(cols).enumerate() {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let c = classes[r] as usize;
        let wr = s * w[r];
        loss += wr * (m + z.ln() - row[c]);
        for j in 0..cols {
            let q = (row[j] - m).exp() / z;
            dy[r * cols + j] = wr * (q - if j == c { 1.0 } else { 0.0 });
        }
    }
    (loss, dy)
}

/// Squared error over rows of y (rows, cols): returns (Σ_r s·w_r·Σ_j (y − target)², dL/dy)
/// with s the normaliser (1 / (Σ w · cols) for a mean).
pub fn mse(y: &[f64], cols: usize, target: &[f64], w: &[f64], s: f64) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut dy = vec![0.0; y.len()];
    for (k, (yv, tv)) in y.iter().zip(target).enumerate() {
        let wr = s * w[k / cols];
        let d = yv - tv;
        loss += wr * d * d;
        dy[k] = 2.0 * wr * d;
    }
    (loss, dy)
}
