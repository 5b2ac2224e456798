//! The CPU reference: the equations of the README's cell table as plain loops in f64, with
//! no GPU or training types. Everything on the GPU is judged against this. Shapes are
//! row-major and time-major: x (T, B, I), y (T, B, O), states (L·D, B, H); a row is one
//! (t, b) of the T·B rows, t-major.
//!
//! Stacked and bidirectional models follow PyTorch: layer k > 0 reads the D·H outputs of
//! layer k−1 (forward direction's units first), the reverse direction runs from t = T down
//! to 1. With per-row `lengths` (right-padded batches, PyTorch's packed sequences), a
//! row's steps at t > length are skipped: the state is carried unchanged (so h_n is the
//! state at the row's own last step, and the reverse direction starts at t = length from
//! h0), the outputs and y there are zero, and dy there is ignored.
//!
//! The model is a list of forward/backward pairs, as on the GPU (model/plan.rs): per cell
//! the input projection P = in W_ihᵀ + b_ih over all rows, then the recurrence (per step
//! R = h_prev W_hhᵀ + b_hh and the pointwise cell function of [`cell`] on (P, R, h_prev,
//! c_prev)); then the head. [`forward`] runs them in order, [`backward`] in reverse.

// The reference reads like its equations: index loops over units, gates and rows.
#![allow(clippy::needless_range_loop)]

pub mod cell;

use crate::error::{Error, Result};
use crate::model::{dropout, Cell, DropoutKey, Params, RnnConfig, State, Timeline};
use crate::shapes::{check_lengths, check_shape, numel};
use cell::{step_backward, step_forward, SAVED};

/// What one cell kept in [`forward`] for [`backward`].
#[derive(Debug, Clone)]
pub struct CellTrace {
    /// (T+1, B, H) states in [`Timeline`] order: a forward cell has h_0 at block 0 and h_t
    /// at block t, a reverse cell h_t at block t−1 and h_0 at block T.
    pub h: Vec<f64>,
    /// LSTM's cell states, in h's layout (empty for the other cells).
    pub c: Vec<f64>,
    /// (T, B, S·H) saved values of each step (see [`crate::model::CellKind::saved_slots`]),
    /// block t−1 for time t.
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
    /// Per layer, (T, B, D·H) outputs (zero past a row's length), after dropout in a
    /// training forward ([`forward_train`]).
    pub out: Vec<Vec<f64>>,
    /// Per layer, the dropout factors its outputs were multiplied by (0 or 1/(1 − p)),
    /// where a training forward dropped them; backward applies them to the gradient.
    pub dropout: Vec<Option<Vec<f64>>>,
    /// h_n (and c_n): each cell's state after its last step, (L·D, B, H).
    pub state: State<Vec<f64>>,
    pub lengths: Option<Vec<usize>>,
    /// The token ids (T, B) of a model with an embedding ([`forward_tokens`]): backward
    /// sums dx into the embedding's rows by them.
    pub tokens: Option<Vec<u32>>,
}

/// Gradients of the loss with respect to every parameter, x and the initial state.
#[derive(Debug, Clone)]
pub struct Grads {
    pub params: Params<Vec<f64>>,
    /// (T, B, I): dL/dx, or dL/d(embedded x) for a model with an embedding.
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

/// A zero state (h, and c for LSTM) of every cell, (L·D, B, H) each.
fn zero_state(cfg: &RnnConfig, b: usize) -> Result<State<Vec<f64>>> {
    let n = cfg.cells() * b * cfg.hidden_size;
    Ok(State {
        h: zeros(n)?,
        c: cfg.cell.has_c().then(|| zeros(n)).transpose()?,
    })
}

/// out[j] = bias[j] + Σ_k w[j, k] v[k] for a row-major w (out.len(), v.len()).
fn affine(out: &mut [f64], w: &[f64], v: &[f64], bias: Option<&Vec<f64>>) {
    let n = v.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = bias.map_or(0.0, |b| b[j]) + (0..n).map(|k| w[j * n + k] * v[k]).sum::<f64>();
    }
}

