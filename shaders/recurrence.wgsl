// What the two recurrence kernels share (recurrence_forward.wgsl, recurrence_backward.wgsl).
//
// A cell's recurrence runs as iterations over time: one dispatch per iteration (the
// stepwise path, many workgroups each owning a block of batch rows x hidden units) or one
// dispatch for all of them (the persistent path: a workgroup owns whole batch rows, all
// units, and loops, with a barrier between iterations; rows are independent, so there is
// no grid-wide barrier). Iterations [first, first + steps) run in this dispatch.
//
// Layouts, in f32 elements. A cell's states buffer holds h (T+1, B, H) and, for LSTM, c
// in the same layout at state_c. A forward cell keeps h_0 at block 0 and h_t at block t;
// a REVERSE cell h_t at block t-1 and h_0 at block T. pre/dp/dr are (T, B, G*H), saved
// (T, B, S*H), dh (T, B, H), all indexed by 0-based time t-1.
//
// VARIABLE_LENGTH: per-row lengths (PyTorch's packed sequences). At a time past a row's
// length the forward carries h (and c) unchanged and the backward passes dL/dh (and dL/dc)
// through, with dp = dr = 0 there.
//
// Locals inside loops are zeroed by explicit initializers (`var acc = T();`), not by
// `var acc: T;`: Chromium (Tint on SwiftShader) zeroed the latter once per invocation rather
// than at each iteration, so a second time step summed onto the first one's products.
//
// The cell's ids (CELL_RNN, CELL_LSTM, ...) are constants generated from the Rust
// CellKind and prepended to the source; CELL is one of them, HAS_C whether it carries c.

struct Seq {
    t: u32, b: u32, h: u32, rows_per_wg: u32,
    units_per_wg: u32, first: u32, steps: u32, state_c: u32,
    grad_h: u32, grad_c: u32, w_off: u32, b_off: u32,
}

override WG: u32 = 64u;
// Batch rows per register tile (1 or 4); each invocation owns TILE_ROWS rows x 4 units.
override TILE_ROWS: u32 = 4u;
// G: gates of the cell; S: values saved per unit and step.
override G: u32 = 1u;
override S: u32 = 0u;
override REVERSE: bool = false;
override VARIABLE_LENGTH: bool = false;
override CELL: u32 = CELL_RNN;
override HAS_C: bool = false;
// Elements of W_hh copied into workgroup memory (G*H*H), or 1: read from storage.
override SHARED_LEN: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Seq;
// W_hh (G*H, H), row-major, from w_off (b_hh, where bound, from b_off).
@group(0) @binding(2) var<storage, read> w: array<f32>;
// VARIABLE_LENGTH only: per-row lengths (B) as floats.
@group(0) @binding(6) var<storage, read> lengths: array<f32>;

var<workgroup> w_shared: array<f32, SHARED_LEN>;

fn load_shared_weights(lid: u32) {
    if (SHARED_LEN > 1u) {
        for (var i = lid; i < SHARED_LEN; i += WG) {
            w_shared[i] = w[p.w_off + i];
        }
        workgroupBarrier();
    }
}

fn weight(i: u32) -> f32 {
    if (SHARED_LEN > 1u) {
        return w_shared[i];
    }
    return w[p.w_off + i];
}

// The batch rows and hidden units a workgroup owns.
struct Region {
    row0: u32,
    rows: u32,
    unit0: u32,
    units: u32,
}

fn region(wg: vec3<u32>) -> Region {
    let row0 = wg.y * p.rows_per_wg;
    let unit0 = wg.x * p.units_per_wg;
    return Region(row0, min(p.rows_per_wg, p.b - min(p.b, row0)), unit0,
                  min(p.units_per_wg, p.h - min(p.h, unit0)));
}

// Register tiles in a region, and the first row and unit of tile `i`.
fn tile_count(r: Region) -> u32 {
    return (r.rows + TILE_ROWS - 1u) / TILE_ROWS * ((r.units + 3u) / 4u);
}

fn tile_origin(r: Region, i: u32) -> vec2<u32> {
    let unit_tiles = (r.units + 3u) / 4u;
    return vec2<u32>(r.row0 + (i / unit_tiles) * TILE_ROWS, r.unit0 + (i % unit_tiles) * 4u);
}

// Time and block indexing, as the Rust model::Timeline (the same names):
// 1-based time of forward iteration n (a reverse cell starts at T).
fn forward_time(n: u32) -> u32 {
    return select(n + 1u, p.t - n, REVERSE);
}

// Time of backward iteration n: the forward order reversed.
fn backward_time(n: u32) -> u32 {
    return select(p.t - n, n + 1u, REVERSE);
}

// Block of the states written at time tau, and of the ones it reads.
fn out_block(tau: u32) -> u32 {
    return select(tau, tau - 1u, REVERSE);
}

fn prev_block(tau: u32) -> u32 {
    return select(tau - 1u, tau, REVERSE);
}

// Steps of batch row `row` (T unless VARIABLE_LENGTH).
fn row_length(row: u32) -> u32 {
    if (VARIABLE_LENGTH) {
        return u32(lengths[row]);
    }
    return p.t;
}
