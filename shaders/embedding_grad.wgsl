// dL/d(table)[v, j] = Σ dx[row, j] over the rows that read token v, one invocation per
// value of the table (n = V·E). The host sorts the rows by id (a stable counting sort):
// `order` lists the rows, token v's from offsets[v] to offsets[v + 1], in (t, b) order.
// Each sum runs in that order, so the result is the same bits on every run; tokens that
// no row read get 0.

@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> dx: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn embedding_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = folded_index(gid, groups, WG);
    if (i >= p.n) {
        return;
    }
    let v = i / p.e;
    let j = i % p.e;
    var acc = 0.0;
    for (var k = offsets[v]; k < offsets[v + 1u]; k = k + 1u) {
        acc = acc + dx[order[k] * p.e + j];
    }
    grad[p.w_off + i] = acc;
}