/// The sequence's shape: T, B and which (t, b) each row's length leaves in.
#[derive(Clone, Copy)]
struct Rows<'a> {
    t: usize,
    b: usize,
    lengths: Option<&'a [usize]>,
}

impl Rows<'_> {
    /// Whether row b has a step at 0-based time t.
    fn valid(&self, t: usize, b: usize) -> bool {
        self.lengths.is_none_or(|l| t < l[b])
    }

    fn count(&self) -> usize {
        self.t * self.b
    }
}

/// What layer `layer` reads: x (T, B, I) for the first, the D·H outputs of the layer below
/// above it.
fn layer_input<'a>(x: &'a [f64], outs: &'a [Vec<f64>], layer: usize) -> &'a [f64] {
    match layer {
        0 => x,
        _ => &outs[layer - 1],
    }
}

/// The forward pass. x is (T, B, I) given with its shape; `init` is h0 (and c0), (L·D,
/// B, H), or zeros; `lengths` are per-row lengths (see the module documentation). No
/// dropout: this is evaluation and inference.
pub fn forward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    init: Option<&State<Vec<f64>>>,
    lengths: Option<&[usize]>,
) -> Result<Forward> {
    cfg.check_input(x_shape)?;
    forward_impl(cfg, p, x, x_shape, (init, lengths), None)
}

/// The embedded inputs of token ids (T, B) for a model with an embedding: row `id` of the
/// table per (t, b), (T, B, I). Refuses an id outside the vocabulary.
pub fn embed(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    ids: &[u32],
    t: usize,
    b: usize,
) -> Result<Vec<f64>> {
    cfg.check_tokens(ids, t, b)?;
    p.check_f64(cfg)?;
    let table = p
        .embedding
        .as_ref()
        .ok_or_else(|| Error::IncompatibleArgs("the parameters have no embedding table".into()))?;
    let i = cfg.input_size;
    Ok(ids
        .iter()
        .flat_map(|&id| &table[id as usize * i..][..i])
        .copied()
        .collect())
}

/// [`forward`] (or, with `key`, [`forward_train`]) of a model with an embedding on token
/// ids (T, B): returns the embedded inputs (T, B, I), which [`backward`] takes as x, and
/// the forward, which keeps the ids for the embedding's gradient.
pub fn forward_tokens(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    ids: &[u32],
    [t, b]: [usize; 2],
    init: Option<&State<Vec<f64>>>,
    lengths: Option<&[usize]>,
    key: Option<DropoutKey>,
) -> Result<(Vec<f64>, Forward)> {
    let x = embed(cfg, p, ids, t, b)?;
    let shape = [t, b, cfg.input_size];
    let mut f = forward_impl(cfg, p, &x, &shape, (init, lengths), key)?;
    f.tokens = Some(ids.to_vec());
    Ok((x, f))
}

/// dL/d(embedding table) (V, I): each row the sum of dx over the (t, b) that read it, in
/// (t, b) order.
pub fn embedding_grad(cfg: &RnnConfig, ids: &[u32], dx: &[f64]) -> Vec<f64> {
    let (v, i) = (cfg.embedding.unwrap_or(0), cfg.input_size);
    let mut g = vec![0.0; v * i];
    for (row, &id) in ids.iter().enumerate() {
        let dst = &mut g[id as usize * i..][..i];
        dst.iter_mut()
            .zip(&dx[row * i..][..i])
            .for_each(|(a, d)| *a += d);
    }
    g
}

/// [`forward`] in a training step: where the config has dropout, each dropped layer's
/// outputs are masked with the draws of `key` ([`crate::model::dropout`]), as the GPU masks
/// them, bit for bit.
pub fn forward_train(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    init: Option<&State<Vec<f64>>>,
    lengths: Option<&[usize]>,
    key: DropoutKey,
) -> Result<Forward> {
    cfg.check_input(x_shape)?;
    forward_impl(cfg, p, x, x_shape, (init, lengths), Some(key))
}

