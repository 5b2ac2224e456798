// The embedding before layer 0 (src/model/plan.rs): x (T·B, E) gathers rows of the table
// (V, E) by token id; its backward sums dL/dx into the rows of dL/d(table) per id, in a
// fixed order and without atomics, so that every run gives the same bits.

struct Embedding {
    n: u32, e: u32, vocab: u32, w_off: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Embedding;
