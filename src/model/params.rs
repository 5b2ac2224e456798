//! Parameters (or anything kept per parameter: gradients, shapes, optimizer moments), their
//! initialisation, and the recurrent state.

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;

use super::{CellKind, RnnConfig};
use crate::error::{Error, Result};

/// The parameters of one recurrent cell (layer k, direction d), in PyTorch's orientation
/// and gate order.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell<T> {
    /// (G·H, I) for layer 0, (G·H, D·H) above: `weight_ih_l{k}[_reverse]`.
    pub w_ih: T,
    /// (G·H, H): `weight_hh_l{k}[_reverse]`.
    pub w_hh: T,
    /// (G·H): `bias_ih_l{k}[_reverse]`; `None` for a model without biases.
    pub b_ih: Option<T>,
    /// (G·H): `bias_hh_l{k}[_reverse]`; `None` for a model without biases.
    pub b_hh: Option<T>,
}

impl<T> Cell<T> {
    fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> Cell<U> {
        Cell {
            w_ih: f(&self.w_ih),
            w_hh: f(&self.w_hh),
            b_ih: self.b_ih.as_ref().map(&mut *f),
            b_hh: self.b_hh.as_ref().map(&mut *f),
        }
    }

    fn try_map<U, E>(&self, f: &mut impl FnMut(&T) -> Result<U, E>) -> Result<Cell<U>, E> {
        Ok(Cell {
            w_ih: f(&self.w_ih)?,
            w_hh: f(&self.w_hh)?,
            b_ih: self.b_ih.as_ref().map(&mut *f).transpose()?,
            b_hh: self.b_hh.as_ref().map(&mut *f).transpose()?,
        })
    }
}

/// All parameters of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    /// (V, I), the embedding table (`nn.Embedding.weight`) of a model with one.
    pub embedding: Option<T>,
    /// L·D cells: layer by layer, forward then reverse direction.
    pub cells: Vec<Cell<T>>,
    /// (O, D·H), the head's `nn.Linear.weight`.
    pub w_hy: T,
    /// (O), the head's `nn.Linear.bias`.
    pub b_y: T,
}

impl<T> Params<T> {
    /// Every tensor in a fixed order: the embedding (if any), each cell's w_ih, w_hh, b_ih,
    /// b_hh (those present), then w_hy, b_y.
    pub fn tensors(&self) -> Vec<&T> {
        let mut v: Vec<&T> = self.embedding.iter().collect();
        for c in &self.cells {
            v.extend(
                [
                    Some(&c.w_ih),
                    Some(&c.w_hh),
                    c.b_ih.as_ref(),
                    c.b_hh.as_ref(),
                ]
                .into_iter()
                .flatten(),
            );
        }
        v.push(&self.w_hy);
        v.push(&self.b_y);
        v
    }

    /// [`Params::tensors`], mutably.
    pub fn tensors_mut(&mut self) -> Vec<&mut T> {
        let mut v: Vec<&mut T> = self.embedding.iter_mut().collect();
        for c in &mut self.cells {
            v.push(&mut c.w_ih);
            v.push(&mut c.w_hh);
            v.extend(c.b_ih.as_mut());
            v.extend(c.b_hh.as_mut());
        }
        v.push(&mut self.w_hy);
        v.push(&mut self.b_y);
        v
    }

    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Params<U> {
        Params {
            embedding: self.embedding.as_ref().map(&mut f),
            cells: self.cells.iter().map(|c| c.map(&mut f)).collect(),
            w_hy: f(&self.w_hy),
            b_y: f(&self.b_y),
        }
    }

    /// Like [`Params::map`] for a fallible `f`, stopping at the first error.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<Params<U>, E> {
        let embedding = self.embedding.as_ref().map(&mut f).transpose()?;
        let cells = self
            .cells
            .iter()
            .map(|c| c.try_map(&mut f))
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Params {
            embedding,
            cells,
            w_hy: f(&self.w_hy)?,
            b_y: f(&self.b_y)?,
        })
    }

    /// A name for each of [`Params::tensors`] of a model of `config`: `embedding`,
    /// `w_ih_l0`, `b_hh_l0_reverse`, ..., `w_hy`, `b_y`.
    pub fn names_for(&self, config: &RnnConfig) -> Vec<String> {
        let d = config.directions();
        let mut v: Vec<String> = self.embedding.iter().map(|_| "embedding".into()).collect();
        for (c, cell) in self.cells.iter().enumerate() {
            let sfx = cell_suffix(c, d);
            v.push(format!("w_ih_{sfx}"));
            v.push(format!("w_hh_{sfx}"));
            if cell.b_ih.is_some() {
                v.push(format!("b_ih_{sfx}"));
            }
            if cell.b_hh.is_some() {
                v.push(format!("b_hh_{sfx}"));
            }
        }
        v.push("w_hy".into());
        v.push("b_y".into());
        v
    }
}

