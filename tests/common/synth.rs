//! A small speech-like synthesizer for the speech tests: spoken-digit corpora made in Rust,
//! laid out like those of `examples/speech-digits.sh`, so that the default test suite needs
//! no speech program installed.
//!
//! It is not speech, but it is enough like it for CTC over characters. Each letter of a
//! digit word is a short harmonic tone whose harmonics are weighted by three resonances
//! (formants) of that letter, so a letter sounds alike in every word and different letters
//! sound different. Each utterance draws its own voice: pitch, vocal-tract length (a scale
//! on the formants), speaking rate, level and sample rate. Words are parted by short pauses,
//! and a little noise runs under everything.

use std::collections::HashSet;
use std::f32::consts::TAU;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::data::audio::write_wav;

const WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// The formants (F1, F2, F3, in Hz) of each letter the digit words use: every letter takes
/// its own pair of F1 (300, 500, 750 or 1000 Hz) and F2 (900, 1300, 1800 or 2400 Hz), and an
/// F3 of 2700 to 4300 Hz.
const LETTERS: [(char, [f32; 3]); 15] = [
    ('e', [500.0, 2400.0, 3200.0]),
    ('f', [300.0, 900.0, 4300.0]),
    ('g', [750.0, 900.0, 2700.0]),
    ('h', [1000.0, 1800.0, 3700.0]),
    ('i', [300.0, 2400.0, 3700.0]),
    ('n', [300.0, 1300.0, 2700.0]),
    ('o', [500.0, 900.0, 2700.0]),
    ('r', [500.0, 1300.0, 3700.0]),
    ('s', [300.0, 1800.0, 4300.0]),
    ('t', [750.0, 2400.0, 4300.0]),
    ('u', [750.0, 1300.0, 3200.0]),
    ('v', [500.0, 1800.0, 2700.0]),
    ('w', [1000.0, 1300.0, 3200.0]),
    ('x', [750.0, 1800.0, 3200.0]),
    ('z', [1000.0, 2400.0, 3700.0]),
];

/// Writes `count` utterances of `seed`'s random digit strings to `out` as
/// `examples/speech-digits.sh` does: `wav/NNNNN.wav` (mono 16-bit PCM, at 22 050 Hz or
/// 16 kHz), `train.csv` and `valid.csv` (`path,transcript`). The first tenth (at least one)
/// is held out in `valid.csv`, and no held-out digit string is spoken in training. The same
/// arguments make the same corpus.
pub fn digits_corpus(out: &Path, count: usize, seed: u64) {
    assert!(
        count >= 2,
        "a corpus needs at least 2 utterances, got {count}"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let valid_count = (count / 10).max(1);
    let held_out: Vec<String> = (0..valid_count).map(|_| digit_string(&mut rng)).collect();
    let mut texts = held_out.clone();
    let held_out: HashSet<String> = held_out.into_iter().collect();
    while texts.len() < count {
        let text = digit_string(&mut rng);
        if !held_out.contains(&text) {
            texts.push(text);
        }
    }

    std::fs::create_dir_all(out.join("wav")).unwrap();
    let mut manifests: [String; 2] = std::array::from_fn(|_| "path,transcript\n".into());
    for (i, text) in texts.iter().enumerate() {
        let name = format!("wav/{i:05}.wav");
        let voice = Voice::draw(&mut rng);
        let samples = voice.speak(text, &mut rng);
        write_wav(&out.join(&name), &samples, voice.sample_rate).unwrap();
        manifests[usize::from(i >= valid_count)] += &format!("{name},{text}\n");
    }
    let [valid, train] = manifests;
    std::fs::write(out.join("valid.csv"), valid).unwrap();
    std::fs::write(out.join("train.csv"), train).unwrap();
}

/// 3 to 7 random digits as words: "three one four".
fn digit_string(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(3..=7);
    let words: Vec<&str> = (0..n).map(|_| WORDS[rng.random_range(0..10)]).collect();
    words.join(" ")
}

/// One utterance's voice.
struct Voice {
    sample_rate: u32,
    /// Fundamental frequency in Hz.
    pitch: f32,
    /// Formant scale: a shorter vocal tract raises every formant.
    tract: f32,
    /// Seconds per letter, on average.
    letter: f32,
    /// Peak amplitude.
    level: f32,
    /// Noise amplitude, relative to the level.
    noise: f32,
}

impl Voice {
    fn draw(rng: &mut ChaCha8Rng) -> Voice {
        Voice {
            sample_rate: if rng.random_bool(0.5) { 22_050 } else { 16_000 },
            pitch: rng.random_range(90.0..240.0),
            tract: rng.random_range(0.9..1.1),
            letter: rng.random_range(0.04..0.06),
            level: rng.random_range(0.15..0.6),
            noise: rng.random_range(0.005..0.03),
        }
    }

    fn speak(&self, text: &str, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let rate = self.sample_rate as f32;
        let silence = |seconds: f32| vec![0.0; (seconds * rate) as usize];
        let mut out = silence(rng.random_range(0.05..0.2));
        let mut phase = 0.0f32; // of the fundamental, in cycles
        for (w, word) in text.split(' ').enumerate() {
            if w > 0 {
                out.extend(silence(rng.random_range(0.03..0.09)));
            }
            for letter in word.chars() {
                let seconds = self.letter * rng.random_range(0.8..1.25);
                let pitch = self.pitch * rng.random_range(0.95..1.05);
                out.extend(self.letter_tone(letter, seconds, pitch, &mut phase));
            }
        }
        out.extend(silence(rng.random_range(0.05..0.2)));

        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = self.level / peak;
        for x in &mut out {
            *x = *x * scale + self.level * self.noise * rng.random_range(-1.0..1.0);
        }
        out
    }

    /// `seconds` of `letter` at `pitch` Hz, from the fundamental's `phase` (carried on to
    /// the next letter), faded in and out over 5 ms.
    fn letter_tone(&self, letter: char, seconds: f32, pitch: f32, phase: &mut f32) -> Vec<f32> {
        let formants = LETTERS
            .iter()
            .find(|(c, _)| *c == letter)
            .unwrap_or_else(|| panic!("no formants for {letter:?}"))
            .1
            .map(|f| f * self.tract);
        // Each harmonic below 7 kHz, weighted by the three resonances (the higher ones
        // weaker): one period of the waveform, as a table.
        let weight = |hz: f32| -> f32 {
            formants
                .iter()
                .zip([1.0, 0.6, 0.4])
                .map(|(&f, gain)| gain / (1.0 + ((hz - f) / (60.0 + 0.06 * f)).powi(2)))
                .sum()
        };
        let harmonics: Vec<(f32, f32)> = (1..)
            .map(|k| k as f32)
            .take_while(|k| k * pitch < 7000.0)
            .map(|k| (k, weight(k * pitch)))
            .collect();
        const TABLE: usize = 512;
        let period: Vec<f32> = (0..TABLE)
            .map(|j| {
                let t = j as f32 / TABLE as f32;
                harmonics.iter().map(|(k, a)| a * (TAU * k * t).sin()).sum()
            })
            .collect();

        let rate = self.sample_rate as f32;
        let n = (seconds * rate) as usize;
        let fade = 0.005 * rate;
        (0..n)
            .map(|i| {
                *phase = (*phase + pitch / rate).fract();
                let edge = ((i.min(n - 1 - i) as f32) / fade).min(1.0);
                let at = *phase * TABLE as f32;
                let (j, within) = (at as usize % TABLE, at.fract());
                let v = period[j] + within * (period[(j + 1) % TABLE] - period[j]);
                edge * v
            })
            .collect()
    }
}
