// Column sums for bias gradients: out(j) = sum_r x(r, j), x is (rows, cols) row-major.
// One invocation per column, rows summed in a fixed order: no atomics, so the result is
// bitwise reproducible on a given adapter.

struct Reduce {
    rows: u32, cols: u32, in_off: u32, out_off: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Reduce;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn col_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.cols) {
        return;
    }
    // Four interleaved partial sums: shorter dependency chains and less rounding drift
    // over long columns, still one fixed order.
    var s = vec4<f32>();
    var r = 0u;
    for (; r + 4u <= p.rows; r += 4u) {
        let base = p.in_off + r * p.cols + j;
        s += vec4<f32>(x[base], x[base + p.cols], x[base + 2u * p.cols], x[base + 3u * p.cols]);
    }
    for (; r < p.rows; r++) {
        s.x += x[p.in_off + r * p.cols + j];
    }
    out[p.out_off + j] = (s.x + s.y) + (s.z + s.w);
}

// Sums of squares of x[in_off .. in_off + rows] in chunks of `cols` values, one workgroup
// per chunk writing out[out_off + chunk]; for the global gradient norm (a fixed-order tree
// in each workgroup, the chunks added in order by whoever reads them).
var<workgroup> partial: array<f32, WG>;

// This invocation's share of chunk `chunk`'s sum of squares.
fn squares_of_share(chunk: u32, lid: u32) -> f32 {
    let begin = chunk * p.cols;
    let end = min(p.rows, begin + p.cols);
    var s = 0.0;
    for (var r = begin + lid; r < end; r += WG) {
        let v = x[p.in_off + r];
        s += v * v;
    }
    return s;
}

@compute @workgroup_size(WG, 1, 1)
fn sum_squares(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    partial[lid] = squares_of_share(wid.x, lid);
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w /= 2u) {
        if (lid < w) {
            partial[lid] += partial[lid + w];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[p.out_off + wid.x] = partial[0];
    }
}
