// x[row, j] = table[ids[row], j], one invocation per value of x (n = T·B·E). The host
// refuses ids ≥ V; the clamp keeps a stray one inside the table all the same.

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn embedding_gather(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = folded_index(gid, groups, WG);
    if (i >= p.n) {
        return;
    }
    let id = min(ids[i / p.e], p.vocab - 1u);
    x[i] = table[p.w_off + id * p.e + i % p.e];
}
