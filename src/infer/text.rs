//! Generating text from a character-level model: feed a prime, then sample one character
//! at a time from the model's softmax, carrying the state.

use rand::{Rng, SeedableRng};

use super::Predictor;
use crate::data::Text;
use crate::error::{Error, Result};

/// How to sample: `len` characters after `prime`, from softmax(y / temperature) drawn with
/// `seed`; temperature 0 takes the most likely character (the first of equals).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling<'a> {
    pub prime: &'a str,
    pub len: usize,
    pub temperature: f32,
    pub seed: u64,
}

impl Sampling<'_> {
    /// Refuses a temperature that is negative or not finite.
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::BadHyperparameter {
                what: "--temperature",
                value: self.temperature,
                expected: "finite and >= 0 (0: always the most likely character)",
            });
        }
        Ok(())
    }
}

/// Feeds `s.prime` (the state starts from zeros, the first input is a newline), then
/// samples `s.len` characters one step at a time; returns the prime and the sample.
/// Native only (it blocks); the browser awaits [`generate_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(model: &mut Predictor, text: &Text, s: &Sampling<'_>) -> Result<String> {
    pollster::block_on(generate_async(model, text, s))
}

/// Async form of [`generate`].
pub async fn generate_async(
    model: &mut Predictor,
    text: &Text,
    s: &Sampling<'_>,
) -> Result<String> {
    s.check()?;
    let v = text.vocab.len();
    let cfg = model.config();
    // A model reads each character as a token id (with an embedding) or one-hot.
    let reads = cfg.embedding.unwrap_or(cfg.input_size);
    if reads != v || cfg.output_size != v {
        return Err(Error::BadText(format!(
            "the model reads {reads} and predicts {} classes, but the vocabulary has {v} \
             characters",
            cfg.output_size
        )));
    }
    let embedded = cfg.embedding.is_some();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed);
    let mut stream = model.stream();
    let mut x = vec![0.0f64; v];
    let mut step = async |id: u32| -> Result<Vec<f32>> {
        let y = if embedded {
            stream.feed_tokens_async(&[id], 1, 1).await?
        } else {
            x.fill(0.0);
            x[id as usize] = 1.0;
            stream.feed_async(&x, 1, 1).await?
        };
        Ok(y.iter().map(|&a| a as f32).collect())
    };
    let mut out = String::new();
    let mut current = text.index('\n').unwrap_or(0);
    for c in s.prime.chars() {
        let id = text.index(c).ok_or_else(|| {
            Error::BadText(format!(
                "the prime contains {c:?}, which is not in the model's vocabulary"
            ))
        })?;
        step(current).await?;
        current = id;
        out.push(c);
    }
    for _ in 0..s.len {
        let logits = step(current).await?;
        let next = if s.temperature == 0.0 {
            greedy(&logits)
        } else {
            draw(&logits, s.temperature, &mut rng)
        };
        current = next as u32;
        out.push(text.vocab[next]);
    }
    Ok(out)
}

/// A class drawn from softmax(logits / temperature).
fn draw(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> usize {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f32> = logits
        .iter()
        .map(|l| ((l - m) / temperature).exp())
        .collect();
    let total: f32 = w.iter().sum();
    let mut u = rng.random_range(0.0..total.max(f32::MIN_POSITIVE));
    for (k, wk) in w.iter().enumerate() {
        if u < *wk {
            return k;
        }
        u -= wk;
    }
    w.len() - 1
}

/// The index of the largest logit (the first of equals; NaN never wins).
fn greedy(logits: &[f32]) -> usize {
    let mut best = 0;
    for (k, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = k;
        }
    }
    best
}
