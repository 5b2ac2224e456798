//! The CPU reference: the equations of DESIGN.md as plain loops in f64, with no GPU types.
//! Everything on the GPU is judged against this. Shapes are row-major and time-major:
//! x (T, B, I), y (T, B, O), h0 and h_n (L·D, B, H).
//!
//! Stacked and bidirectional models follow `torch.nn.RNN`: layer k > 0 reads the D·H
//! outputs of layer k−1 (forward direction's units first), the reverse direction runs from
//! t = T down to 1. With per-row `lengths` (right-padded batches, PyTorch's packed
//! sequences), a row's steps at t > length are skipped: the state is carried unchanged
//! (so h_n is the state at the row's own last step, and the reverse direction starts at
//! t = length from h0), the outputs and y there are zero, and dy there is ignored.

use crate::error::{Error, Result};
use crate::model::{check_shape, Activation, Cell, Params, RnnConfig};

/// What [`forward`] returns: everything [`backward`] needs.
#[derive(Debug, Clone)]
pub struct Forward {
    pub t: usize,
    pub b: usize,
    /// (T, B, O); zero past a row's length.
    pub y: Vec<f64>,
    /// Per cell, (T+1, B, H) states: a forward cell has h_0 at block 0 and h_t at block t,
    /// a reverse cell h_t at block t−1 and h_0 at block T.
    pub h: Vec<Vec<f64>>,
    /// Per layer, (T, B, D·H) outputs (zero past a row's length).
    pub out: Vec<Vec<f64>>,
    /// (L·D, B, H)
    pub h_n: Vec<f64>,
    pub lengths: Option<Vec<usize>>,
}

impl Forward {
    /// h_n (L·D, B, H): each cell's state after its last step.
    pub fn h_last(&self) -> &[f64] {
        &self.h_n
    }
}

/// Gradients of the loss with respect to every parameter, x and h_0.
#[derive(Debug, Clone)]
pub struct Grads {
    pub params: Params<Vec<f64>>,
    /// (T, B, I)
    pub dx: Vec<f64>,
    /// (L·D, B, H)
    pub dh0: Vec<f64>,
}

fn act(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Tanh => v.tanh(),
        Activation::Relu => v.max(0.0),
    }
}

