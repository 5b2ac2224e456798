//! Training throughput of the page's model, measured by the same code in the browser
//! (`benchmark()`, driven by `web/bench.py`) and natively (`cargo run -p wgpu-rnn-web
//! --release --example bench`), so that the two differ only in where they run.
//!
//! Steps are timed in chunks (browsers coarsen `performance.now()` to 0.1 ms or more, so
//! single steps of a few milliseconds would read as noise): the result is the median chunk.

use wgpu_rnn::data::{Text, DEFAULT_CORPUS};
use wgpu_rnn::{Gpu, Rnn};

use crate::{Inner, Options};

/// The most timed chunks one run takes.
const MAX_CHUNKS: usize = 10_000;

/// What [`bench`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// The adapter, as wgpu names it.
    pub adapter: String,
    /// Median over the chunks of characters trained per second.
    pub tokens_per_s: f64,
    /// Median milliseconds per step.
    pub step_ms: f64,
    /// Compute dispatches in one training step (one submit).
    pub dispatches_per_step: usize,
    /// Characters per step (sequence length x batch).
    pub tokens_per_step: usize,
}

impl BenchResult {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "adapter": self.adapter,
            "tokens_per_s": self.tokens_per_s,
            "step_ms": self.step_ms,
            "dispatches_per_step": self.dispatches_per_step,
            "tokens_per_step": self.tokens_per_step,
        })
        .to_string()
    }
}

/// Trains the model of `options` on the built-in corpus: `warmup` steps, then `chunks`
/// chunks of `chunk_steps` steps, each timed.
pub async fn bench(
    gpu: &Gpu,
    options: &Options,
    warmup: u32,
    chunks: usize,
    chunk_steps: u32,
) -> wgpu_rnn::Result<BenchResult> {
    let text = Text::new(DEFAULT_CORPUS)?;
    let config = options
        .model(text.vocab.len())
        .map_err(wgpu_rnn::Error::IncompatibleArgs)?;
    if chunks > MAX_CHUNKS {
        return Err(wgpu_rnn::Error::IncompatibleArgs(format!(
            "{chunks} timed chunks is too many; at most {MAX_CHUNKS}"
        )));
    }
    let rnn = Rnn::new(gpu, config, options.seed)?;
    let mut inner = Inner::new(rnn, text, options.clone())?;
    inner.train(warmup).await?;
    let mut seconds = Vec::with_capacity(chunks);
    for _ in 0..chunks.max(1) {
        let start = web_time::Instant::now();
        inner.train(chunk_steps).await?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let tokens_per_step = options.seq * options.batch;
    Ok(BenchResult {
        adapter: gpu.adapter().to_string(),
        tokens_per_s: (chunk_steps as usize * tokens_per_step) as f64 / median,
        step_ms: median * 1e3 / chunk_steps.max(1) as f64,
        dispatches_per_step: inner.dispatches,
        tokens_per_step,
    })
}
