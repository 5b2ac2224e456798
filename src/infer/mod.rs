//! Running a trained model: one path for the GPU and for the f64 CPU reference, for whole
//! batches ([`Predictor::run`]) and for streams whose state carries from one call to the
//! next ([`Stream`], step-by-step generation and forecasting). The task-specific uses sit
//! on top of it: text sampling ([`text`]), series forecasts (`series`, feature `series`)
//! and transcription (`speech`, feature `audio`).
//!
//! Values cross to and from the host as f64: the CPU reference computes in f64
//! throughout, and the GPU's f32 values convert exactly.

#[cfg(feature = "series")]
pub mod series;
#[cfg(feature = "audio")]
pub mod speech;
pub mod text;

use crate::error::Result;
use crate::gpu::{Gpu, GpuTensor};
use crate::model::{Params, Rnn, RnnConfig, State};

/// A model ready to run, on the GPU or on the CPU reference.
pub struct Predictor {
    config: RnnConfig,
    engine: Engine,
}

enum Engine {
    Gpu(Box<Rnn>),
    Cpu(Params<Vec<f64>>),
}

/// What [`Predictor::run`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// (T, B, O); zero past a row's length.
    pub y: Vec<f64>,
    /// Each cell's state after its last step (h_n, and c_n for LSTM), (L·D, B, H).
    pub state: State<Vec<f64>>,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("config", &self.config)
            .field("gpu", &self.is_gpu())
            .finish()
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}

impl Predictor {
    /// The model `config` with `params`: on the GPU when `gpu` is given, else on the CPU
    /// reference.
    pub fn new(gpu: Option<&Gpu>, config: &RnnConfig, params: &Params<Vec<f32>>) -> Result<Self> {
        config.validate()?;
        params.check(config)?;
        let engine = match gpu {
            Some(g) => Engine::Gpu(Box::new(Rnn::from_params(g, config.clone(), params)?)),
            None => Engine::Cpu(params.to_f64()),
        };
        Ok(Predictor {
            config: config.clone(),
            engine,
        })
    }

    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Whether it runs on the GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.engine, Engine::Gpu(_))
    }

    /// Runs x (T, B, I), time-major, from `init` (h0 and, for LSTM, c0; each (L·D, B, H))
    /// or zeros, with optional per-row `lengths` (see [`Rnn::forward_with_lengths`]).
    /// Native only (it blocks); the browser awaits [`Predictor::run_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &mut self,
        x: &[f64],
        tb: [usize; 2],
        init: Option<&State<Vec<f64>>>,
        lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        pollster::block_on(self.run_async(x, tb, init, lengths))
    }

    /// Async form of [`Predictor::run`].
    pub async fn run_async(
        &mut self,
        x: &[f64],
        tb: [usize; 2],
        init: Option<&State<Vec<f64>>>,
        lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        self.run_input(Feed::Features(x), tb, init, lengths).await
    }

    /// [`Predictor::run`] for a model with an embedding: token ids (T, B), time-major,
    /// each below the vocabulary. Native only; the browser awaits
    /// [`Predictor::run_tokens_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_tokens(
        &mut self,
        ids: &[u32],
        tb: [usize; 2],
        init: Option<&State<Vec<f64>>>,
        lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        pollster::block_on(self.run_tokens_async(ids, tb, init, lengths))
    }

    /// Async form of [`Predictor::run_tokens`].
    pub async fn run_tokens_async(
        &mut self,
        ids: &[u32],
        tb: [usize; 2],
        init: Option<&State<Vec<f64>>>,
        lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        self.run_input(Feed::Tokens(ids), tb, init, lengths).await
    }

    async fn run_input(
        &mut self,
        input: Feed<'_>,
        [t, b]: [usize; 2],
        init: Option<&State<Vec<f64>>>,
        lengths: Option<&[usize]>,
    ) -> Result<Prediction> {
        let init = init.map(|s| Carried::from_host(self, s, b)).transpose()?;
        let (y, state) = self.forward(input, [t, b], init.as_ref(), lengths).await?;
        Ok(Prediction {
            y,
            state: state.to_host().await?,
        })
    }

    /// A stream of batches, each starting from the state the one before left (the first
    /// from zeros).
    pub fn stream(&mut self) -> Stream<'_> {
        Stream {
            predictor: self,
            state: None,
        }
    }

    /// The forward of x (T, B, I) or ids (T, B) from `init`: y on the host, the final
    /// state where the model keeps it.
    async fn forward(
        &mut self,
        input: Feed<'_>,
        [t, b]: [usize; 2],
        init: Option<&Carried>,
        lengths: Option<&[usize]>,
    ) -> Result<(Vec<f64>, Carried)> {
        let shape = [t, b, self.config.input_size];
        match &mut self.engine {
            Engine::Gpu(rnn) => {
                let gpu = rnn.gpu().clone();
                let init = match init {
                    Some(Carried::Gpu(s)) => Some(s),
                    _ => None,
                };
                let out = match input {
                    Feed::Features(x) => {
                        self.config.check_input(&shape)?;
                        crate::shapes::check_len("x", &shape, x.len())?;
                        let xg = gpu.tensor(&shape, &narrow(x))?;
                        rnn.forward_async(&xg, init, lengths).await?
                    }
                    Feed::Tokens(ids) => {
                        rnn.forward_tokens_async(ids, [t, b], init, lengths).await?
                    }
                };
                Ok((
                    widen(&out.y.download_async().await?),
                    Carried::Gpu(out.state),
                ))
            }
            Engine::Cpu(params) => {
                let init = match init {
                    Some(Carried::Cpu(s)) => Some(s),
                    _ => None,
                };
                let cfg = &self.config;
                let f = match input {
                    Feed::Features(x) => {
                        crate::cpu::forward(cfg, params, x, &shape, init, lengths)?
                    }
                    Feed::Tokens(ids) => {
                        crate::cpu::forward_tokens(cfg, params, ids, [t, b], init, lengths, None)?.1
                    }
                };
                Ok((f.y, Carried::Cpu(f.state)))
            }
        }
    }
}

