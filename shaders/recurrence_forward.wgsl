// The forward recurrence (see recurrence.wgsl): at time tau, for each row and unit,
//   r = h_prev W_hh^T + b_hh (all G gates), then step_forward(pre[tau], r, h_prev, c_prev)
// writes h (and c) at tau's block and the saved values.

override HAS_BIAS: bool = true;

// The input projection x W_ih^T + b_ih.
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(3) var<storage, read> b_hh: array<f32>;
@group(0) @binding(4) var<storage, read_write> states: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn recurrence_forward(
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
        let tau = forward_time(n);
        let cur = out_block(tau) * block;
        let prev = prev_block(tau) * block;
        for (var tile = lid; tile < tiles; tile += WG) {
            let o = tile_origin(reg, tile);
            var h_row: array<u32, 4>;
            for (var r = 0u; r < TILE_ROWS; r++) {
                h_row[r] = prev + min(o.x + r, last_row) * h;
            }
            let cols = min(o.y + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_unit));
            // acc[g][r]: gate g of rows o.x + r, units o.y..o.y+3
            var acc: array<array<vec4<f32>, 4>, 4>;
            for (var k = 0u; k < h; k++) {
                var hv: array<f32, 4>;
                for (var r = 0u; r < TILE_ROWS; r++) {
                    hv[r] = states[h_row[r] + k];
                }
                for (var g = 0u; g < G; g++) {
                    let wk = (cols + g * h) * h + k;
                    let wv = vec4<f32>(weight(wk.x), weight(wk.y), weight(wk.z), weight(wk.w));
                    for (var r = 0u; r < TILE_ROWS; r++) {
                        acc[g][r] += hv[r] * wv;
                    }
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
                    let hi = cur + row * h + j;
                    let hp = prev + row * h + j;
                    if (tau > len) {
                        states[hi] = states[hp];
                        if (CELL == 1u) {
                            states[p.state_c + hi] = states[p.state_c + hp];
                        }
                        continue;
                    }
                    let at = ((tau - 1u) * p.b + row) * gh + j;
                    var pv = vec4<f32>();
                    var rv = vec4<f32>();
                    for (var g = 0u; g < G; g++) {
                        pv[g] = pre[at + g * h];
                        rv[g] = acc[g][r][s];
                        if (HAS_BIAS) {
                            rv[g] += b_hh[p.b_off + g * h + j];
                        }
                    }
                    var c_prev = 0.0;
                    if (CELL == 1u) {
                        c_prev = states[p.state_c + hp];
                    }
                    let u = step_forward(pv, rv, states[hp], c_prev);
                    states[hi] = u.h;
                    if (CELL == 1u) {
                        states[p.state_c + hi] = u.c;
                    }
                    let sv = ((tau - 1u) * p.b + row) * S * h + j;
                    for (var q = 0u; q < S; q++) {
                        saved[sv + q * h] = u.saved[q];
                    }
                }
            }
        }
        storageBarrier();
    }
}
