//! wgpu-rnn in the browser: the bindings the training page (`web/www`) calls.
//!
//! A [`Session`] trains a character-level model on WebGPU with the library's own kernels
//! and trainer, through the async forms of its calls (nothing here blocks: a blocking
//! wait would freeze the tab). Its methods return Promises; every failure rejects with a
//! JS `Error` whose message says what was wrong. Checkpoints are the CLI's safetensors
//! files, both ways.
//!
//! One call runs at a time: a call made while another is still running (say `sample`
//! during `train`) is refused with a message rather than interleaved.
// That is the design: each call holds the session's RefCell across its awaits, and a
// second call finds it borrowed and is refused (see `busy`).
#![allow(clippy::await_holding_refcell_ref)]

mod bench;
mod options;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgpu_rnn::data::{Task, Text, DEFAULT_CORPUS};
use wgpu_rnn::infer::text::{generate_async, Sampling};
use wgpu_rnn::infer::Predictor;
use wgpu_rnn::{Checkpoint, Gpu, Rnn, Trainer};

pub use bench::{bench, BenchResult};
pub use options::Options;

/// The task name text checkpoints carry (what `wgpu-rnn train --task text` writes).
const TASK: &str = "text";

/// The longest sample one call draws (one GPU round trip per character).
const MAX_SAMPLE: usize = 20_000;

/// The built-in corpus (the CLI's default text).
#[wasm_bindgen(js_name = defaultCorpus)]
pub fn default_corpus() -> String {
    DEFAULT_CORPUS.to_string()
}

/// Throws unless `text` can train a model with sequences of `seq` characters in batches
/// of `batch`: not empty, not binary, long enough for one batch (the message names the
/// minimum).
#[wasm_bindgen(js_name = checkText)]
pub fn check_text(text: &str, seq: usize, batch: usize) -> Result<(), JsValue> {
    text_task(Some(text), seq, batch).map(|_| ()).map_err(js)
}

