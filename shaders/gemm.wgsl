// The register-tile product (struct Gemm and the epilogue: gemm_common.wgsl). Each
// invocation owns a TILE x TILE tile of C in registers (TILE = 4, generated from the Rust
// GEMM_TILE: a tile's row is one vec4), reading A and B straight from memory;
// out-of-range rows and columns are clamped on load (so no branch in the inner loop) and
// skipped on store. No workgroup memory: the fastest shape on lavapipe.

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * TILE;
    let j0 = gid.x * TILE;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    var rows = vec4<u32>();
    var cols = vec4<u32>();
    for (var r = 0u; r < TILE; r++) {
        rows[r] = min(i0 + r, p.m - 1u);
        cols[r] = min(j0 + r, p.n - 1u);
    }
    let a_row = p.a_off + rows * p.a_rs;
    let b_col = p.b_off + cols * p.b_cs;

    var acc = array<vec4<f32>, 4>();
    for (var q = 0u; q < p.k; q++) {
        let bq = b_col + q * p.b_rs;
        let bv = vec4<f32>(b[bq.x], b[bq.y], b[bq.z], b[bq.w]);
        let aq = a_row + q * p.a_cs;
        acc[0] += a[aq.x] * bv;
        acc[1] += a[aq.y] * bv;
        acc[2] += a[aq.z] * bv;
        acc[3] += a[aq.w] * bv;
    }

    for (var r = 0u; r < TILE; r++) {
        for (var s = 0u; s < TILE; s++) {
            if (i0 + r < p.m && j0 + s < p.n) {
                store_c(i0 + r, j0 + s, acc[r][s]);
            }
        }
    }
}
