// The backward recurrence (see recurrence.wgsl). Iterations n = 0..T: iteration n < T
// handles the step at time tau (T - n for a forward cell, n + 1 for a reverse one), in
// the reverse of the forward order. For each row and unit:
//   dh  = dh_above[tau] + (dr of the step handled before) W_hh + carry
//   (dp, dr, carry, carry_c) = step_backward(dh, carry_c, saved[tau], h, h_prev, c_prev, c)
// where carry holds the part of dL/dh_prev that skips W_hh (GRU's z dh) and carry_c
// dL/dc_prev. The carries start as dL/dh_n and dL/dc_n; iteration T leaves dL/dh0 and
// dL/dc0 in them.

@group(0) @binding(1) var<storage, read_write> dp: array<f32>;
// dL/d(W_hh h_prev + b_hh): its own buffer for GRU, dp's for the other cells.
@group(0) @binding(3) var<storage, read_write> dr: array<f32>;
@group(0) @binding(4) var<storage, read> states: array<f32>;
@group(0) @binding(5) var<storage, read> saved: array<f32>;
// dL/d(outputs) from the head or the layer above, (T, B, H).
@group(0) @binding(7) var<storage, read> dh_above: array<f32>;
// dL/dh (at p.carry) and dL/dc (at p.carry_c) carried between steps, (B, H) each.
@group(0) @binding(8) var<storage, read_write> carry: array<f32>;

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
        let tau = select(p.t - n, n + 1u, REVERSE);
        let tau_before = select(p.t - n + 1u, n, REVERSE);
        var k_len = gh;
        if (n == 0u) {
            k_len = 0u;
        }
        for (var tile = lid; tile < tiles; tile += WG) {
            let o = tile_origin(reg, tile);
            var dr_row: array<u32, 4>;
            for (var r = 0u; r < TILE_ROWS; r++) {
                dr_row[r] = ((tau_before - 1u) * p.b + min(o.x + r, last_row)) * gh;
            }
            let cols = min(o.y + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_unit));
            var acc: array<vec4<f32>, 4>;
            for (var k = 0u; k < k_len; k++) {
                let wk = cols + k * h;
                let wv = vec4<f32>(weight(wk.x), weight(wk.y), weight(wk.z), weight(wk.w));
                for (var r = 0u; r < TILE_ROWS; r++) {
                    acc[r] += dr[dr_row[r] + k] * wv;
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
                    let ci = p.carry + row * h + j;
                    let dh_rec = acc[r][s] + carry[ci];
                    if (n == p.t) {
                        carry[ci] = dh_rec;
                        continue;
                    }
                    let at = ((tau - 1u) * p.b + row) * gh + j;
                    if (tau > len) {
                        carry[ci] = dh_rec;
                        for (var g = 0u; g < G; g++) {
                            dp[at + g * h] = 0.0;
                            dr[at + g * h] = 0.0;
                        }
                        continue;
                    }
                    let hi = out_block(tau) * block + row * h + j;
                    let hp = prev_block(tau) * block + row * h + j;
                    let dh = dh_rec + dh_above[((tau - 1u) * p.b + row) * h + j];
                    let dci = p.carry_c + row * h + j;
                    var dc = 0.0;
                    var c_prev = 0.0;
                    var c = 0.0;
                    if (CELL == 1u) {
                        dc = carry[dci];
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
                        dr[at + g * h] = u.dr[g];
                    }
                    carry[ci] = u.dh_prev;
                    if (CELL == 1u) {
                        carry[dci] = u.dc_prev;
                    }
                }
            }
        }
        storageBarrier();
    }
}
