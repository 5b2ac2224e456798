// The workgroup-memory tiled product (struct Gemm and the epilogue: gemm_common.wgsl),
// the shape of the fast GPU products. A workgroup owns a BM x BN block of C and walks K in
// slices of BK: it stages A's BM x BK and B's BK x BN slices in workgroup memory (loads
// mapped so that neighbouring invocations read neighbouring addresses whichever operand
// dimension is contiguous, indices clamped and values outside the matrix zeroed), then
// each of its (BN/TILE) x (BM/TILE) invocations accumulates a TILE x TILE register tile
// (TILE = 4, generated from the Rust GEMM_TILE) from vec4 reads of the staged slices, the
// inner loop unrolled by 4 with no bounds checks.

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// Invocations per workgroup, (BN/TILE) * (BM/TILE).
override THREADS: u32 = BM * BN / (TILE * TILE);
// Workgroup z computes a partial over its own range of K (see gemm_common.wgsl).
override SPLIT: bool = false;
// Loads as vec4s along an operand's contiguous dimension where its offset and other
// stride are multiples of 4 (the host checks): A 1 along K, 2 along M; B 1 along N, 2
// along K; 0 one value at a time.
override VEC_A: u32 = 0u;
override VEC_B: u32 = 0u;

// The same buffers as a and b, seen as vec4s (every tensor buffer is a multiple of 16
// bytes long).
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

const LANES = vec4<u32>(0u, 1u, 2u, 3u);

// Slice p of K is row p: a_tile[p * BM/4 + i/4][i%4] = A(i0 + i, k0 + p).
var<workgroup> a_tile: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> b_tile: array<vec4<f32>, BK * BN / 4u>;

fn load_a_tile(i0: u32, k0: u32, k_end: u32, lid: u32) {
    let k_major = p.a_cs == 1u;
    for (var e = lid; e < BM * BK; e += THREADS) {
        var i = e % BM;
        var q = e / BM;
        if (k_major) {
            i = e / BK;
            q = e % BK;
        }
        let gi = i0 + i;
        let gq = k0 + q;
        let v = a[p.a_off + min(gi, p.m - 1u) * p.a_rs + min(gq, k_end - 1u) * p.a_cs];
        a_tile[q * (BM / 4u) + i / 4u][i % 4u] = select(0.0, v, gi < p.m && gq < k_end);
    }
}

fn load_a_tile_vec4(i0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var e = lid; e < BM * BK / 4u; e += THREADS) {
        if (VEC_A == 1u) {
            let i = e / (BK / 4u);
            let q = e % (BK / 4u) * 4u;
            let gi = i0 + i;
            let gq = k0 + q;
            let v = a4[(p.a_off + min(gi, p.m - 1u) * p.a_rs + min(gq, k_end - 1u)) / 4u];
            let w = select(vec4<f32>(), v, (vec4<u32>(gq) + LANES < vec4<u32>(k_end)) & vec4<bool>(gi < p.m));
            for (var c = 0u; c < 4u; c++) {
                a_tile[(q + c) * (BM / 4u) + i / 4u][i % 4u] = w[c];
            }
        } else {
            let q = e / (BM / 4u);
            let i = e % (BM / 4u) * 4u;
            let gi = i0 + i;
            let gq = k0 + q;
            let v = a4[(p.a_off + min(gq, k_end - 1u) * p.a_cs + min(gi, p.m - 1u)) / 4u];
            let ok = (vec4<u32>(gi) + LANES < vec4<u32>(p.m)) & vec4<bool>(gq < k_end);
            a_tile[q * (BM / 4u) + i / 4u] = select(vec4<f32>(), v, ok);
        }
    }
}