/// The dropout factors of layer `layer`'s outputs, (T·B, D·H): 1/(1 − p) where a unit is
/// kept, 0 where it is dropped.
pub fn dropout_factors(cfg: &RnnConfig, key: DropoutKey, layer: usize, rows: usize) -> Vec<f64> {
    let p = cfg.dropout_after(layer);
    let (threshold, scale) = (dropout::threshold(p), 1.0 / (1.0 - p as f64));
    let n = rows * cfg.directions() * cfg.hidden_size;
    (0..n)
        .map(
            |i| match dropout::keep(key, layer as u32, i as u32, threshold) {
                true => scale,
                false => 0.0,
            },
        )
        .collect()
}

fn forward_impl(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    x_shape: &[usize],
    (init, lengths): (Option<&State<Vec<f64>>>, Option<&[usize]>),
    key: Option<DropoutKey>,
) -> Result<Forward> {
    cfg.validate()?;
    p.check_f64(cfg)?;
    let (t, b) = cfg.check_feature_shape(x_shape)?;
    check_shape("x data", &[x.len()], &[numel(&[t, b, cfg.input_size])])?;
    if let Some(l) = lengths {
        check_lengths(l, t, b)?;
    }
    if let Some(s) = init {
        cfg.check_host_state("initial state", s, b)?;
    }
    let rows = Rows { t, b, lengths };
    let (d, h) = (cfg.directions(), cfg.hidden_size);
    let block = b * h;
    let mut traces = Vec::new();
    let mut outs: Vec<Vec<f64>> = Vec::new();
    let mut drops = Vec::new();
    let mut state = zero_state(cfg, b)?;
    for layer in 0..cfg.num_layers {
        let input = layer_input(x, &outs, layer);
        let mut out = zeros(rows.count() * d * h)?;
        for dir in 0..d {
            let c = layer * d + dir;
            let pre = input_projection_forward(cfg, &p.cells[c], input, rows)?;
            let tl = Timeline::new(t, cfg.is_reverse(c));
            let cell_init = init.map(|s| s.map(|v| v[c * block..][..block].to_vec()));
            let tr = recurrence_forward(cfg, &p.cells[c], &pre, cell_init.as_ref(), tl, rows)?;
            for (k, s) in state.tensors_mut().into_iter().enumerate() {
                let src = if k == 0 { &tr.h } else { &tr.c };
                s[c * block..][..block].copy_from_slice(&src[tl.final_block() * block..][..block]);
            }
            write_outputs(&mut out, &tr, tl, rows, (dir, d, h));
            traces.push(tr);
        }
        let drop = key
            .filter(|_| cfg.dropout_after(layer) > 0.0)
            .map(|k| dropout_factors(cfg, k, layer, rows.count()));
        if let Some(f) = &drop {
            out.iter_mut().zip(f).for_each(|(v, f)| *v *= f);
        }
        outs.push(out);
        drops.push(drop);
    }
    let y = head_forward(cfg, p, &outs[cfg.num_layers - 1], rows)?;
    Ok(Forward {
        t,
        b,
        y,
        cells: traces,
        out: outs,
        dropout: drops,
        state,
        lengths: lengths.map(<[usize]>::to_vec),
        tokens: None,
    })
}