/// `l{k}` or `l{k}_reverse` for cell `c` of a model with `d` directions.
pub fn cell_suffix(c: usize, d: usize) -> String {
    if d == 2 && c % 2 == 1 {
        format!("l{}_reverse", c / 2)
    } else {
        format!("l{}", c / d)
    }
}

impl Params<Vec<f32>> {
    /// Widened to f64, for the CPU reference.
    pub fn to_f64(&self) -> Params<Vec<f64>> {
        self.map(|v| v.iter().map(|&x| x as f64).collect())
    }

    /// Checks that the cell count, the biases and each parameter's length fit `config`.
    pub fn check(&self, config: &RnnConfig) -> Result<()> {
        self.map(Vec::len).check_lengths(config)
    }
}

impl Params<Vec<f64>> {
    /// Narrowed to f32.
    pub fn to_f32(&self) -> Params<Vec<f32>> {
        self.map(|v| v.iter().map(|&x| x as f32).collect())
    }

    /// [`Params::check`] for the CPU reference's f64 parameters.
    pub fn check_f64(&self, config: &RnnConfig) -> Result<()> {
        self.map(Vec::len).check_lengths(config)
    }
}

impl Params<usize> {
    /// Checks a set of tensor lengths against `config`.
    fn check_lengths(&self, config: &RnnConfig) -> Result<()> {
        let shapes = config.param_shapes();
        if self.cells.len() != shapes.cells.len() {
            return Err(Error::DataLength {
                what: "parameter cells (layers × directions)",
                shape: vec![config.num_layers, config.directions()],
                expected: shapes.cells.len(),
                got: self.cells.len(),
            });
        }
        if self.embedding.is_some() != config.embedding.is_some() {
            return Err(Error::IncompatibleArgs(format!(
                "the parameters {} an embedding table but the config {}",
                if self.embedding.is_some() {
                    "have"
                } else {
                    "lack"
                },
                match config.embedding {
                    Some(v) => format!("has one of {v} tokens"),
                    None => "has none".into(),
                }
            )));
        }
        if let Some(c) = self
            .cells
            .iter()
            .position(|c| c.b_ih.is_some() != config.bias || c.b_hh.is_some() != config.bias)
        {
            return Err(Error::IncompatibleArgs(format!(
                "cell {} {} biases but the config says bias = {}",
                cell_suffix(c, config.directions()),
                if config.bias { "lacks" } else { "has" },
                config.bias
            )));
        }
        for ((name, &n), shape) in shapes
            .names_for(config)
            .iter()
            .zip(self.tensors())
            .zip(shapes.tensors())
        {
            let expected: usize = shape.iter().product();
            if n != expected {
                return Err(Error::ParamLength {
                    name: name.clone(),
                    shape: shape.clone(),
                    expected,
                    got: n,
                });
            }
        }
        Ok(())
    }
}

/// The recurrent state of every cell: h (L·D, B, H) and, for LSTM, c (L·D, B, H). Used for
/// initial states (h0, c0), final states (h_n, c_n), their gradients, and the state that
/// stateful training carries from one batch to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct State<T> {
    pub h: T,
    /// LSTM's cell state; `None` for the other cells.
    pub c: Option<T>,
}

impl<T> State<T> {
    /// A state with h only (Elman, GRU).
    pub fn h(h: T) -> Self {
        State { h, c: None }
    }

    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> State<U> {
        State {
            h: f(&self.h),
            c: self.c.as_ref().map(f),
        }
    }

    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<State<U>, E> {
        Ok(State {
            h: f(&self.h)?,
            c: self.c.as_ref().map(f).transpose()?,
        })
    }