/// A JS `Error` with `e`'s message.
fn js(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// The text task on `text` (or the built-in corpus), checked against one batch.
fn text_task(text: Option<&str>, seq: usize, batch: usize) -> wgpu_rnn::Result<Text> {
    let text = Text::new(text.unwrap_or(DEFAULT_CORPUS))?;
    text.check_batch(seq, batch)?;
    Ok(text)
}

/// Measures training throughput of the model of `options` (JSON, as for `Session.create`)
/// on the built-in corpus: `warmup` steps, then `chunks` timed chunks of `steps` steps.
/// Resolves to JSON {adapter, tokens_per_s, step_ms, dispatches_per_step,
/// tokens_per_step} (medians over the chunks). See `web/bench.py`.
#[wasm_bindgen]
pub fn benchmark(options: String, warmup: u32, chunks: usize, steps: u32) -> Promise {
    future_to_promise(async move {
        let options = Options::parse(&options).map_err(js)?;
        let (gpu, _) = gpu().await.map_err(js)?;
        let r = bench(&gpu, &options, warmup, chunks, steps)
            .await
            .map_err(js)?;
        Ok(JsValue::from_str(&r.to_json()))
    })
}

/// A model being trained in the tab: the trainer on the page's GPU, its text and options.
#[wasm_bindgen]
pub struct Session {
    inner: Rc<RefCell<Inner>>,
    adapter: String,
}

struct Inner {
    trainer: Trainer,
    task: Task,
    vocab: Vec<char>,
    options: Options,
    dispatches: usize,
}

/// The GPU context, with the adapter's name for the page (browsers may keep the name to
/// themselves: then the backend alone).
async fn gpu() -> wgpu_rnn::Result<(Gpu, String)> {
    let gpu = Gpu::new_async().await?;
    let a = gpu.adapter();
    let name = match a.name.trim() {
        "" => format!("{:?}", a.backend),
        n => format!("{n} ({:?})", a.backend),
    };
    Ok((gpu, name))
}

#[wasm_bindgen]
impl Session {
    /// A new model from `options` (JSON, see [`Options`]) on `text`, or on the built-in
    /// corpus when `text` is null or undefined. Resolves to a `Session`.
    pub fn create(options: String, text: Option<String>) -> Promise {
        future_to_promise(async move {
            let options = Options::parse(&options).map_err(js)?;
            let text = text_task(text.as_deref(), options.seq, options.batch).map_err(js)?;
            let config = options.model(text.vocab.len()).map_err(js)?;
            let (gpu, adapter) = gpu().await.map_err(js)?;
            let rnn = Rnn::new(&gpu, config, options.seed).map_err(js)?;
            Session::start(rnn, text, options, adapter).map(JsValue::from)
        })
    }

    /// Continues from a checkpoint's bytes (one `wgpu-rnn train --task text` or this page
    /// saved): the model, its vocabulary, and, when the optimizer is the same, its
    /// moments, step and carried state (another optimizer starts afresh at step 0). `options` gives the sequence length, batch,
    /// optimizer, learning rate and seed (its model sizes are ignored: the checkpoint's
    /// hold). The text (null: the built-in corpus) must have the checkpoint's vocabulary.
    pub fn load(checkpoint: Vec<u8>, options: String, text: Option<String>) -> Promise {
        future_to_promise(async move {
            let ck = Checkpoint::from_bytes(&checkpoint, "the loaded file").map_err(js)?;
            if ck.task != TASK {
                return Err(js(format!(
                    "the loaded file is a checkpoint of the {:?} task; this page trains text \
                     models (wgpu-rnn train --task text)",
                    ck.task
                )));
            }
            let vocab = ck.vocab.clone().ok_or_else(|| {
                js("the loaded checkpoint has no vocabulary; it is not a text model")
            })?;
            let options = Options::parse(&options).map_err(js)?;
            let text = text_task(text.as_deref(), options.seq, options.batch).map_err(js)?;
            text.check_vocab(&vocab).map_err(js)?;
            let (gpu, adapter) = gpu().await.map_err(js)?;
            let rnn = Rnn::from_params(&gpu, ck.config.clone(), &ck.params).map_err(js)?;
            let session = Session::start(rnn, text, options, adapter)?;
            {
                let mut s = session.inner.borrow_mut();
                let same_optimizer = ck.extra.get("optimizer").map(String::as_str)
                    == Some(&format!("{:?}", s.options.optimizer_kind().map_err(js)?));
                match &ck.optim {
                    Some((m, v)) if same_optimizer => {
                        let carried = ck.carried_state.as_ref().map(|(b, st)| (*b, st));
                        s.trainer
                            .restore_state(m, v, ck.step, carried)
                            .map_err(js)?;
                    }
                    // Another optimizer (or none saved) starts afresh, at step 0: Adam's
                    // bias correction assumes moments as old as the step count.
                    _ => {}
                }
            }
            Ok(JsValue::from(session))
        })
    }

    fn start(rnn: Rnn, text: Text, options: Options, adapter: String) -> Result<Self, JsValue> {
        Ok(Session {
            inner: Rc::new(RefCell::new(Inner::new(rnn, text, options).map_err(js)?)),
            adapter,
        })
    }

    /// The adapter the session runs on, e.g. "SwiftShader Device (Subzero) (BrowserWebGpu)".
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Steps trained so far (a loaded checkpoint's count included).
    #[wasm_bindgen(getter)]
    pub fn step(&self) -> Result<f64, JsValue> {
        Ok(self.borrow()?.trainer.steps() as f64)
    }

    /// Compute dispatches in the last training step (all in one submit).
    #[wasm_bindgen(getter, js_name = dispatchesPerStep)]
    pub fn dispatches_per_step(&self) -> Result<usize, JsValue> {
        Ok(self.borrow()?.dispatches)
    }

    /// The model as JSON: cell, nonlinearity, hidden, layers, embedding (its dimension, 0
    /// for one-hot inputs), vocab.
    #[wasm_bindgen(getter)]
    pub fn config(&self) -> Result<String, JsValue> {
        let s = self.borrow()?;
        let c = s.trainer.rnn().config();
        Ok(serde_json::json!({
            "cell": c.cell.name(),
            "nonlinearity": c.activation.name(),
            "hidden": c.hidden_size,
            "layers": c.num_layers,
            "embedding": c.embedding.map_or(0, |_| c.input_size),
            "vocab": s.vocab.len(),
        })
        .to_string())
    }

    /// Trains `steps` steps; resolves to JSON {step, loss, tokens}: the step reached,
    /// the mean training loss of these steps (nats per character) and the characters
    /// they trained on.
    pub fn train(&self, steps: u32) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut s = busy(&inner)?;
            let loss = s.train(steps).await.map_err(js)?;
            let out = serde_json::json!({
                "step": s.trainer.steps(),
                "loss": loss,
                "tokens": steps as usize * s.options.seq * s.options.batch,
                "dispatches": s.dispatches,
            });
            Ok(JsValue::from_str(&out.to_string()))
        })
    }

    /// The mean loss on the held-out text (nats per character), from a zero state.
    pub fn validate(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut s = busy(&inner)?;
            let (seq, batch, seed) = (s.options.seq, s.options.batch, s.options.seed);
            let val = s.task.validation(seed, seq, batch).map_err(js)?;
            let loss = s.trainer.evaluate_async(&val).await.map_err(js)?;
            Ok(JsValue::from_f64(loss as f64))
        })
    }

    /// `length` characters after `prime`, drawn at `temperature` (0: the most likely
    /// character) from the model as it is now, on the GPU; resolves to the prime and the
    /// sample.
    pub fn sample(&self, prime: String, temperature: f32, length: usize) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if !(temperature.is_finite() && temperature >= 0.0) {
                return Err(js(format!(
                    "temperature {temperature} is not a number >= 0 (0 takes the most likely \
                     character; try 0.8)"
                )));
            }
            if length > MAX_SAMPLE {
                return Err(js(format!(
                    "a sample of {length} characters is too long for the page; at most \
                     {MAX_SAMPLE}"
                )));
            }
            let s = busy(&inner)?;
            let gpu = s.trainer.gpu().clone();
            let params = s.trainer.params_async().await.map_err(js)?;
            let mut model =
                Predictor::new(Some(&gpu), s.trainer.rnn().config(), &params).map_err(js)?;
            let text = Text::from_vocab(s.vocab.clone());
            let sampling = Sampling {
                prime: &prime,
                len: length,
                temperature,
                seed: s.options.seed ^ s.trainer.steps(),
            };
            let out = generate_async(&mut model, &text, &sampling)
                .await
                .map_err(js)?;
            Ok(JsValue::from_str(&out))
        })
    }

    /// Trains on `text` from the next step on. It must be usable (see `checkText`) and
    /// have the model's vocabulary; on error nothing changes.
    #[wasm_bindgen(js_name = setText)]
    pub fn set_text(&self, text: &str) -> Result<(), JsValue> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| busy_error())?;
        let new = text_task(Some(text), s.options.seq, s.options.batch).map_err(js)?;
        new.check_vocab(&s.vocab).map_err(js)?;
        s.task = Task::Text(new.with_token_inputs(s.trainer.rnn().config().embedding.is_some()));
        s.trainer.reset_state();
        Ok(())
    }

    /// The CLI's checkpoint (safetensors bytes, a Uint8Array): parameters, optimizer
    /// moments, step, carried state, vocabulary and the training options. `wgpu-rnn
    /// sample --checkpoint` reads it and `wgpu-rnn export` makes PyTorch's file of it.
    pub fn checkpoint(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let s = busy(&inner)?;
            let bytes = s.checkpoint().await.map_err(js)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Destroys the session's GPU device, as a lost device would (the page's
    /// `lose_device_at` URL parameter, for tests of what follows: every later call fails,
    /// and the page offers the last good checkpoint).
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> Result<(), JsValue> {
        self.borrow()?.trainer.gpu().device().destroy();
        Ok(())
    }

    fn borrow(&self) -> Result<std::cell::Ref<'_, Inner>, JsValue> {
        self.inner.try_borrow().map_err(|_| busy_error())
    }
}