/// Backpropagation through time for dL/dy (T, B, O), plus dL/dh_n (and dL/dc_n) if given:
/// the head, then per layer from the top each cell's recurrence and input projection, in
/// the reverse of [`forward`]. Skipped steps (past a row's length) pass dh and dc through
/// unchanged.
pub fn backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    fwd: &Forward,
    dy: &[f64],
    d_final: Option<&State<Vec<f64>>>,
) -> Result<Grads> {
    check_backward(cfg, p, x, fwd, dy, d_final)?;
    let (t, b) = (fwd.t, fwd.b);
    let rows = Rows {
        t,
        b,
        lengths: fwd.lengths.as_deref(),
    };
    let block = b * cfg.hidden_size;
    let mut gr = cfg.param_shapes().map(|s| vec![0.0; s.iter().product()]);
    let top = &fwd.out[cfg.num_layers - 1];
    // dL/d(outputs of the current layer), (T, B, D·H)
    let mut d_out = head_backward(cfg, p, top, dy, rows, &mut gr)?;
    let mut d_init = zero_state(cfg, b)?;
    for layer in (0..cfg.num_layers).rev() {
        if let Some(f) = &fwd.dropout[layer] {
            d_out.iter_mut().zip(f).for_each(|(g, f)| *g *= f);
        }
        let input = layer_input(x, &fwd.out, layer);
        let mut d_in = zeros(rows.count() * cfg.layer_input_size(layer))?;
        for dir in 0..cfg.directions() {
            let c = layer * cfg.directions() + dir;
            let tl = Timeline::new(t, cfg.is_reverse(c));
            let grad = d_final.map(|s| s.map(|v| v[c * block..][..block].to_vec()));
            let (pc, tr, gc) = (&p.cells[c], &fwd.cells[c], &mut gr.cells[c]);
            let r = recurrence_backward(cfg, pc, tr, &d_out, grad.as_ref(), tl, rows, dir)?;
            recurrence_weight_grads(cfg, tr, &r.dr, tl, rows, gc);
            input_projection_backward(cfg, pc, input, &r.dp, tl, rows, gc, &mut d_in);
            // Both have c exactly for LSTM.
            for (dst, src) in d_init.tensors_mut().into_iter().zip(r.d_init.tensors()) {
                dst[c * block..][..block].copy_from_slice(src);
            }
        }
        d_out = d_in;
    }
    if let (Some(ids), Some(g)) = (&fwd.tokens, &mut gr.embedding) {
        *g = embedding_grad(cfg, ids, &d_out);
    }
    Ok(Grads {
        params: gr,
        dx: d_out,
        d_init,
    })
}

/// Refuses a `fwd` that did not come from [`forward`] with this config and x, and a dy or
/// dL/d(final state) of the wrong size.
fn check_backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    x: &[f64],
    fwd: &Forward,
    dy: &[f64],
    d_final: Option<&State<Vec<f64>>>,
) -> Result<()> {
    cfg.validate()?;
    p.check_f64(cfg)?;
    let (t, b, h) = (fwd.t, fwd.b, cfg.hidden_size);
    check_shape("x data", &[x.len()], &[numel(&[t, b, cfg.input_size])])?;
    let block = b * h;
    let slots = cfg.cell.saved_slots();
    let lstm = cfg.cell.has_c();
    let fits = fwd.cells.len() == cfg.cells()
        && fwd.out.len() == cfg.num_layers
        && fwd.dropout.len() == cfg.num_layers
        && fwd
            .dropout
            .iter()
            .flatten()
            .all(|f| f.len() == t * b * cfg.directions() * h)
        && fwd.cells.iter().all(|c| {
            c.h.len() == (t + 1) * block
                && c.c.len() == if lstm { (t + 1) * block } else { 0 }
                && c.saved.len() == t * b * slots * h
        })
        && fwd
            .out
            .iter()
            .all(|o| o.len() == t * b * cfg.directions() * h)
        && fwd
            .lengths
            .as_ref()
            .is_none_or(|l| check_lengths(l, t, b).is_ok())
        && fwd.tokens.is_some() == cfg.embedding.is_some()
        && fwd
            .tokens
            .as_ref()
            .is_none_or(|ids| cfg.check_tokens(ids, t, b).is_ok());
    if !fits {
        return Err(Error::Shape {
            what: "forward state",
            expected: "the result of cpu::forward with this config and x".into(),
            got: vec![fwd.t, fwd.b, fwd.cells.len(), fwd.out.len()],
        });
    }
    check_shape("dy data", &[dy.len()], &[t * b * cfg.output_size])?;
    if let Some(s) = d_final {
        cfg.check_host_state("gradient of the final state", s, b)?;
    }
    Ok(())
}

