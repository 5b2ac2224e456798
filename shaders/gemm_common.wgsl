// The strided product both gemm kernels compute (gemm.wgsl, gemm_tiled.wgsl):
//
//   C(i,j) = sum_p A(i,p) B(p,j) + bias(j) + [C(i,j) if ACCUMULATE]
//   A(i,p) = a[a_off + i*a_rs + p*a_cs]      (M, K)
//   B(p,j) = b[b_off + p*b_rs + j*b_cs]      (K, N)
//   C(i,j) = c[c_off + i*c_rs + j]           (M, N)
//
// Transposes are stride choices. Split K (tiled kernel only): workgroup z sums p over
// [z*k_split, min(K, (z+1)*k_split)) and writes its raw partial to c[(z*M + i)*N + j], a
// scratch buffer; gemm_split_sum adds the `splits` partials in order, then the epilogue.

struct Gemm {
    m: u32, n: u32, k: u32, bias_off: u32,
    a_off: u32, a_rs: u32, a_cs: u32, k_split: u32,
    b_off: u32, b_rs: u32, b_cs: u32, splits: u32,
    c_off: u32, c_rs: u32, _pad0: u32, _pad1: u32,
}

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// The epilogue: C(i,j) = v + bias(j) [+ C(i,j)].
fn store_c(i: u32, j: u32, v: f32) {
    let ci = p.c_off + i * p.c_rs + j;
    var out = v;
    if (HAS_BIAS) {
        out += bias[p.bias_off + j];
    }
    if (ACCUMULATE) {
        out += c[ci];
    }
    c[ci] = out;
}
