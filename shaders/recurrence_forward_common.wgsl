// What the two forward recurrence kernels share (recurrence_forward.wgsl and
// recurrence_forward_subgroup.wgsl): their bindings and the end of one unit's step.

override HAS_BIAS: bool = true;

// The input projection x W_ih^T + b_ih.
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(3) var<storage, read> b_hh: array<f32>;
@group(0) @binding(4) var<storage, read_write> states: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;

// Unit j of batch row `row` at time tau, given its recurrent product rv[g] = (h_prev
// W_hh^T)[g*H + j] for each gate g: adds b_hh, runs the cell and writes h (and c) at
// block `cur` and the saved values; past the row's length it carries h (and c) from
// block `prev` instead.
fn finish_unit(tau: u32, cur: u32, prev: u32, row: u32, j: u32, product: vec4<f32>) {
    let h = p.h;
    let hi = cur + row * h + j;
    let hp = prev + row * h + j;
    if (tau > row_length(row)) {
        states[hi] = states[hp];
        if (HAS_C) {
            states[p.state_c + hi] = states[p.state_c + hp];
        }
        return;
    }
    let at = ((tau - 1u) * p.b + row) * G * h + j;
    var pv = vec4<f32>();
    var rv = product;
    for (var g = 0u; g < G; g++) {
        pv[g] = pre[at + g * h];
        if (HAS_BIAS) {
            rv[g] += b_hh[p.b_off + g * h + j];
        }
    }
    var c_prev = 0.0;
    if (HAS_C) {
        c_prev = states[p.state_c + hp];
    }
    let u = step_forward(pv, rv, states[hp], c_prev);
    states[hi] = u.h;
    if (HAS_C) {
        states[p.state_c + hi] = u.c;
    }
    let sv = ((tau - 1u) * p.b + row) * S * h + j;
    for (var q = 0u; q < S; q++) {
        saved[sv + q * h] = u.saved[q];
    }
}
