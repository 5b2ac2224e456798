//! The CPU reference: the equations of DESIGN.md as plain loops in f64, with no GPU types.
//! Everything on the GPU is judged against this. Shapes are row-major and time-major:
//! x (T, B, I), h (T+1, B, H) with h_0 at index 0, y (T, B, O).

use crate::error::Result;
use crate::model::{check_shape, Activation, Params, RnnConfig};

/// What [`forward`] returns: everything [`backward`] needs.
#[derive(Debug, Clone)]
pub struct Forward {
    pub t: usize,
    pub b: usize,
    /// (T, B, O)
    pub y: Vec<f64>,
    /// (T+1, B, H), h_0 first.
    pub h: Vec<f64>,
}

impl Forward {
    /// h_T (B, H).
    pub fn h_last(&self) -> &[f64] {
        let n = self.h.len() / (self.t + 1);
        &self.h[self.t * n..]
    }
}

/// Gradients of the loss with respect to every parameter, x and h_0.
#[derive(Debug, Clone)]
pub struct Grads {
    pub params: Params<Vec<f64>>,
    /// (T, B, I)
    pub dx: Vec<f64>,
    /// (B, H)
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

/// h_t = act(W_xh x_t + b_h + W_hh h_{t-1}), y_t = W_hy h_t + b_y.
/// x is (T, B, I) given with its shape; h0 is (B, H) or zeros.
pub fn forward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    h0: Option<&[f64]>,
) -> Result<Forward> {
    let (t_len, b_len) = cfg.check_input(x_shape)?;
    check_shape("x data", &[x.len()], &[t_len * b_len * cfg.input_size])?;
    let (ni, nh, no) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
    let mut h = vec![0.0; (t_len + 1) * b_len * nh];
    if let Some(h0) = h0 {
        check_shape("h0 data", &[h0.len()], &[b_len * nh])?;
        h[..b_len * nh].copy_from_slice(h0);
    }
    let mut y = vec![0.0; t_len * b_len * no];
    for t in 0..t_len {
        for b in 0..b_len {
            let x_tb = &x[(t * b_len + b) * ni..][..ni];
            let prev = (t * b_len + b) * nh;
            let cur = ((t + 1) * b_len + b) * nh;
            for j in 0..nh {
                let mut a = p.b_h[j];
                for k in 0..ni {
                    a += p.w_xh[j * ni + k] * x_tb[k];
                }
                for k in 0..nh {
                    a += p.w_hh[j * nh + k] * h[prev + k];
                }
                h[cur + j] = act(cfg.activation, a);
            }
            for o in 0..no {
                let mut v = p.b_y[o];
                for k in 0..nh {
                    v += p.w_hy[o * nh + k] * h[cur + k];
                }
                y[(t * b_len + b) * no + o] = v;
            }
        }
    }
    Ok(Forward {
        t: t_len,
        b: b_len,
        y,
        h,
    })
}

/// Backpropagation through time for dL/dy (T, B, O) and optionally dL/dh_T (B, H):
///   dh_t = W_hyᵀ dy_t + W_hhᵀ dz_{t+1},  dz_t = dh_t ⊙ act'(a_t),
///   dW_xh = Σ dz_t x_tᵀ, dW_hh = Σ dz_t h_{t-1}ᵀ, db_h = Σ dz_t,
///   dW_hy = Σ dy_t h_tᵀ, db_y = Σ dy_t, dx_t = W_xhᵀ dz_t, dh_0 = W_hhᵀ dz_1.
pub fn backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    fwd: &Forward,
    dy: &[f64],
    dh_last: Option<&[f64]>,
) -> Result<Grads> {
    let (t_len, b_len) = (fwd.t, fwd.b);
    let (ni, nh, no) = (cfg.input_size, cfg.hidden_size, cfg.output_size);
    check_shape("dy data", &[dy.len()], &[t_len * b_len * no])?;
    let mut g = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
    let mut dx = vec![0.0; t_len * b_len * ni];
    // dh carried backwards: W_hhᵀ dz_{t+1}, starting from dL/dh_T.
    let mut carry = vec![0.0; b_len * nh];
    if let Some(d) = dh_last {
        check_shape("dh_last data", &[d.len()], &[b_len * nh])?;
        carry.copy_from_slice(d);
    }
    let mut dz = vec![0.0; nh];
    for t in (0..t_len).rev() {
        let mut next_carry = vec![0.0; b_len * nh];
        for b in 0..b_len {
            let row = t * b_len + b;
            let h_cur = &fwd.h[((t + 1) * b_len + b) * nh..][..nh];
            let h_prev = &fwd.h[(t * b_len + b) * nh..][..nh];
            let dy_tb = &dy[row * no..][..no];
            for o in 0..no {
                g.b_y[o] += dy_tb[o];
                for k in 0..nh {
                    g.w_hy[o * nh + k] += dy_tb[o] * h_cur[k];
                }
            }
            for j in 0..nh {
                let mut dh = carry[b * nh + j];
                for o in 0..no {
                    dh += p.w_hy[o * nh + j] * dy_tb[o];
                }
                dz[j] = dh * act_grad(cfg.activation, h_cur[j]);
            }
            let x_tb = &x[row * ni..][..ni];
            for j in 0..nh {
                g.b_h[j] += dz[j];
                for k in 0..ni {
                    g.w_xh[j * ni + k] += dz[j] * x_tb[k];
                    dx[row * ni + k] += p.w_xh[j * ni + k] * dz[j];
                }
                for k in 0..nh {
                    g.w_hh[j * nh + k] += dz[j] * h_prev[k];
                    next_carry[b * nh + k] += p.w_hh[j * nh + k] * dz[j];
                }
            }
        }
        carry = next_carry;
    }
    Ok(Grads {
        params: g,
        dx,
        dh0: carry,
    })
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
        .as_array()
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
    let params = [
        &mut p.w_xh,
        &mut p.w_hh,
        &mut p.b_h,
        &mut p.w_hy,
        &mut p.b_y,
    ];
    let ms = [
        &mut state.m.w_xh,
        &mut state.m.w_hh,
        &mut state.m.b_h,
        &mut state.m.w_hy,
        &mut state.m.b_y,
    ];
    let vs = [
        &mut state.v.w_xh,
        &mut state.v.w_hh,
        &mut state.v.b_h,
        &mut state.v.w_hy,
        &mut state.v.b_y,
    ];
    for (((w, gv), m), v) in params.into_iter().zip(g.as_array()).zip(ms).zip(vs) {
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