/// What a forward reads: features x (T, B, I), or token ids (T, B) for a model with an
/// embedding.
#[derive(Clone, Copy)]
enum Feed<'a> {
    Features(&'a [f64]),
    Tokens(&'a [u32]),
}

impl Predictor {}

/// Batches run one after another through a [`Predictor`], each from the state the one
/// before left: step-by-step generation, or a long series fed in pieces.
pub struct Stream<'p> {
    predictor: &'p mut Predictor,
    state: Option<Carried>,
}

impl Stream<'_> {
    /// Runs x (T, B, I) on from the carried state; returns y (T, B, O). Native only (it
    /// blocks); the browser awaits [`Stream::feed_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn feed(&mut self, x: &[f64], t: usize, b: usize) -> Result<Vec<f64>> {
        pollster::block_on(self.feed_async(x, t, b))
    }

    /// Async form of [`Stream::feed`].
    pub async fn feed_async(&mut self, x: &[f64], t: usize, b: usize) -> Result<Vec<f64>> {
        self.feed_input(Feed::Features(x), t, b).await
    }

    /// [`Stream::feed`] for a model with an embedding: token ids (T, B). Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn feed_tokens(&mut self, ids: &[u32], t: usize, b: usize) -> Result<Vec<f64>> {
        pollster::block_on(self.feed_tokens_async(ids, t, b))
    }

    /// Async form of [`Stream::feed_tokens`].
    pub async fn feed_tokens_async(&mut self, ids: &[u32], t: usize, b: usize) -> Result<Vec<f64>> {
        self.feed_input(Feed::Tokens(ids), t, b).await
    }

    async fn feed_input(&mut self, input: Feed<'_>, t: usize, b: usize) -> Result<Vec<f64>> {
        let (y, state) = self
            .predictor
            .forward(input, [t, b], self.state.as_ref(), None)
            .await?;
        self.state = Some(state);
        Ok(y)
    }

    /// The carried state (None before the first batch). Native only (it blocks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(&self) -> Result<Option<State<Vec<f64>>>> {
        pollster::block_on(self.state_async())
    }

    /// Async form of [`Stream::state`].
    pub async fn state_async(&self) -> Result<Option<State<Vec<f64>>>> {
        match &self.state {
            Some(s) => Ok(Some(s.to_host().await?)),
            None => Ok(None),
        }
    }
}

/// A state where the model keeps it: on the GPU, or in f64 for the CPU reference.
enum Carried {
    Gpu(State<GpuTensor>),
    Cpu(State<Vec<f64>>),
}

impl Carried {
    fn from_host(p: &Predictor, s: &State<Vec<f64>>, b: usize) -> Result<Self> {
        p.config.check_host_state("initial state", s, b)?;
        Ok(match &p.engine {
            Engine::Gpu(rnn) => {
                let shape = p.config.state_shape(b);
                Carried::Gpu(s.try_map(|v| rnn.gpu().tensor(&shape, &narrow(v)))?)
            }
            Engine::Cpu(_) => Carried::Cpu(s.clone()),
        })
    }

    async fn to_host(&self) -> Result<State<Vec<f64>>> {
        match self {
            Carried::Gpu(s) => Ok(s.download_async().await?.map(|v| widen(v))),
            Carried::Cpu(s) => Ok(s.clone()),
        }
    }
}
