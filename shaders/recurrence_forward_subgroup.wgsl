// The forward recurrence (recurrence_forward.wgsl) with subgroup operations, for adapters
// with Features::SUBGROUP. A subgroup owns one hidden unit j at a time, all G gates, for
// up to 4 batch rows at a time: its lanes split k, so each reads W_hh's rows g*H + j and
// h_prev's rows at consecutive k (the plain kernel's neighbouring invocations read W_hh
// rows H apart), and subgroupAdd sums the lanes' parts. Every loop bound is the same
// across the workgroup, so the subgroup operations run in uniform control flow: lanes
// past the end read a clamped index and add zero. The sums are fixed by the adapter's
// subgroup size, so a run is bitwise reproducible on one adapter.

@compute @workgroup_size(WG, 1, 1)
fn recurrence_forward_subgroup(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) subgroups: u32,
) {
    let h = p.h;
    let block = p.b * h;
    let reg = region(wg);
    load_shared_weights(lid);
    let first = first_iteration();
    for (var n = first; n < first + p.steps; n++) {
        let tau = forward_time(n);
        let cur = out_block(tau) * block;
        let prev = prev_block(tau) * block;
        for (var u0 = 0u; u0 < reg.units; u0 += subgroups) {
            let live = u0 + sid < reg.units;
            let j = reg.unit0 + min(u0 + sid, reg.units - 1u);
            for (var r0 = 0u; r0 < reg.rows; r0 += 4u) {
                var h_row = array<u32, 4>();
                for (var r = 0u; r < 4u; r++) {
                    h_row[r] = prev + (reg.row0 + min(r0 + r, reg.rows - 1u)) * h;
                }
                // acc[r][g]: gate g of unit j, row r0 + r, this lane's part.
                var acc = array<vec4<f32>, 4>();
                for (var k0 = 0u; k0 < h; k0 += lanes) {
                    let on = k0 + lane < h;
                    let k = min(k0 + lane, h - 1u);
                    var wv = vec4<f32>();
                    for (var g = 0u; g < G; g++) {
                        wv[g] = select(0.0, weight((g * h + j) * h + k), on);
                    }
                    for (var r = 0u; r < 4u; r++) {
                        acc[r] += select(0.0, states[h_row[r] + k], on) * wv;
                    }
                }
                for (var r = 0u; r < 4u; r++) {
                    acc[r] = subgroupAdd(acc[r]);
                }
                // Lane r finishes row r0 + r.
                for (var r = lane; r < 4u; r += lanes) {
                    if (live && r0 + r < reg.rows) {
                        finish_unit(tau, cur, prev, reg.row0 + r0 + r, j, acc[r]);
                    }
                }
            }
        }
        storageBarrier();
    }
}
