// Losses over rows of y (rows, cols): each invocation owns one row, writes its weighted
// loss to row_loss and dL/dy for the row into dy. weight (rows) masks or weights rows;
// scale[0] is the normaliser (1 / sum of weights, times 1 / cols for MSE), set per batch.
//
// softmax_xent: target (rows) holds class indices as f32;
//   loss = w * (logsumexp(y) - y[target]),  dy = w * (softmax(y) - onehot(target)).
// mse: target (rows, cols) holds values;
//   loss = w * sum (y - target)^2,          dy = 2 w (y - target).

struct Rows {
    rows: u32, cols: u32, _pad0: u32, _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Rows;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let w = weight[r] * scale[0];
    let t = min(u32(max(tgt[r], 0.0)), p.cols - 1u);
    var m = y[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, y[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        s += exp(y[base + j] - m);
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.cols; j++) {
        let q = exp(y[base + j] - m) * inv;
        dy[base + j] = w * (q - select(0.0, 1.0, j == t));
    }
    row_loss[r] = w * (m + log(s) - y[base + t]);
}

@compute @workgroup_size(WG, 1, 1)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let w = weight[r] * scale[0];
    var l = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let d = y[base + j] - tgt[base + j];
        l += d * d;
        dy[base + j] = 2.0 * w * d;
    }
    row_loss[r] = w * l;
}
