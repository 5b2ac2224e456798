// Shared by every kernel; prepended to each source when it is loaded.

// tanh(9.1) already rounds to 1 in f32; some backends return NaN for tanh of large |x|,
// so the argument is clamped well past that.
const TANH_LIMIT: f32 = 15.0;

fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -TANH_LIMIT, TANH_LIMIT));
}

// The logistic function without overflow: exp of a non-positive argument only.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, x >= 0.0);
}

// Index of a one-dimensional invocation whose grid was folded into a second dimension
// past the per-dimension workgroup limit (workgroups of `wg` invocations).
fn folded_index(gid: vec3<u32>, groups: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * groups.x * wg;
}
