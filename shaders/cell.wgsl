// The cells' pointwise math, one unit at a time; src/cpu/cell.rs is the f64 reference.
// A unit j sees its gate pre-activations split as p[g] = (W_ih x + b_ih)[g*H + j] and
// r[g] = (W_hh h_prev + b_hh)[g*H + j], g < G.
//
// CELL (declared in recurrence.wgsl) is one of the ids generated from the Rust CellKind:
// CELL_RNN Elman (G = 1): h = act(p + r), act = tanh, or relu with RELU.
// CELL_LSTM (G = 4, gates i f g o): c = f c_prev + i g, h = o tanh(c);
//   saves (i, f, g, o).
// CELL_GRU (G = 3, gates r z n): n = tanh(p_n + r r_n), h = (1 - z) n + z h_prev;
//   saves (r, z, n, r_n).

override RELU: bool = false;

struct UnitForward {
    h: f32,
    c: f32,
    saved: vec4<f32>,
}

fn step_forward(p: vec4<f32>, r: vec4<f32>, h_prev: f32, c_prev: f32) -> UnitForward {
    var u = UnitForward();
    switch CELL {
        case CELL_LSTM: {
            let i = sigmoid(p.x + r.x);
            let f = sigmoid(p.y + r.y);
            let g = tanh_safe(p.z + r.z);
            let o = sigmoid(p.w + r.w);
            u.c = f * c_prev + i * g;
            u.h = o * tanh_safe(u.c);
            u.saved = vec4<f32>(i, f, g, o);
        }
        case CELL_GRU: {
            let rg = sigmoid(p.x + r.x);
            let z = sigmoid(p.y + r.y);
            let n = tanh_safe(p.z + rg * r.z);
            u.h = (1.0 - z) * n + z * h_prev;
            u.saved = vec4<f32>(rg, z, n, r.z);
        }
        default: {
            let a = p.x + r.x;
            u.h = select(tanh_safe(a), max(a, 0.0), RELU);
        }
    }
    return u;
}

// dp: dL/dp per gate; dr: dL/dr per gate (dp but for GRU's n: dp r); dh_prev: the part of
// dL/dh_prev that skips W_hh (GRU's z dh); dc_prev: dL/dc_prev (LSTM).
struct UnitBackward {
    dp: vec4<f32>,
    dr: vec4<f32>,
    dh_prev: f32,
    dc_prev: f32,
}

// From dL/dh and dL/dc of the step's outputs h and c, its inputs h_prev and c_prev, and
// what it saved.
fn step_backward(dh: f32, dc_out: f32, s: vec4<f32>, h: f32, h_prev: f32, c_prev: f32,
                 c: f32) -> UnitBackward {
    var u = UnitBackward();
    switch CELL {
        case CELL_LSTM: {
            let tc = tanh_safe(c);
            let dc = dc_out + dh * s.w * (1.0 - tc * tc);
            u.dp = vec4<f32>(
                dc * s.z * s.x * (1.0 - s.x),
                dc * c_prev * s.y * (1.0 - s.y),
                dc * s.x * (1.0 - s.z * s.z),
                dh * tc * s.w * (1.0 - s.w),
            );
            u.dr = u.dp;
            u.dc_prev = dc * s.y;
        }
        case CELL_GRU: {
            let dn = dh * (1.0 - s.y) * (1.0 - s.z * s.z);
            u.dp = vec4<f32>(dn * s.w * s.x * (1.0 - s.x), dh * (h_prev - s.z) * s.y * (1.0 - s.y),
                             dn, 0.0);
            u.dr = vec4<f32>(u.dp.x, u.dp.y, dn * s.x, 0.0);
            u.dh_prev = dh * s.y;
        }
        default: {
            var grad = 1.0 - h * h;
            if (RELU) {
                grad = select(0.0, 1.0, h > 0.0);
            }
            u.dp = vec4<f32>(dh * grad, 0.0, 0.0, 0.0);
            u.dr = u.dp;
        }
    }
    return u;
}
