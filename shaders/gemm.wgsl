// Strided matrix product; every product of the model outside the recurrence is one.
//
//   C(i,j) = sum_p A(i,p) B(p,j) + bias(j) + [C(i,j) if ACCUMULATE]
//   A(i,p) = a[a_off + i*a_rs + p*a_cs]      (M, K)
//   B(p,j) = b[b_off + p*b_rs + j*b_cs]      (K, N)
//   C(i,j) = c[c_off + i*c_rs + j]           (M, N)
//
// Transposes are stride choices. Each invocation owns a 4x4 tile of C in registers;
// out-of-range rows and columns are clamped on load (so no branch in the inner loop) and
// skipped on store.

struct Gemm {
    m: u32, n: u32, k: u32, bias_off: u32,
    a_off: u32, a_rs: u32, a_cs: u32, _pad0: u32,
    b_off: u32, b_rs: u32, b_cs: u32, _pad1: u32,
    c_off: u32, c_rs: u32, _pad2: u32, _pad3: u32,
}

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    var rows: vec4<u32>;
    var cols: vec4<u32>;
    for (var r = 0u; r < 4u; r++) {
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

    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i >= p.m) {
            break;
        }
        for (var s = 0u; s < 4u; s++) {
            let j = j0 + s;
            if (j >= p.n) {
                break;
            }
            let ci = p.c_off + i * p.c_rs + j;
            var v = acc[r][s];
            if (HAS_BIAS) {
                v += bias[p.bias_off + j];
            }
            if (ACCUMULATE) {
                v += c[ci];
            }
            c[ci] = v;
        }
    }
}