/// P = in W_ihᵀ + b_ih for every row: in (T·B, ni) → P (T·B, G·H).
fn input_projection_forward(
    cfg: &RnnConfig,
    pc: &Cell<Vec<f64>>,
    input: &[f64],
    rows: Rows<'_>,
) -> Result<Vec<f64>> {
    let gh = cfg.gates() * cfg.hidden_size;
    let ni = input.len() / rows.count();
    let mut pre = zeros(rows.count() * gh)?;
    for (row, p) in pre.chunks_mut(gh).enumerate() {
        affine(p, &pc.w_ih, &input[row * ni..][..ni], pc.b_ih.as_ref());
    }
    Ok(pre)
}

/// Given dP (T·B, G·H): dW_ih += dPᵀ in, db_ih += Σ_rows dP, and d in += dP W_ih, over the
/// rows in the cell's backward order.
#[allow(clippy::too_many_arguments)]
fn input_projection_backward(
    cfg: &RnnConfig,
    pc: &Cell<Vec<f64>>,
    input: &[f64],
    dp: &[f64],
    tl: Timeline,
    rows: Rows<'_>,
    gc: &mut Cell<Vec<f64>>,
    d_in: &mut [f64],
) {
    let gh = cfg.gates() * cfg.hidden_size;
    let ni = input.len() / rows.count();
    for n in 0..rows.t {
        let t = tl.backward_time(n) - 1;
        for b in (0..rows.b).filter(|&b| rows.valid(t, b)) {
            let row = t * rows.b + b;
            let (x, dp) = (&input[row * ni..][..ni], &dp[row * gh..][..gh]);
            for j in 0..gh {
                if let Some(bi) = &mut gc.b_ih {
                    bi[j] += dp[j];
                }
                for k in 0..ni {
                    gc.w_ih[j * ni + k] += dp[j] * x[k];
                    d_in[row * ni + k] += pc.w_ih[j * ni + k] * dp[j];
                }
            }
        }
    }
}

/// One cell's recurrence from its input projection `pre` (T·B, G·H) and initial state
/// `init` (h0, c0: (B, H) each) or zeros, in its time order: per step R = h_prev W_hhᵀ +
/// b_hh and the cell's pointwise step; past a row's length the state is carried.
fn recurrence_forward(
    cfg: &RnnConfig,
    pc: &Cell<Vec<f64>>,
    pre: &[f64],
    init: Option<&State<Vec<f64>>>,
    tl: Timeline,
    rows: Rows<'_>,
) -> Result<CellTrace> {
    let (g, h) = (cfg.gates(), cfg.hidden_size);
    let slots = cfg.cell.saved_slots();
    let lstm = cfg.cell.has_c();
    let block = rows.b * h;
    let mut tr = CellTrace {
        h: zeros((rows.t + 1) * block)?,
        c: zeros(if lstm { (rows.t + 1) * block } else { 0 })?,
        saved: zeros(rows.count() * slots * h)?,
    };
    if let Some(s) = init {
        let at = tl.initial_block() * block;
        tr.h[at..at + block].copy_from_slice(&s.h);
        if let Some(c0) = &s.c {
            tr.c[at..at + block].copy_from_slice(c0);
        }
    }
    let mut rec = vec![0.0; g * h];
    for n in 0..rows.t {
        let tau = tl.forward_time(n);
        let t = tau - 1;
        for b in 0..rows.b {
            let cur = tl.out_block(tau) * block + b * h;
            let prev = tl.prev_block(tau) * block + b * h;
            if !rows.valid(t, b) {
                tr.h.copy_within(prev..prev + h, cur);
                if lstm {
                    tr.c.copy_within(prev..prev + h, cur);
                }
                continue;
            }
            let row = t * rows.b + b;
            let p_row = &pre[row * g * h..][..g * h];
            let h_prev = tr.h[prev..prev + h].to_vec();
            affine(&mut rec, &pc.w_hh, &h_prev, pc.b_hh.as_ref());
            for j in 0..h {
                let gate = |v: &[f64]| -> [f64; 4] {
                    std::array::from_fn(|k| if k < g { v[k * h + j] } else { 0.0 })
                };
                let c_prev = if lstm { tr.c[prev + j] } else { 0.0 };
                let u = step_forward(
                    cfg.cell,
                    cfg.activation,
                    &gate(p_row),
                    &gate(&rec),
                    h_prev[j],
                    c_prev,
                );
                tr.h[cur + j] = u.h;
                if lstm {
                    tr.c[cur + j] = u.c;
                }
                for s in 0..slots {
                    tr.saved[(row * slots + s) * h + j] = u.saved[s];
                }
            }
        }
    }
    Ok(tr)
}

