// Dropout of one cell's outputs (see src/model/dropout.rs): a training step keeps unit j
// of row (t, b) when Philox4x32-10 of counter (step, layer, (t*B + b)*width + unit0 + j)
// and key (seed) gives a first word >= threshold, and scales it by `scale`; otherwise 0.
// With the key's `enabled` word 0 (evaluation, inference) values pass through unchanged.
// dropout_copy writes the dropped outputs (T*B, H) the next layer or the head reads;
// dropout_grad applies the same mask to dL/d(outputs) in place.

struct Dropout {
    n: u32, h: u32, width: u32, unit0: u32,
    layer: u32, threshold: u32, scale: f32, src_off: u32,
    b: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Dropout;

// (hi, lo) words of the 64-bit product a * b, from 16-bit halves (WGSL has no u64).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox_first(counter: vec4<u32>, key: vec2<u32>) -> u32 {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mul_hi_lo(0xD2511F53u, c.x);
        let p1 = mul_hi_lo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c.x;
}

// The factor for element i (row i / h, unit i % h) of this cell: 1 where the key is off.
// `key` (seed lo, hi, step lo, hi, enabled, first row, whole batch, 0) is bound by the file
// that includes this. A data-parallel rank's rows are rows first_row.. of a whole batch,
// whose (t, b) counts the mask draws (whole batch 0: the rows are the whole batch).
fn factor(i: u32) -> f32 {
    if (key[4] == 0u) {
        return 1.0;
    }
    var row = i / p.h;
    if (key[6] != 0u) {
        row = (row / p.b) * key[6] + key[5] + row % p.b;
    }
    let index = row * p.width + p.unit0 + i % p.h;
    let r = philox_first(vec4<u32>(key[2], key[3], p.layer, index), vec2<u32>(key[0], key[1]));
    return select(0.0, p.scale, r >= p.threshold);
}
