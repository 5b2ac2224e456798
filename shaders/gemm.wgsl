// Strided matrix product with a fused epilogue; every product of the RNN is one of these.
//
//   C(i,j) = epi( sum_p A(i,p) B(p,j) + bias(j) + [C(i,j) if ACCUMULATE] )
//   A(i,p) = a[a_off + i*a_rs + p*a_cs]      (M, K)
//   B(p,j) = b[b_off + p*b_rs + j*b_cs]      (K, N)
//   C(i,j) = c[c_off + i*c_rs + j]           (M, N), G has C's layout at g_off
//
// Transposes are stride choices. EPILOGUE: 0 none, 1 tanh, 2 relu,
// 3 times tanh'(G) = 1 - G^2, 4 times relu'(G) = [G > 0], with G the stored activations.
// Each invocation owns a 4x4 tile of C in registers; out-of-range rows and columns are
// clamped on load (so no branch in the inner loop) and skipped on store.

struct Gemm {
    m: u32, n: u32, k: u32, bias_off: u32,
    a_off: u32, a_rs: u32, a_cs: u32, g_off: u32,
    b_off: u32, b_rs: u32, b_cs: u32, _pad0: u32,
    c_off: u32, c_rs: u32, _pad1: u32, _pad2: u32,
}

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override EPILOGUE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Gemm;
// A is read_write only so that it may alias C (the recurrence reads step t-1 of the same
// buffer it writes step t into); the kernel never writes it.
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;

// tanh is exact to f32 beyond |x| = 15; some backends return NaN for large |x|.
fn act(x: f32) -> f32 {
    switch EPILOGUE {
        case 1u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 2u: { return max(x, 0.0); }
        default: { return x; }
    }
}

fn act_grad(h: f32) -> f32 {
    switch EPILOGUE {
        case 3u: { return 1.0 - h * h; }
        case 4u: { return select(0.0, 1.0, h > 0.0); }
        default: { return 1.0; }
    }
}

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
            if (EPILOGUE >= 3u) {
                v *= act_grad(g[p.g_off + i * p.c_rs + j]);
            } else {
                v = act(v);
            }
            c[ci] = v;
        }
    }
}