    /// h, then c if present.
    pub fn tensors(&self) -> Vec<&T> {
        std::iter::once(&self.h).chain(self.c.as_ref()).collect()
    }

    /// h, then c if present.
    pub fn tensors_mut(&mut self) -> Vec<&mut T> {
        std::iter::once(&mut self.h)
            .chain(self.c.as_mut())
            .collect()
    }
}

impl RnnConfig {
    /// Checks that a state has c exactly when the cell has one (LSTM); `what` names it.
    pub fn check_state_parts<T>(&self, what: &str, s: &State<T>) -> Result<()> {
        match (s.c.is_some(), self.cell.has_c()) {
            (true, false) => Err(Error::IncompatibleArgs(format!(
                "{what}: a {} model has no cell state c",
                self.cell.name()
            ))),
            (false, true) => Err(Error::IncompatibleArgs(format!(
                "{what}: an LSTM state needs c as well as h"
            ))),
            _ => Ok(()),
        }
    }

    /// [`RnnConfig::check_state_parts`], and that each part of a host state holds
    /// (L·D, B, H) values.
    pub fn check_host_state<T>(
        &self,
        what: &'static str,
        s: &State<Vec<T>>,
        b: usize,
    ) -> Result<()> {
        self.check_state_parts(what, s)?;
        let shape = self.state_shape(b);
        s.tensors()
            .into_iter()
            .try_for_each(|v| crate::shapes::check_len(what, &shape, v.len()))
    }
}

impl<T: Clone> State<T> {
    /// A state for `cell` with both parts filled by `v` where the cell has them.
    pub fn filled(cell: CellKind, v: T) -> Self {
        State {
            c: cell.has_c().then(|| v.clone()),
            h: v,
        }
    }
}

/// How recurrent cells are initialised (the head and the embedding are always PyTorch's
/// defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default for `nn.RNN`, `nn.LSTM`, `nn.GRU`: every weight and bias uniform
    /// in ±1/√H.
    #[default]
    PyTorch,
    /// Glorot & Bengio (2010) uniform per gate block: ±√(6 / (fan_in + H)) for W_ih and
    /// W_hh; zero biases.
    Xavier,
    /// Xavier W_ih, a random orthogonal H×H block per gate in W_hh (Saxe, McClelland &
    /// Ganguli 2014: QR of a Gaussian matrix), zero biases.
    Orthogonal,
    /// IRNN (Le, Jaitly & Hinton 2015), for the Elman cell with ReLU: W_hh = I, zero
    /// biases, W_ih ~ N(0, 0.001²).
    Identity,
}

impl std::str::FromStr for Init {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pytorch" | "default" => Ok(Init::PyTorch),
            "xavier" | "glorot" => Ok(Init::Xavier),
            "orthogonal" => Ok(Init::Orthogonal),
            "identity" | "irnn" => Ok(Init::Identity),
            _ => Err(Error::BadInit(s.to_string())),
        }
    }
}

impl RnnConfig {
    /// Parameters drawn like PyTorch's defaults (see [`Init::PyTorch`]) from `seed`.
    pub fn init_params(&self, seed: u64) -> Params<Vec<f32>> {
        self.draw_params(Init::PyTorch, seed)
    }

    /// Parameters drawn with `init` from a ChaCha8 stream seeded with `seed` (portable
    /// across platforms and crate versions). The head is always PyTorch's `nn.Linear`
    /// default, uniform in ±1/√(D·H). [`Init::Identity`] is for the Elman cell only.
    pub fn init_params_with(&self, init: Init, seed: u64) -> Result<Params<Vec<f32>>> {
        if init == Init::Identity && self.cell != CellKind::Rnn {
            return Err(Error::IncompatibleArgs(format!(
                "the identity (IRNN) init is for the Elman cell (rnn), not {}",
                self.cell.name()
            )));
        }
        Ok(self.draw_params(init, seed))
    }

