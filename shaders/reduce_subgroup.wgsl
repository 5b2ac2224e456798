// sum_squares (reduce.wgsl) with subgroup operations, for adapters with
// Features::SUBGROUP: each subgroup adds its lanes' sums with subgroupAdd, the first lane
// of each stores it, and invocation 0 adds the subgroups' sums in order. Subgroups are
// taken as consecutive runs of local_invocation_index (as Vulkan, Metal and D3D12 lay out
// a one-dimensional workgroup).
var<workgroup> subgroup_sums: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn sum_squares_subgroup(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let total = subgroupAdd(squares_of_share(wid.x, lid));
    if (lane == 0u) {
        subgroup_sums[lid / lanes] = total;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0.0;
        for (var k = 0u; k < (WG + lanes - 1u) / lanes; k++) {
            t += subgroup_sums[k];
        }
        out[p.out_off + wid.x] = t;
    }
}