/// Copies direction `dir`'s outputs (its h at times 1..T) into the layer's outputs
/// (T, B, D·H), leaving zeros past each row's length.
fn write_outputs(
    out: &mut [f64],
    tr: &CellTrace,
    tl: Timeline,
    rows: Rows<'_>,
    (dir, d, h): (usize, usize, usize),
) {
    for t in 0..rows.t {
        for b in (0..rows.b).filter(|&b| rows.valid(t, b)) {
            let src = tl.out_block(t + 1) * rows.b * h + b * h;
            let dst = ((t * rows.b + b) * d + dir) * h;
            out[dst..dst + h].copy_from_slice(&tr.h[src..src + h]);
        }
    }
}

/// What a cell's recurrence backward gives.
struct RecurrenceGrads {
    /// dL/dP and dL/dR, (T·B, G·H) each; zero past a row's length.
    dp: Vec<f64>,
    dr: Vec<f64>,
    /// dL/dh0 (and dL/dc0), (B, H) each.
    d_init: State<Vec<f64>>,
}

/// One cell's recurrence backward, in the reverse of its forward order: each step takes as
/// dh the sum of dL/d(its output) (direction `dir` of `d_out`, (T, B, D·H)) and what
/// flowed back from the step after it (GRU's direct part plus dR W_hh), and the cell's
/// [`cell::step_backward`] gives dP and dR; the state gradient starts from `d_final`
/// (dL/dh_n, dL/dc_n) or zeros and ends as dL/dh0 (dL/dc0).
#[allow(clippy::too_many_arguments)]
fn recurrence_backward(
    cfg: &RnnConfig,
    pc: &Cell<Vec<f64>>,
    tr: &CellTrace,
    d_out: &[f64],
    d_final: Option<&State<Vec<f64>>>,
    tl: Timeline,
    rows: Rows<'_>,
    dir: usize,
) -> Result<RecurrenceGrads> {
    let (g, h) = (cfg.gates(), cfg.hidden_size);
    let dh_width = cfg.directions() * h;
    let slots = cfg.cell.saved_slots();
    let lstm = cfg.cell.has_c();
    let block = rows.b * h;
    let (mut dp_all, mut dr_all) = (zeros(rows.count() * g * h)?, zeros(rows.count() * g * h)?);
    // The state gradient dL/dh and dL/dc flowing into the state the step handled next
    // wrote: dL/dh_n and dL/dc_n at first.
    let mut grad_h = d_final.map_or_else(|| vec![0.0; block], |s| s.h.clone());
    let mut grad_c = d_final
        .and_then(|s| s.c.clone())
        .unwrap_or_else(|| vec![0.0; block]);
    for n in 0..rows.t {
        let tau = tl.backward_time(n);
        let t = tau - 1;
        for b in (0..rows.b).filter(|&b| rows.valid(t, b)) {
            let row = t * rows.b + b;
            let cur = tl.out_block(tau) * block + b * h;
            let prev = tl.prev_block(tau) * block + b * h;
            let (dp, dr) = (
                &mut dp_all[row * g * h..][..g * h],
                &mut dr_all[row * g * h..][..g * h],
            );
            let mut dh_direct = vec![0.0; h];
            for j in 0..h {
                let dh = grad_h[b * h + j] + d_out[row * dh_width + dir * h + j];
                let saved: [f64; SAVED] = std::array::from_fn(|s| {
                    if s < slots {
                        tr.saved[(row * slots + s) * h + j]
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
                    grad_c[b * h + j],
                    &saved,
                    tr.h[cur + j],
                    tr.h[prev + j],
                    c_prev,
                    c_cur,
                );
                for k in 0..g {
                    dp[k * h + j] = u.dp[k];
                    dr[k * h + j] = u.dr[k];
                }
                dh_direct[j] = u.dh_prev;
                grad_c[b * h + j] = u.dc_prev;
            }
            // dL/dh_prev = the direct part + dR W_hh.
            let grad_b = &mut grad_h[b * h..][..h];
            grad_b.copy_from_slice(&dh_direct);
            for j in 0..g * h {
                for k in 0..h {
                    grad_b[k] += pc.w_hh[j * h + k] * dr[j];
                }
            }
        }
    }
    Ok(RecurrenceGrads {
        dp: dp_all,
        dr: dr_all,
        d_init: State {
            h: grad_h,
            c: lstm.then_some(grad_c),
        },
    })
}

/// dW_hh += dRᵀ H_prev and db_hh += Σ_rows dR, over the rows in the cell's backward order.
fn recurrence_weight_grads(
    cfg: &RnnConfig,
    tr: &CellTrace,
    dr: &[f64],
    tl: Timeline,
    rows: Rows<'_>,
    gc: &mut Cell<Vec<f64>>,
) {
    let (gh, h) = (cfg.gates() * cfg.hidden_size, cfg.hidden_size);
    for n in 0..rows.t {
        let tau = tl.backward_time(n);
        let t = tau - 1;
        for b in (0..rows.b).filter(|&b| rows.valid(t, b)) {
            let row = t * rows.b + b;
            let prev = tl.prev_block(tau) * rows.b * h + b * h;
            let (dr, h_prev) = (&dr[row * gh..][..gh], &tr.h[prev..prev + h]);
            for j in 0..gh {
                if let Some(bh) = &mut gc.b_hh {
                    bh[j] += dr[j];
                }
                for k in 0..h {
                    gc.w_hh[j * h + k] += dr[j] * h_prev[k];
                }
            }
        }
    }
}

/// y = W_hy top + b_y for every row with a step, from the top layer's outputs (T, B, D·H).
fn head_forward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    top: &[f64],
    rows: Rows<'_>,
) -> Result<Vec<f64>> {
    let (o, width) = (cfg.output_size, cfg.directions() * cfg.hidden_size);
    let mut y = zeros(rows.count() * o)?;
    for row in 0..rows.count() {
        if rows.valid(row / rows.b, row % rows.b) {
            affine(
                &mut y[row * o..][..o],
                &p.w_hy,
                &top[row * width..][..width],
                Some(&p.b_y),
            );
        }
    }
    Ok(y)
}

/// dW_hy += dYᵀ top, db_y += Σ_rows dY; returns dL/d(top) = dY W_hy (T, B, D·H), dY
/// ignored past each row's length.
fn head_backward(
    cfg: &RnnConfig,
    p: &Params<Vec<f64>>,
    top: &[f64],
    dy: &[f64],
    rows: Rows<'_>,
    gr: &mut Params<Vec<f64>>,
) -> Result<Vec<f64>> {
    let (o, width) = (cfg.output_size, cfg.directions() * cfg.hidden_size);
    let mut d_top = zeros(rows.count() * width)?;
    for row in 0..rows.count() {
        if !rows.valid(row / rows.b, row % rows.b) {
            continue;
        }
        for k in 0..o {
            let dyv = dy[row * o + k];
            gr.b_y[k] += dyv;
            for q in 0..width {
                gr.w_hy[k * width + q] += dyv * top[row * width + q];
                d_top[row * width + q] += p.w_hy[k * width + q] * dyv;
            }
        }
    }
    Ok(d_top)
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