    fn draw_params(&self, init: Init, seed: u64) -> Params<Vec<f32>> {
        let mut rng = Draws(rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let (h, g) = (self.hidden_size, self.gates());
        let bound = 1.0 / (h as f32).sqrt();
        let cells = self
            .param_shapes()
            .cells
            .into_iter()
            .map(|shape| {
                let fan_in = shape.w_ih[1];
                let xavier = |rng: &mut Draws, fan: usize| -> Vec<f32> {
                    (0..g)
                        .flat_map(|_| rng.uniform(h * fan, (6.0 / (h + fan) as f32).sqrt()))
                        .collect()
                };
                let (w_ih, w_hh, b_ih, b_hh) = match init {
                    Init::PyTorch => (
                        rng.uniform(g * h * fan_in, bound),
                        rng.uniform(g * h * h, bound),
                        rng.uniform(g * h, bound),
                        rng.uniform(g * h, bound),
                    ),
                    Init::Xavier => (
                        xavier(&mut rng, fan_in),
                        xavier(&mut rng, h),
                        vec![0.0; g * h],
                        vec![0.0; g * h],
                    ),
                    Init::Orthogonal => {
                        let w_ih = xavier(&mut rng, fan_in);
                        let w_hh = (0..g).flat_map(|_| rng.orthogonal(h)).collect();
                        (w_ih, w_hh, vec![0.0; g * h], vec![0.0; g * h])
                    }
                    Init::Identity => {
                        let w_ih = rng.normal(g * h * fan_in, 0.001);
                        let mut w_hh = vec![0.0; g * h * h];
                        (0..g * h).for_each(|j| w_hh[j * h + j % h] = 1.0);
                        (w_ih, w_hh, vec![0.0; g * h], vec![0.0; g * h])
                    }
                };
                Cell {
                    w_ih,
                    w_hh,
                    b_ih: self.bias.then_some(b_ih),
                    b_hh: self.bias.then_some(b_hh),
                }
            })
            .collect();
        let head_bound = 1.0 / ((self.directions() * h) as f32).sqrt();
        let w_hy = rng.uniform(self.output_size * self.directions() * h, head_bound);
        let b_y = rng.uniform(self.output_size, head_bound);
        // PyTorch's nn.Embedding default, N(0, 1); drawn last, so that a model's other
        // parameters are the same with or without an embedding.
        let embedding = self.embedding.map(|v| rng.normal(v * self.input_size, 1.0));
        Params {
            embedding,
            cells,
            w_hy,
            b_y,
        }
    }
}

/// Random draws for initialisation.
struct Draws(rand_chacha::ChaCha8Rng);

impl Draws {
    /// Uniform in [0, 1), from 24 random bits (exact in f32).
    fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| (2.0 * self.unit() - 1.0) * bound).collect()
    }

    /// Gaussian by Box-Muller, in f64.
    fn gauss(&mut self) -> f64 {
        let u1 = (self.unit() as f64).max(1e-12);
        let u2 = self.unit() as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| (self.gauss() as f32) * std).collect()
    }

    /// A random orthogonal n×n matrix: Gram-Schmidt (modified, twice) on the rows of a
    /// Gaussian matrix, which is the Q of its QR with a positive diagonal of R.
    fn orthogonal(&mut self, n: usize) -> Vec<f32> {
        let mut q: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..n).map(|_| self.gauss()).collect())
            .collect();
        for i in 0..n {
            let (done, rest) = q.split_at_mut(i);
            let row = &mut rest[0];
            for _ in 0..2 {
                for prev in done.iter() {
                    let d: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                    row.iter_mut().zip(prev).for_each(|(a, b)| *a -= d * b);
                }
            }
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        q.into_iter().flatten().map(|v| v as f32).collect()
    }
}

impl Params<crate::gpu::GpuTensor> {
    /// Copies every tensor to the host: the async form of
    /// `try_map(GpuTensor::download)`, which the browser uses.
    pub async fn download_async(&self) -> Result<Params<Vec<f32>>> {
        let mut host = self.map(|_| Vec::new());
        for (dst, src) in host.tensors_mut().into_iter().zip(self.tensors()) {
            *dst = src.download_async().await?;
        }
        Ok(host)
    }
}

impl State<crate::gpu::GpuTensor> {
    /// Copies h (and c) to the host: the async form of `try_map(GpuTensor::download)`.
    pub async fn download_async(&self) -> Result<State<Vec<f32>>> {
        Ok(State {
            h: self.h.download_async().await?,
            c: match &self.c {
                Some(c) => Some(c.download_async().await?),
                None => None,
            },
        })
    }
}
