// Gradient clipping and optimizer update for one parameter tensor, elementwise.
// The global gradient norm is sqrt of the sum of norm_parts[0..parts) (fixed order);
// norm_parts[parts] is the step's loss. A non-finite norm or loss skips the update
// entirely, so one exploding step cannot poison the parameters.
// OPT: OPT_SGD (with momentum if > 0), OPT_ADAM, OPT_ADAGRAD or OPT_ADAMW, torch.optim's
// rules; the ids and CLIP_EPS are constants generated from the Rust definitions
// (src/train/optim.rs) and prepended to this source.
// Weight decay comes after clipping: added to the gradient (L2) for SGD, Adam and
// Adagrad, decoupled (w *= 1 − lr·wd, before the step) for AdamW.

struct Update {
    n: u32, parts: u32, _pad0: u32, _pad1: u32,
}

// Written before each training step's submit: the scheduled lr, the hyperparameters and
// Adam's bias corrections.
struct Hyper {
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    momentum: f32, weight_decay: f32, clip_norm: f32, clip_value: f32,
    bias_correction1: f32, bias_correction2: f32, _pad0: f32, _pad1: f32,
}

override WG: u32 = 64u;
override OPT: u32 = OPT_SGD;

@group(0) @binding(0) var<uniform> p: Update;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> norm_parts: array<f32>;
@group(0) @binding(6) var<storage, read> hyper: Hyper;

@compute @workgroup_size(WG, 1, 1)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = folded_index(gid, nwg, WG);
    if (i >= p.n) {
        return;
    }
    var sq = 0.0;
    for (var k = 0u; k < p.parts; k++) {
        sq += norm_parts[k];
    }
    let norm = sqrt(sq);
    let loss = norm_parts[p.parts];
    // NaN fails every comparison, so this also catches NaN.
    if (!(norm <= 3.0e38) || !(abs(loss) <= 3.0e38)) {
        return;
    }
    let h = hyper;
    var g = grad[i];
    // PyTorch's clip_grad_norm_: scale by min(1, max_norm / (norm + eps)).
    if (h.clip_norm > 0.0) {
        g *= min(1.0, h.clip_norm / (norm + CLIP_EPS));
    }
    if (h.clip_value > 0.0) {
        g = clamp(g, -h.clip_value, h.clip_value);
    }
    var w = param[i];
    if (OPT != OPT_ADAMW) {
        g += h.weight_decay * w;
    }
    switch OPT {
        case OPT_ADAM, OPT_ADAMW: {
            let mi = h.beta1 * m[i] + (1.0 - h.beta1) * g;
            let vi = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            let step = (mi / h.bias_correction1) / (sqrt(vi / h.bias_correction2) + h.eps);
            if (OPT == OPT_ADAMW) {
                w *= 1.0 - h.lr * h.weight_decay;
            }
            w -= h.lr * step;
        }
        case OPT_ADAGRAD: {
            let vi = v[i] + g * g;
            v[i] = vi;
            w -= h.lr * g / (sqrt(vi) + h.eps);
        }
        default: {
            if (h.momentum > 0.0) {
                let mi = h.momentum * m[i] + g;
                m[i] = mi;
                g = mi;
            }
            w -= h.lr * g;
        }
    }
    param[i] = w;
}
