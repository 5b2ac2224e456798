// The whole recurrence of a sequence in ONE dispatch (the small-batch "persistent" path).
// Batch rows are independent, so workgroup w owns rows [w*ROWS_PER_WG, ...) and loops over
// all T steps itself, with a workgroup barrier between steps: no grid-wide barrier.
//
// Forward  (BACKWARD = false), n = 1..T, in place in hs (T+1, B, H), hs[n] holding the
//   input projection on entry:      hs[n] = act(hs[n] + hs[n-1] W_hhᵀ)
// Backward (BACKWARD = true), n = T..1, in place in dz (T, B, H), dz[n-1] holding
//   W_hyᵀ dy_n (+ dL/dh_T) on entry: dz[n-1] = (dz[n-1] + dz[n] W_hh) ⊙ act'(hs[n])
// A REVERSE cell runs time backwards and keeps h_t at block t-1, h_0 at block T:
//   forward  t = T..1: hs[t-1] = act(hs[t-1] + hs[t] W_hhᵀ)
//   backward t = 1..T: dz[t-1] = (dz[t-1] + dz[t-2] W_hh) ⊙ act'(hs[t-1])
//
// Each invocation computes tiles of TILE_ROWS rows x 4 hidden units, tile after tile.
// With SHARED_W, W_hh is first copied into workgroup memory (H*H <= MAX_SHARED).
//
// MASKED: per-row lengths (PyTorch's packed sequences). At a time tau past a row's length
// the forward carries the state unchanged (h_tau = h of the step before, in the cell's own
// direction) and the backward writes dz = 0. dL/dh_n of a forward cell enters at tau =
// length (from aux); a reverse cell's dL/dh0 is W_hhᵀ dz at tau = length, written to aux
// at tau = length + 1 (one extra step past T for full-length rows).

struct Seq {
    t: u32, b: u32, h: u32, rows_per_wg: u32,
    aux_off: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 64u;
override TILE_ROWS: u32 = 4u;
override BACKWARD: bool = false;
override REVERSE: bool = false;
// 0 tanh, 1 relu
override ACT: u32 = 0u;
override SHARED_W: bool = false;
override MASKED: bool = false;

const MAX_SHARED: u32 = 4096u;

@group(0) @binding(0) var<uniform> p: Seq;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> hs: array<f32>;
// MASKED only: lengths (B) as floats, and dL/dh_n in (forward cell, backward) or dL/dh0
// out (reverse cell, backward) at aux_off.
@group(0) @binding(4) var<storage, read> lengths: array<f32>;
@group(0) @binding(5) var<storage, read_write> aux: array<f32>;

var<workgroup> w_shared: array<f32, MAX_SHARED>;

fn weight(idx: u32) -> f32 {
    if (SHARED_W) {
        return w_shared[idx];
    }
    return w[idx];
}

fn epilogue(v: f32, g: f32) -> f32 {
    if (BACKWARD) {
        if (ACT == 0u) {
            return v * (1.0 - g * g);
        }
        return select(0.0, v, g > 0.0);
    }
    if (ACT == 0u) {
        return tanh(clamp(v, -15.0, 15.0));
    }
    return max(v, 0.0);
}

@compute @workgroup_size(WG, 1, 1)
fn recurrence(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let h = p.h;
    let block = p.b * h;
    let row0 = wg.x * p.rows_per_wg;
    let rows = min(p.rows_per_wg, p.b - min(p.b, row0));
    let unit_tiles = (h + 3u) / 4u;
    let tiles = (rows + TILE_ROWS - 1u) / TILE_ROWS * unit_tiles;
    // forward B(k, j) = W_hh[j, k]; backward B(k, j) = W_hh[k, j]
    var w_k = 1u;
    var w_j = h;
    if (BACKWARD) {
        w_k = h;
        w_j = 1u;
    }
    if (SHARED_W) {
        for (var i = lid; i < h * h; i += WG) {
            w_shared[i] = w[i];
        }
        workgroupBarrier();
    }

    var steps = p.t;
    if (MASKED && BACKWARD && REVERSE) {
        steps = p.t + 1u;
    }
    for (var n = 0u; n < steps; n++) {
        // forward: read block n, write n+1; backward: read block T-n (none at n = 0),
        // write T-n-1, gate by hs block T-n.
        // Blocks this step reads (a) and writes (c), and the states that gate it (g).
        var a_blk = n;
        var c_blk = n + 1u;
        var k_len = h;
        if (BACKWARD != REVERSE) {
            a_blk = p.t - n;
            c_blk = p.t - n - 1u;
        }
        if (BACKWARD && REVERSE) {
            a_blk = max(n, 1u) - 1u;
            c_blk = n;
        }
        var g_blk = c_blk;
        if (!REVERSE) {
            g_blk = c_blk + 1u;
        }
        if (BACKWARD && n == 0u) {
            k_len = 0u;
        }
        // 1-based time of this step
        var tau = n + 1u;
        if (BACKWARD != REVERSE) {
            tau = p.t - n;
        }
        for (var tile = lid; tile < tiles; tile += WG) {
            let r0 = row0 + (tile / unit_tiles) * TILE_ROWS;
            let j0 = (tile % unit_tiles) * 4u;
            var a_row: array<u32, 4>;
            for (var r = 0u; r < TILE_ROWS; r++) {
                a_row[r] = a_blk * block + min(r0 + r, row0 + rows - 1u) * h;
            }
            let cols = min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(h - 1u));
            let wcol = cols * w_j;
            var acc = array<vec4<f32>, 4>();
            for (var k = 0u; k < k_len; k++) {
                let wk = wcol + k * w_k;
                let bv = vec4<f32>(weight(wk.x), weight(wk.y), weight(wk.z), weight(wk.w));
                for (var r = 0u; r < TILE_ROWS; r++) {
                    acc[r] += state[a_row[r] + k] * bv;
                }
            }
            for (var r = 0u; r < TILE_ROWS; r++) {
                let row = r0 + r;
                if (row >= row0 + rows) {
                    break;
                }
                var len = p.t;
                if (MASKED) {
                    len = u32(lengths[row]);
                }
                for (var s = 0u; s < 4u; s++) {
                    let j = j0 + s;
                    if (j >= h) {
                        break;
                    }
                    let ci = c_blk * block + row * h + j;
                    if (tau > len) {
                        if (BACKWARD) {
                            if (REVERSE && tau == len + 1u) {
                                aux[p.aux_off + row * h + j] = acc[r][s];
                            }
                            if (c_blk < p.t) {
                                state[ci] = 0.0;
                            }
                        } else {
                            state[ci] = state[a_blk * block + row * h + j];
                        }
                        continue;
                    }
                    var v = state[ci] + acc[r][s];
                    if (MASKED && BACKWARD && !REVERSE && tau == len) {
                        v += aux[p.aux_off + row * h + j];
                    }
                    var g = 0.0;
                    if (BACKWARD) {
                        g = hs[g_blk * block + row * h + j];
                    }
                    state[ci] = epilogue(v, g);
                }
            }
        }
        storageBarrier();
    }
}


// Zeros the rows of x (T, B, cols) that lie past their batch row's length (p.t = T,
// p.b = B, p.h = cols). One invocation per value; the grid may fold into y.
@compute @workgroup_size(WG, 1, 1)
fn mask_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= p.t * p.b * p.h) {
        return;
    }
    let row = i / p.h;
    if (row / p.b >= u32(lengths[row % p.b])) {
        state[i] = 0.0;
    }
}