/// act'(a) written in terms of h = act(a).
fn act_grad(a: Activation, h: f64) -> f64 {
    match a {
        Activation::Tanh => 1.0 - h * h,
        Activation::Relu => {
            if h > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// Checks per-row lengths: B of them, each in 1..=T.
pub fn check_lengths(lengths: &[usize], t: usize, b: usize) -> Result<()> {
    check_shape("lengths", &[lengths.len()], &[b])?;
    match lengths.iter().position(|&l| l == 0 || l > t) {
        Some(r) => Err(Error::BadLength {
            row: r,
            length: lengths[r],
            steps: t,
        }),
        None => Ok(()),
    }
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

/// The forward pass, all rows of full length T. x is (T, B, I) given with its shape;
/// h0 is (L·D, B, H) or zeros.
pub fn forward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    h0: Option<&[f64]>,
) -> Result<Forward> {
    forward_with_lengths(cfg, p, x, x_shape, h0, None)
}

/// The forward pass with optional per-row lengths (see the module documentation).
pub fn forward_with_lengths(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    h0: Option<&[f64]>,
    lengths: Option<&[usize]>,
) -> Result<Forward> {
    cfg.validate()?;
    p.check_f64(cfg)?;
    let (t_len, b_len) = cfg.check_input(x_shape)?;
    check_shape(
        "x data",
        &[x.len()],
        &[crate::gpu::numel(&[t_len, b_len, cfg.input_size])],
    )?;
    if let Some(l) = lengths {
        check_lengths(l, t_len, b_len)?;
    }
    let valid = |t: usize, b: usize| lengths.is_none_or(|l| t < l[b]);
    let (nh, no, d) = (cfg.hidden_size, cfg.output_size, cfg.directions());
    let block = b_len * nh;
    if let Some(h0) = h0 {
        check_shape("h0 data", &[h0.len()], &[cfg.cells() * block])?;
    }
    let mut hs_all = Vec::new();
    let mut outs: Vec<Vec<f64>> = Vec::new();
    let mut h_n = zeros(cfg.cells() * block)?;
    for layer in 0..cfg.num_layers {
        let input: &[f64] = if layer == 0 { x } else { &outs[layer - 1] };
        let ni = cfg.layer_input_size(layer);
        let mut out = zeros(t_len * b_len * d * nh)?;
        for dir in 0..d {
            let c = layer * d + dir;
            let reverse = dir == 1;
            let Cell { w_ih, w_hh, b_h } = &p.cells[c];
            let mut h = zeros((t_len + 1) * block)?;
            let init = if reverse { t_len } else { 0 };
            if let Some(h0) = h0 {
                h[init * block..][..block].copy_from_slice(&h0[c * block..][..block]);
            }
            let times: Vec<usize> = if reverse {
                (0..t_len).rev().collect()
            } else {
                (0..t_len).collect()
            };
            for t in times {
                let (cur, prev) = blocks(reverse, t);
                for b in 0..b_len {
                    let (cur, prev) = (cur * block + b * nh, prev * block + b * nh);
                    if !valid(t, b) {
                        h.copy_within(prev..prev + nh, cur);
                        continue;
                    }
                    let x_tb = &input[(t * b_len + b) * ni..][..ni];
                    for j in 0..nh {
                        let mut a = b_h[j];
                        for k in 0..ni {
                            a += w_ih[j * ni + k] * x_tb[k];
                        }
                        for k in 0..nh {
                            a += w_hh[j * nh + k] * h[prev + k];
                        }
                        let v = act(cfg.activation, a);
                        h[cur + j] = v;
                        out[(t * b_len + b) * d * nh + dir * nh + j] = v;
                    }
                }
            }
            let last = if reverse { 0 } else { t_len };
            h_n[c * block..][..block].copy_from_slice(&h[last * block..][..block]);
            hs_all.push(h);
        }
        outs.push(out);
    }
    let top = outs.last().map(Vec::as_slice).unwrap_or(&[]);
    let dh = d * nh;
    let mut y = zeros(t_len * b_len * no)?;
    for t in 0..t_len {
        for b in 0..b_len {
            if !valid(t, b) {
                continue;
            }
            let row = t * b_len + b;
            for o in 0..no {
                let mut v = p.b_y[o];
                for k in 0..dh {
                    v += p.w_hy[o * dh + k] * top[row * dh + k];
                }
                y[row * no + o] = v;
            }
        }
    }
    Ok(Forward {
        t: t_len,
        b: b_len,
        y,
        h: hs_all,
        out: outs,
        h_n,
        lengths: lengths.map(<[usize]>::to_vec),
    })
}

/// Backpropagation through time for dL/dy (T, B, O), plus dL/dh_n (L·D, B, H) if given.
/// Per cell, in the reverse of its forward order:
///   dh_t = (dL/d out_t) + W_hhᵀ dz of the step that read h_t,  dz_t = dh_t ⊙ act'(a_t),
///   dW_ih += dz_t in_tᵀ, dW_hh += dz_t h_prevᵀ, db_h += dz_t, d in_t += W_ihᵀ dz_t;
///   dW_hy = Σ dy_t out_tᵀ, db_y = Σ dy_t; dh_0 is what flows out of the first step.
/// Skipped steps (past a row's length) pass dh through unchanged.
pub fn backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    fwd: &Forward,
    dy: &[f64],
    dh_last: Option<&[f64]>,
) -> Result<Grads> {
    let (t_len, b_len) = (fwd.t, fwd.b);
    let (nh, no, d) = (cfg.hidden_size, cfg.output_size, cfg.directions());
    cfg.validate()?;
    p.check_f64(cfg)?;
    // `fwd` must come from `forward` with this config and x.
    check_shape(
        "x data",
        &[x.len()],
        &[crate::gpu::numel(&[t_len, b_len, cfg.input_size])],
    )?;
    let block = b_len * nh;
    let fits = fwd.h.len() == cfg.cells()
        && fwd.out.len() == cfg.num_layers
        && fwd.h.iter().all(|h| h.len() == (t_len + 1) * block)
        && fwd.out.iter().all(|o| o.len() == t_len * b_len * d * nh)
        && fwd.h_n.len() == cfg.cells() * block
        && fwd
            .lengths
            .as_ref()
            .is_none_or(|l| check_lengths(l, t_len, b_len).is_ok());
    if !fits {
        return Err(Error::Shape {
            what: "forward state",
            expected: "the result of cpu::forward with this config and x".into(),
            got: vec![fwd.t, fwd.b, fwd.h.len(), fwd.out.len()],
        });
    }
    check_shape("dy data", &[dy.len()], &[t_len * b_len * no])?;
    if let Some(dh) = dh_last {
        check_shape("dh_last data", &[dh.len()], &[cfg.cells() * block])?;
    }
    let lengths = fwd.lengths.as_deref();
    let valid = |t: usize, b: usize| lengths.is_none_or(|l| t < l[b]);
    let mut g = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
    let dhd = d * nh;
    // dL/d(outputs of the current layer), (T, B, D·H)
    let mut d_out = zeros(t_len * b_len * dhd)?;
    let top = &fwd.out[cfg.num_layers - 1];
    for t in 0..t_len {
        for b in 0..b_len {
            if !valid(t, b) {
                continue;
            }
            let row = t * b_len + b;
            for o in 0..no {
                let dyv = dy[row * no + o];
                g.b_y[o] += dyv;
                for k in 0..dhd {
                    g.w_hy[o * dhd + k] += dyv * top[row * dhd + k];
                    d_out[row * dhd + k] += p.w_hy[o * dhd + k] * dyv;
                }
            }
        }
    }
    let mut dh0 = vec![0.0; cfg.cells() * block];
    let mut dx = Vec::new();
    for layer in (0..cfg.num_layers).rev() {
        let input: &[f64] = if layer == 0 { x } else { &fwd.out[layer - 1] };
        let ni = cfg.layer_input_size(layer);
        let mut d_in = zeros(t_len * b_len * ni)?;
        for dir in 0..d {
            let c = layer * d + dir;
            let reverse = dir == 1;
            let (pc, h) = (&p.cells[c], &fwd.h[c]);
            let gc = &mut g.cells[c];
            let mut carry = vec![0.0; block];
            if let Some(dh) = dh_last {
                carry.copy_from_slice(&dh[c * block..][..block]);
            }
            let times: Vec<usize> = if reverse {
                (0..t_len).collect()
            } else {
                (0..t_len).rev().collect()
            };
            let mut dz = vec![0.0; nh];
            for t in times {
                let (cur, prev) = blocks(reverse, t);
                for b in 0..b_len {
                    if !valid(t, b) {
                        continue;
                    }
                    let row = t * b_len + b;
                    let h_cur = &h[cur * block + b * nh..][..nh];
                    let h_prev = &h[prev * block + b * nh..][..nh];
                    let carry_b = &mut carry[b * nh..][..nh];
                    for j in 0..nh {
                        let dh = carry_b[j] + d_out[row * dhd + dir * nh + j];
                        dz[j] = dh * act_grad(cfg.activation, h_cur[j]);
                    }
                    carry_b.iter_mut().for_each(|v| *v = 0.0);
                    let x_tb = &input[row * ni..][..ni];
                    for j in 0..nh {
                        gc.b_h[j] += dz[j];
                        for k in 0..ni {
                            gc.w_ih[j * ni + k] += dz[j] * x_tb[k];
                            d_in[row * ni + k] += pc.w_ih[j * ni + k] * dz[j];
                        }
                        for k in 0..nh {
                            gc.w_hh[j * nh + k] += dz[j] * h_prev[k];
                            carry_b[k] += pc.w_hh[j * nh + k] * dz[j];
                        }
                    }
                }
            }
            dh0[c * block..][..block].copy_from_slice(&carry);
        }
        if layer == 0 {
            dx = d_in;
        } else {
            d_out = d_in;
        }
    }
    Ok(Grads { params: g, dx, dh0 })
}

/// Softmax cross-entropy over rows of y (rows, cols): returns (Σ_r s·w_r·(lse_r − y_r[c_r]),
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

/// Optimizer state: first and second moments (or momentum buffer / Adagrad sums).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState {
    pub m: Params<Vec<f64>>,
    pub v: Params<Vec<f64>>,
}

impl OptimState {
    pub fn zeros(cfg: &RnnConfig) -> Self {
        let z = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
        OptimState { m: z.clone(), v: z }
    }
}

/// Clips gradients (global norm, then value) and applies the `step`-th update (1-based).
/// Returns the global norm before clipping; a non-finite norm leaves everything unchanged.
pub fn clip_and_update(
    p: &mut Params<Vec<f64>>,
    g: &Params<Vec<f64>>,
    state: &mut OptimState,
    cfg: &crate::train::TrainConfig,
    step: u64,
) -> f64 {
    use crate::train::OptimizerKind;
    let norm = g
        .tensors()
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    if !norm.is_finite() {
        return norm;
    }
    let o = &cfg.optimizer;
    let (lr, b1, b2, eps) = (o.lr as f64, o.beta1 as f64, o.beta2 as f64, o.eps as f64);
    let (mu, wd) = (o.momentum as f64, o.weight_decay as f64);
    let scale = match cfg.clip_norm {
        Some(c) if norm > c as f64 => c as f64 / (norm + 1e-6),
        _ => 1.0,
    };
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2 = 1.0 - b2.powi(step as i32);
    let params = p.tensors_mut();
    let ms = state.m.tensors_mut();
    let vs = state.v.tensors_mut();
    for (((w, gv), m), v) in params.into_iter().zip(g.tensors()).zip(ms).zip(vs) {
        for i in 0..w.len() {
            let mut gi = gv[i] * scale;
            if let Some(c) = cfg.clip_value {
                gi = gi.clamp(-(c as f64), c as f64);
            }
            match o.kind {
                OptimizerKind::Sgd => {
                    gi += wd * w[i];
                    if mu > 0.0 {
                        m[i] = mu * m[i] + gi;
                        gi = m[i];
                    }
                    w[i] -= lr * gi;
                }
                OptimizerKind::Adam => {
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    let step = (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
                    w[i] -= lr * (step + wd * w[i]);
                }
                OptimizerKind::Adagrad => {
                    v[i] += gi * gi;
                    w[i] -= lr * gi / (v[i].sqrt() + eps);
                }
            }
        }
    }
    norm
}
