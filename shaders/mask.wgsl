// Zeros the rows of x (T, B, cols) that lie past their batch row's length: y before the
// loss and dL/dy before the backward of a variable-length batch. One invocation per value.

struct Mask {
    t: u32, b: u32, cols: u32, _pad0: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Mask;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> lengths: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn mask_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = folded_index(gid, groups, WG);
    if (i >= p.t * p.b * p.cols) {
        return;
    }
    let row = i / p.cols;
    if (row / p.b >= u32(lengths[row % p.b])) {
        x[i] = 0.0;
    }
}