impl Inner {
    fn new(rnn: Rnn, text: Text, options: Options) -> wgpu_rnn::Result<Self> {
        // The text's batches hold token ids for a model with an embedding.
        let rnn_embeds = rnn.config().embedding.is_some();
        let train = options
            .train_config()
            .map_err(wgpu_rnn::Error::IncompatibleArgs)?;
        Ok(Inner {
            trainer: Trainer::new(rnn, train)?,
            vocab: text.vocab.clone(),
            task: Task::Text(text.with_token_inputs(rnn_embeds)),
            options,
            dispatches: 0,
        })
    }

    /// `steps` training steps on the text's stateful streams, as `wgpu-rnn train` takes
    /// them; the mean loss (NaN for none).
    async fn train(&mut self, steps: u32) -> wgpu_rnn::Result<f64> {
        let (seq, batch, seed) = (self.options.seq, self.options.batch, self.options.seed);
        let mut sum = 0.0f64;
        for _ in 0..steps {
            let (b, reset) = self.task.batch(seed, self.trainer.steps(), seq, batch)?;
            if reset {
                self.trainer.reset_state();
            }
            sum += self.trainer.step_async(&b).await?.loss as f64;
        }
        self.dispatches = self.trainer.last_step_stats().dispatches;
        Ok(if steps > 0 {
            sum / steps as f64
        } else {
            f64::NAN
        })
    }

    async fn checkpoint(&self) -> wgpu_rnn::Result<Vec<u8>> {
        let t = &self.trainer;
        let mut extra = Checkpoint::optimizer_metadata(t.config());
        // What `wgpu-rnn train --resume` inherits (metadata train.<flag>).
        let o = &self.options;
        for (k, v) in [
            ("lr", o.lr.to_string()),
            ("optimizer", o.optimizer.clone()),
            ("batch", o.batch.to_string()),
            ("seq", o.seq.to_string()),
            ("seed", o.seed.to_string()),
        ] {
            extra.insert(format!("train.{k}"), v);
        }
        extra.insert("seed".into(), o.seed.to_string());
        let ck = Checkpoint {
            config: t.rnn().config().clone(),
            task: TASK.into(),
            vocab: Some(self.vocab.clone()),
            params: t.params_async().await?,
            optim: Some(t.optim_state_async().await?),
            step: t.steps(),
            carried_state: t.carried_state_async().await?,
            extra,
        };
        ck.to_bytes("the page's checkpoint")
    }
}

fn busy_error() -> JsValue {
    js(
        "the session is busy with another call (training, sampling or saving); wait for it \
        or pause first",
    )
}

/// The session's state for one call, or the busy error.
fn busy(inner: &Rc<RefCell<Inner>>) -> Result<std::cell::RefMut<'_, Inner>, JsValue> {
    inner.try_borrow_mut().map_err(|_| busy_error())
}