fn load_b_tile_vec4(j0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var e = lid; e < BN * BK / 4u; e += THREADS) {
        if (VEC_B == 1u) {
            let q = e / (BN / 4u);
            let j = e % (BN / 4u) * 4u;
            let gj = j0 + j;
            let gq = k0 + q;
            let v = b4[(p.b_off + min(gq, k_end - 1u) * p.b_rs + min(gj, p.n - 1u)) / 4u];
            let ok = (vec4<u32>(gj) + LANES < vec4<u32>(p.n)) & vec4<bool>(gq < k_end);
            b_tile[q * (BN / 4u) + j / 4u] = select(vec4<f32>(), v, ok);
        } else {
            let j = e / (BK / 4u);
            let q = e % (BK / 4u) * 4u;
            let gj = j0 + j;
            let gq = k0 + q;
            let v = b4[(p.b_off + min(gj, p.n - 1u) * p.b_cs + min(gq, k_end - 1u)) / 4u];
            let w = select(vec4<f32>(), v, (vec4<u32>(gq) + LANES < vec4<u32>(k_end)) & vec4<bool>(gj < p.n));
            for (var c = 0u; c < 4u; c++) {
                b_tile[(q + c) * (BN / 4u) + j / 4u][j % 4u] = w[c];
            }
        }
    }
}

fn load_b_tile(j0: u32, k0: u32, k_end: u32, lid: u32) {
    let n_major = p.b_cs == 1u;
    for (var e = lid; e < BN * BK; e += THREADS) {
        var j = e / BK;
        var q = e % BK;
        if (n_major) {
            j = e % BN;
            q = e / BN;
        }
        let gj = j0 + j;
        let gq = k0 + q;
        let v = b[p.b_off + min(gq, k_end - 1u) * p.b_rs + min(gj, p.n - 1u) * p.b_cs];
        b_tile[q * (BN / 4u) + j / 4u][j % 4u] = select(0.0, v, gj < p.n && gq < k_end);
    }
}

// acc += av ⊗ bv (rows of the 4x4 tile from av, columns from bv).
fn fma_tile(acc: ptr<function, array<vec4<f32>, 4>>, av: vec4<f32>, bv: vec4<f32>) {
    (*acc)[0] += av.x * bv;
    (*acc)[1] += av.y * bv;
    (*acc)[2] += av.z * bv;
    (*acc)[3] += av.w * bv;
}

@compute @workgroup_size(BN / TILE, BM / TILE, 1)
fn gemm_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i0 = wid.y * BM;
    let j0 = wid.x * BN;
    var k_begin = 0u;
    var k_end = p.k;
    if (SPLIT) {
        k_begin = wid.z * p.k_split;
        k_end = min(p.k, k_begin + p.k_split);
    }
    let tx = lid3.x;
    let ty = lid3.y;

    var acc = array<vec4<f32>, 4>();
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        if (VEC_A == 0u) {
            load_a_tile(i0, k0, k_end, lid);
        } else {
            load_a_tile_vec4(i0, k0, k_end, lid);
        }
        if (VEC_B == 0u) {
            load_b_tile(j0, k0, k_end, lid);
        } else {
            load_b_tile_vec4(j0, k0, k_end, lid);
        }
        workgroupBarrier();
        for (var q = 0u; q < BK; q += 4u) {
            fma_tile(&acc, a_tile[q * (BM / 4u) + ty], b_tile[q * (BN / 4u) + tx]);
            fma_tile(&acc, a_tile[(q + 1u) * (BM / 4u) + ty], b_tile[(q + 1u) * (BN / 4u) + tx]);
            fma_tile(&acc, a_tile[(q + 2u) * (BM / 4u) + ty], b_tile[(q + 2u) * (BN / 4u) + tx]);
            fma_tile(&acc, a_tile[(q + 3u) * (BM / 4u) + ty], b_tile[(q + 3u) * (BN / 4u) + tx]);
        }
        workgroupBarrier();
    }

    let bi = i0 + ty * 4u;
    let bj = j0 + tx * 4u;
    for (var r = 0u; r < 4u; r++) {
        for (var s = 0u; s < 4u; s++) {
            let i = bi + r;
            let j = bj + s;
            if (i < p.m && j < p.n) {
                if (SPLIT) {
                    c[(wid.z * p.m + i) * p.n + j] = acc[r][s];
                } else {
                    store_c(i, j, acc[r][s]);
                }
            }
        }
    }
}

// C = the sum of the `splits` partials in a (the scratch buffer), in order, then the
// epilogue: one invocation per element of C.
@compute @workgroup_size(64, 1, 1)
fn gemm_split_sum(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = folded_index(gid, nwg, 64u);
    let mn = p.m * p.n;
    if (e >= mn) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        s += a[z * mn + e];
    }
    store_c(e / p.n, e % p.n, s);
}
