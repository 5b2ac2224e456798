// The backward recurrence (see recurrence.wgsl). Iterations n = 0..T: iteration n < T
// handles the step at time tau (T - n for a forward cell, n + 1 for a reverse one), in
// the reverse of the forward order. For each row and unit:
//   dh  = dh_above[tau] + (dr of the step handled before) W_hh + state_grad_h
//   (dp, dr, state_grad_h, state_grad_c) = step_backward(dh, state_grad_c, saved[tau], h,
//                                                        h_prev, c_prev, c)
// where the state gradient holds the part of dL/dh_prev that skips W_hh (GRU's z dh) and
// dL/dc_prev. It starts as dL/dh_n and dL/dc_n; iteration T leaves dL/dh0 and dL/dc0 in
// it.

@group(0) @binding(1) var<storage, read_write> dp: array<f32>;
// dL/d(W_hh h_prev + b_hh): its own buffer for GRU (SEPARATE_DR); the other cells' dR is
// dP, and this binding holds a placeholder that is never touched (WebGPU refuses one
// buffer bound twice where a binding writes).
@group(0) @binding(3) var<storage, read_write> dr: array<f32>;
override SEPARATE_DR: bool = false;

fn dr_at(i: u32) -> f32 {
    if (SEPARATE_DR) {
        return dr[i];
    }
    return dp[i];
}
@group(0) @binding(4) var<storage, read> states: array<f32>;
@group(0) @binding(5) var<storage, read> saved: array<f32>;
// dL/d(outputs) from the head or the layer above, (T, B, H).
@group(0) @binding(7) var<storage, read> dh_above: array<f32>;
// The state gradient: dL/dh (at p.grad_h) and dL/dc (at p.grad_c) carried between steps,
// (B, H) each.
@group(0) @binding(8) var<storage, read_write> state_grad: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn recurrence_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = p.h;
    let gh = G * h;
    let block = p.b * h;
    let reg = region(wg);
    let tiles = tile_count(reg);
    let last_row = reg.row0 + reg.rows - 1u;
    let last_unit = reg.unit0 + reg.units - 1u;
    load_shared_weights(lid);
    let first = first_iteration();
    for (var n = first; n < first + p.steps; n++) {
        // The step handled at iteration n, and the one handled before it (n > 0).
        let tau = backward_time(n);
        let tau_before = backward_time(n - 1u);
        var k_len = gh;
        if (n == 0u) {
            k_len = 0u;
        }
        for (var tile = lid; tile < tiles; tile += WG) {
            let o = tile_origin(reg, tile);
            var dr_row = array<u32, 4>();
            for (var r = 0u; r < TILE_ROWS; r++) {
                dr_row[r] = ((tau_before - 1u) * p.b + min(o.x + r, last_row)) * gh;
            }
            let cols = min(o.y + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_unit));
            var acc = array<vec4<f32>, 4>();
            for (var k = 0u; k < k_len; k++) {
                let wk = cols + k * h;
                let wv = vec4<f32>(weight(wk.x), weight(wk.y), weight(wk.z), weight(wk.w));
                for (var r = 0u; r < TILE_ROWS; r++) {
                    acc[r] += dr_at(dr_row[r] + k) * wv;
                }
            }
            for (var r = 0u; r < TILE_ROWS; r++) {
                let row = o.x + r;
                if (row > last_row) {
                    break;
                }
                let len = row_length(row);
                for (var s = 0u; s < 4u; s++) {
                    let j = o.y + s;
                    if (j > last_unit) {
                        break;
                    }
                    let ci = p.grad_h + row * h + j;
                    let dh_rec = acc[r][s] + state_grad[ci];
                    if (n == p.t) {
                        state_grad[ci] = dh_rec;
                        continue;
                    }
                    let at = ((tau - 1u) * p.b + row) * gh + j;
                    if (tau > len) {
                        state_grad[ci] = dh_rec;
                        for (var g = 0u; g < G; g++) {
                            dp[at + g * h] = 0.0;
                            if (SEPARATE_DR) {
                                dr[at + g * h] = 0.0;
                            }
                        }
                        continue;
                    }
                    let hi = out_block(tau) * block + row * h + j;
                    let hp = prev_block(tau) * block + row * h + j;
                    let dh = dh_rec + dh_above[((tau - 1u) * p.b + row) * h + j];
                    let dci = p.grad_c + row * h + j;
                    var dc = 0.0;
                    var c_prev = 0.0;
                    var c = 0.0;
                    if (HAS_C) {
                        dc = state_grad[dci];
                        c_prev = states[p.state_c + hp];
                        c = states[p.state_c + hi];
                    }
                    var sv = vec4<f32>();
                    let si = ((tau - 1u) * p.b + row) * S * h + j;
                    for (var q = 0u; q < S; q++) {
                        sv[q] = saved[si + q * h];
                    }
                    let u = step_backward(dh, dc, sv, states[hi], states[hp], c_prev, c);
                    for (var g = 0u; g < G; g++) {
                        dp[at + g * h] = u.dp[g];
                        if (SEPARATE_DR) {
                            dr[at + g * h] = u.dr[g];
                        }
                    }
                    state_grad[ci] = u.dh_prev;
                    if (HAS_C) {
                        state_grad[dci] = u.dc_prev;
                    }
                }
            }
        }
        storageBarrier();
    }
}
