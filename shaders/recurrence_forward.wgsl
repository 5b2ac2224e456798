// The forward recurrence (see recurrence.wgsl): at time tau, for each row and unit,
//   r = h_prev W_hh^T + b_hh (all G gates), then step_forward(pre[tau], r, h_prev, c_prev)
// writes h (and c) at tau's block and the saved values (recurrence_forward_common.wgsl).

@compute @workgroup_size(WG, 1, 1)
fn recurrence_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = p.h;
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
            var h_row = array<u32, 4>();
            for (var r = 0u; r < TILE_ROWS; r++) {
                h_row[r] = prev + min(o.x + r, last_row) * h;
            }
            let cols = min(o.y + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_unit));
            // acc[g][r]: gate g of rows o.x + r, units o.y..o.y+3
            var acc = array<array<vec4<f32>, 4>, 4>();
            for (var k = 0u; k < h; k++) {
                var hv = array<f32, 4>();
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
                for (var s = 0u; s < 4u; s++) {
                    let j = o.y + s;
                    if (j > last_unit) {
                        break;
                    }
                    var rv = vec4<f32>();
                    for (var g = 0u; g < G; g++) {
                        rv[g] = acc[g][r][s];
                    }
                    finish_unit(tau, cur, prev, row, j, rv);
                }
            }
        }
        storageBarrier();
    }
}
