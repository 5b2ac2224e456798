// CTC loss, one workgroup per batch row b (equations in src/ctc/mod.rs). Shapes:
//   y (T, B, C) logits; labels (B, u_cap) row b's target as f32 class indices;
//   rows (B, 4): input length L, target length U, scale (the reduction's factor), unused;
//   dy (T, B, C) gets scale·dL/dy, 0 at t >= L; row_loss (B) gets scale·(−log p);
//   work, per row: T log-sum-exps of y_t, then log α (T, S_cap), S_cap = 2·u_cap + 1,
//   overwritten by log α + log β on the way back.
// The recursions ping-pong between two halves of `buf` in workgroup memory (one half per
// time step, MAX_S states each: U <= MAX_LABELS, a constant generated from the Rust
// MAX_GPU_TARGET_LEN, so that both halves fit in 16 KiB); α also goes to `work`, where the
// gradient's per-class sums read it. Every sum runs in a fixed order: deterministic.
// An impossible alignment gives loss +inf and a NaN gradient (PyTorch's), or 0 and 0 with
// zero_infinity.

struct Ctc {
    t: u32, b: u32, c: u32, u_cap: u32,
    blank: u32, zero_infinity: u32, inf_bits: u32, nan_bits: u32,
}

override WG: u32 = 256u;
const MAX_S: u32 = 2u * MAX_LABELS + 1u;
// log 0: below any log-probability, far enough from the f32 limit that adding a few
// log-probabilities to it stays finite.
const NEG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> p: Ctc;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> work: array<f32>;

var<workgroup> buf: array<f32, 2u * MAX_S>;
var<workgroup> w_len: u32;
var<workgroup> w_u: u32;

// log(exp(a) + exp(b)), with NEG as log 0.
fn lse(a: f32, b: f32) -> f32 {
    let m = max(a, b);
    if (m <= NEG) {
        return NEG;
    }
    return m + log(exp(a - m) + exp(b - m));
}

@compute @workgroup_size(WG, 1, 1)
fn ctc(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    if (lid == 0u) {
        w_len = u32(rows[b * 4u]);
        w_u = u32(rows[b * 4u + 1u]);
    }
    let len = workgroupUniformLoad(&w_len);
    let u = workgroupUniformLoad(&w_u);
    let scale = rows[b * 4u + 2u];
    let s_n = 2u * u + 1u;
    let stride = 2u * p.u_cap + 1u;
    let lse_at = b * p.t * (stride + 1u);
    let a_at = lse_at + p.t;
    let lab = b * p.u_cap;

    // log Σ_k exp(y_t(k)) per step, one step per invocation.
    for (var t = lid; t < len; t += WG) {
        let base = (t * p.b + b) * p.c;
        var m = y[base];
        for (var k = 1u; k < p.c; k++) {
            m = max(m, y[base + k]);
        }
        var s = 0.0;
        for (var k = 0u; k < p.c; k++) {
            s += exp(y[base + k] - m);
        }
        work[lse_at + t] = m + log(s);
    }
    storageBarrier();

    // α, forward in time.
    for (var s = lid; s < s_n; s += WG) {
        var v = NEG;
        if (s < 2u) {
            v = y[b * p.c + ext(s, lab)] - work[lse_at];
        }
        buf[s] = v;
        work[a_at + s] = v;
    }
    workgroupBarrier();
    for (var t = 1u; t < len; t++) {
        let cur = (t & 1u) * MAX_S;
        let prv = MAX_S - cur;
        let base = (t * p.b + b) * p.c;
        let norm = work[lse_at + t];
        for (var s = lid; s < s_n; s += WG) {
            let k = ext(s, lab);
            var a = buf[prv + s];
            if (s >= 1u) {
                a = lse(a, buf[prv + s - 1u]);
            }
            if (s >= 2u && k != p.blank && k != ext(s - 2u, lab)) {
                a = lse(a, buf[prv + s - 2u]);
            }
            var v = NEG;
            if (a > NEG) {
                v = a + y[base + k] - norm;
            }
            buf[cur + s] = v;
            work[a_at + t * stride + s] = v;
        }
        workgroupBarrier();
    }
    let last = ((len - 1u) & 1u) * MAX_S;
    var log_p = buf[last + s_n - 1u];
    if (s_n > 1u) {
        log_p = lse(log_p, buf[last + s_n - 2u]);
    }
    let impossible = log_p <= NEG;
    workgroupBarrier();

    // β, backward in time, and at each step the gradient from α·β.
    for (var i = 0u; i < len; i++) {
        let t = len - 1u - i;
        let cur = (t & 1u) * MAX_S;
        let nxt = MAX_S - cur;
        let base = (t * p.b + b) * p.c;
        let norm = work[lse_at + t];
        let row = a_at + t * stride;
        for (var s = lid; s < s_n; s += WG) {
            let k = ext(s, lab);
            var v = NEG;
            if (i == 0u) {
                if (s + 2u >= s_n) {
                    v = 0.0;
                }
            } else {
                v = buf[nxt + s];
                if (s + 1u < s_n) {
                    v = lse(v, buf[nxt + s + 1u]);
                }
                if (s + 2u < s_n && k != p.blank && k != ext(s + 2u, lab)) {
                    v = lse(v, buf[nxt + s + 2u]);
                }
            }
            if (v > NEG) {
                v += y[base + k] - norm;
            }
            buf[cur + s] = v;
            let a = work[row + s];
            var ab = NEG;
            if (a > NEG && v > NEG) {
                ab = a + v;
            }
            work[row + s] = ab;
        }
        storageBarrier();
        workgroupBarrier();
        for (var k = lid; k < p.c; k += WG) {
            var acc = NEG;
            if (k == p.blank) {
                for (var s = 0u; s < s_n; s += 2u) {
                    acc = lse(acc, work[row + s]);
                }
            } else {
                for (var j = 0u; j < u; j++) {
                    if (u32(labels[lab + j]) == k) {
                        acc = lse(acc, work[row + 2u * j + 1u]);
                    }
                }
            }
            let l = y[base + k] - norm;
            var g = exp(l);
            if (acc > NEG) {
                g -= exp(acc - l - log_p);
            }
            if (impossible) {
                g = select(bitcast<f32>(p.nan_bits), 0.0, p.zero_infinity != 0u);
            }
            dy[base + k] = scale * g;
        }
    }
    for (var i = lid; i < (p.t - len) * p.c; i += WG) {
        let t = len + i / p.c;
        dy[(t * p.b + b) * p.c + i % p.c] = 0.0;
    }
    if (lid == 0u) {
        var loss = -log_p * scale;
        if (impossible) {
            loss = select(bitcast<f32>(p.inf_bits), 0.0, p.zero_infinity != 0u);
        }
        row_loss[b] = loss;
    }
}

// State s of the extended label: the blank at even s, label s/2 at odd s.
fn ext(s: u32, lab: u32) -> u32 {
    if ((s & 1u) == 0u) {
        return p.blank;
    }
    return u32(labels[lab + s / 2u]);
}
