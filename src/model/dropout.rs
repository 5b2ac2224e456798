//! Dropout between layers (PyTorch's `dropout=p` of nn.RNN/LSTM/GRU) and on the head's
//! input: in training only, each output unit of a layer is kept with probability 1 − p and
//! scaled by 1/(1 − p), or zeroed.
//!
//! The masks come from a counter-based generator, Philox4x32-10 (Salmon et al., "Parallel
//! random numbers: as easy as 1, 2, 3", SC 2011), keyed by the run's dropout seed and
//! counted by (step, layer, element), so nothing is stored: the GPU (shaders/dropout.wgsl)
//! and the CPU reference draw the same bits for the same unit, the backward redraws the
//! forward's mask, and a resumed run (its checkpoint holds the step and the seed) goes on
//! with the masks an uninterrupted one would draw. A unit is kept when the generator's
//! first word is at least [`threshold`]`(p)`: integers only, so the two sides agree bitwise.

/// What a training step's masks are drawn from: the run's dropout seed and the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u64,
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: four words from a 128-bit counter and a 64-bit key.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The generator's first word at or above this keeps a unit: ⌊p · 2³²⌋.
pub fn threshold(p: f32) -> u32 {
    (p as f64 * 4_294_967_296.0).floor().min(u32::MAX as f64) as u32
}

/// The factor a kept unit is scaled by, 1/(1 − p), in f32 as the GPU applies it.
pub fn scale(p: f32) -> f32 {
    1.0 / (1.0 - p)
}

/// Whether element `index` of layer `layer`'s outputs (T, B, D·H), index = (t·B + b)·D·H +
/// unit, is kept at this key for a threshold.
pub fn keep(key: DropoutKey, layer: u32, index: u32, threshold: u32) -> bool {
    let counter = [key.step as u32, (key.step >> 32) as u32, layer, index];
    let seed = [key.seed as u32, (key.seed >> 32) as u32];
    philox4x32(counter, seed)[0] >= threshold
}

/// The GPU's key buffer: seed and step as (lo, hi) words, 1 to apply the masks (a
/// training step) or 0 to pass values through (evaluation, inference), then where the
/// batch's rows sit in the whole batch the masks are drawn for: the first row and the whole
/// batch's size (a data-parallel rank's share; 0 and 0 for the batch itself).
pub(crate) fn key_words(key: Option<DropoutKey>, rows: Option<(u32, u32)>) -> [u32; 8] {
    let (row0, whole) = rows.unwrap_or((0, 0));
    match key {
        Some(k) => [
            k.seed as u32,
            (k.seed >> 32) as u32,
            k.step as u32,
            (k.step >> 32) as u32,
            1,
            row0,
            whole,
            0,
        ],
        None => [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_published_answers() {
        // Random123's known-answer vectors for philox4x32-10.
        assert_eq!(
            philox4x32([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
    }

    #[test]
    fn the_kept_fraction_is_one_minus_p() {
        let key = DropoutKey { seed: 7, step: 3 };
        let n = 200_000u32;
        for p in [0.0f32, 0.1, 0.5, 0.9] {
            let t = threshold(p);
            let kept = (0..n).filter(|&i| keep(key, 1, i, t)).count() as f64 / n as f64;
            // Binomial: 5 standard deviations of the kept fraction.
            let sd = ((p * (1.0 - p)) as f64 / n as f64).sqrt();
            assert!(
                (kept - (1.0 - p as f64)).abs() <= 5.0 * sd + 1e-12,
                "p {p}: kept {kept}"
            );
        }
        assert_eq!(threshold(0.0), 0);
    }
}
