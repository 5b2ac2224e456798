@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> key: array<u32, 8>;

@compute @workgroup_size(WG, 1, 1)
fn dropout_copy(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = folded_index(gid, groups, WG);
    if (i >= p.n) {
        return;
    }
    dst[i] = src[p.src_off + i] * factor(i);
}
