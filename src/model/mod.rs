//! The model: configuration, parameters and their initialisation, shape checks, and the
//! GPU implementation ([`Rnn`]).

mod rnn;

pub use rnn::{CallStats, ForwardOutput, Gradients, RecurrencePath, Rnn};

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;

use crate::error::{Error, Result};

/// The hidden-state nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Tanh,
    Relu,
}

/// Sizes and structure of an Elman RNN with a linear output head, as `torch.nn.RNN`
/// followed by `nn.Linear`: L layers (`num_layers`), each of D directions (2 when
/// `bidirectional`), `h_t = act(W_ih x_t + W_hh h_{t-1} + b_h)` per (layer, direction),
/// the reverse direction running from t = T down to 1; layer k > 0 reads the D·H outputs of
/// layer k−1; `y_t = W_hy [h_t of the last layer's directions] + b_y`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RnnConfig {
    /// I: features per input step.
    pub input_size: usize,
    /// H: hidden units per direction.
    pub hidden_size: usize,
    /// O: outputs per step.
    pub output_size: usize,
    pub activation: Activation,
    /// L: stacked layers (1 by default).
    pub num_layers: usize,
    /// D = 2: every layer also runs backwards in time (PyTorch's `bidirectional`).
    pub bidirectional: bool,
}

/// Most layers a config may have (a guard against absurd sizes from files).
pub const MAX_LAYERS: usize = 64;

/// Most values one parameter tensor may hold.
pub const MAX_TENSOR_VALUES: u64 = 1 << 30;

impl RnnConfig {
    /// A one-layer, one-direction tanh RNN with input size I, hidden size H and output
    /// size O.
    pub fn new(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            output_size,
            activation: Activation::Tanh,
            num_layers: 1,
            bidirectional: false,
        }
    }

    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// L stacked layers.
    pub fn with_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    pub fn with_bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// D: 2 if bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// L·D recurrent cells, in PyTorch's order: layer by layer, forward then reverse.
    pub fn cells(&self) -> usize {
        self.num_layers * self.directions()
    }

    /// Features into layer `layer`: I for the first, D·H above it.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.directions() * self.hidden_size
        }
    }

    /// Checks that every size is at least 1 and the layer count is sane.
    pub fn validate(&self) -> Result<()> {
        nonzero("input_size", self.input_size)?;
        nonzero("hidden_size", self.hidden_size)?;
        nonzero("output_size", self.output_size)?;
        nonzero("num_layers", self.num_layers)?;
        if self.num_layers > MAX_LAYERS {
            return Err(Error::TooLarge {
                what: "num_layers",
                value: self.num_layers as u64,
                limit: MAX_LAYERS as u64,
                why: "layers in one model",
            });
        }
        // No parameter tensor may exceed 2^30 values (4 GiB of f32): checked before
        // anything is allocated for it.
        let d = self.directions() as u128;
        let (i, h, o) = (
            self.input_size as u128,
            self.hidden_size as u128,
            self.output_size as u128,
        );
        for (what, n) in [
            ("values in W_ih (hidden × input)", h * i.max(d * h)),
            ("values in W_hh (hidden × hidden)", h * h),
            ("values in the head (output × directions·hidden)", o * d * h),
        ] {
            if n > MAX_TENSOR_VALUES as u128 {
                return Err(Error::TooLarge {
                    what,
                    value: n.min(u64::MAX as u128) as u64,
                    limit: MAX_TENSOR_VALUES,
                    why: "values in one parameter tensor",
                });
            }
        }
        Ok(())
    }

    /// The shape of each parameter: per cell W_ih (H, in), W_hh (H, H), b_h (H); then
    /// W_hy (O, D·H) and b_y (O).
    pub fn param_shapes(&self) -> Params<Vec<usize>> {
        let h = self.hidden_size;
        let cells = (0..self.cells())
            .map(|c| Cell {
                w_ih: vec![h, self.layer_input_size(c / self.directions())],
                w_hh: vec![h, h],
                b_h: vec![h],
            })
            .collect();
        Params {
            cells,
            w_hy: vec![self.output_size, self.directions() * h],
            b_y: vec![self.output_size],
        }
    }

    /// Parameters drawn like PyTorch's defaults (see [`Init::PyTorch`]) from `seed`.
    pub fn init_params(&self, seed: u64) -> Params<Vec<f32>> {
        self.init_params_with(Init::PyTorch, seed)
    }

    /// Parameters drawn with `init` from a ChaCha8 stream seeded with `seed` (portable
    /// across platforms and crate versions). The head is always PyTorch's `nn.Linear`
    /// default, uniform in ±1/√(D·H).
    pub fn init_params_with(&self, init: Init, seed: u64) -> Params<Vec<f32>> {
        let mut rng = Draws(rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let h = self.hidden_size;
        let bound = 1.0 / (h as f32).sqrt();
        let cells = self
            .param_shapes()
            .cells
            .into_iter()
            .map(|shape| {
                let fan_in = shape.w_ih[1];
                let (w_ih, w_hh, b_h) = match init {
                    Init::PyTorch => {
                        let w_ih = rng.uniform(h * fan_in, bound);
                        let w_hh = rng.uniform(h * h, bound);
                        // PyTorch draws b_ih and b_hh; this crate keeps their sum.
                        let b_ih = rng.uniform(h, bound);
                        let b_hh = rng.uniform(h, bound);
                        let b_h = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
                        (w_ih, w_hh, b_h)
                    }
                    Init::Xavier => {
                        let w_ih = rng.uniform(h * fan_in, (6.0 / (h + fan_in) as f32).sqrt());
                        let w_hh = rng.uniform(h * h, (6.0 / (2 * h) as f32).sqrt());
                        (w_ih, w_hh, vec![0.0; h])
                    }
                    Init::Orthogonal => {
                        let w_ih = rng.uniform(h * fan_in, (6.0 / (h + fan_in) as f32).sqrt());
                        let w_hh = rng.orthogonal(h);
                        (w_ih, w_hh, vec![0.0; h])
                    }
                    Init::Identity => {
                        let w_ih = rng.normal(h * fan_in, 0.001);
                        let mut w_hh = vec![0.0; h * h];
                        (0..h).for_each(|j| w_hh[j * h + j] = 1.0);
                        (w_ih, w_hh, vec![0.0; h])
                    }
                };
                Cell { w_ih, w_hh, b_h }
            })
            .collect();
        let head_bound = 1.0 / ((self.directions() * h) as f32).sqrt();
        let w_hy = rng.uniform(self.output_size * self.directions() * h, head_bound);
        let b_y = rng.uniform(self.output_size, head_bound);
        Params { cells, w_hy, b_y }
    }

    /// Checks x's shape (T, B, I) and returns (T, B).
    pub fn check_input(&self, shape: &[usize]) -> Result<(usize, usize)> {
        match *shape {
            [t, b, i] if i == self.input_size => {
                nonzero("sequence length T (x.shape[0])", t)?;
                nonzero("batch size B (x.shape[1])", b)?;
                Ok((t, b))
            }
            _ => Err(Error::Shape {
                what: "x",
                expected: format!("(T, B, {}) = (steps, batch, input_size)", self.input_size),
                got: shape.to_vec(),
            }),
        }
    }

    /// The shape of h0 and h_n: (L·D, B, H).
    pub fn state_shape(&self, b: usize) -> [usize; 3] {
        [self.cells(), b, self.hidden_size]
    }
}

/// How recurrent cells are initialised (the head is always PyTorch's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's `nn.RNN` default: every weight and bias uniform in ±1/√H.
    #[default]
    PyTorch,
    /// Glorot & Bengio (2010) uniform: ±√(6 / (fan_in + fan_out)) for W_ih and W_hh; zero
    /// biases.
    Xavier,
    /// Xavier W_ih, a random orthogonal W_hh (Saxe, McClelland & Ganguli 2014: QR of a
    /// Gaussian matrix), zero biases.
    Orthogonal,
    /// IRNN (Le, Jaitly & Hinton 2015), for ReLU: W_hh = I, zero biases, W_ih ~ N(0, 0.001²).
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
            for _ in 0..2 {
                for j in 0..i {
                    let d: f64 = (0..n).map(|k| q[i][k] * q[j][k]).sum();
                    for k in 0..n {
                        q[i][k] -= d * q[j][k];
                    }
                }
            }
            let norm = q[i].iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
            q[i].iter_mut().for_each(|v| *v /= norm);
        }
        q.into_iter().flatten().map(|v| v as f32).collect()
    }
}

fn nonzero(what: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        Err(Error::ZeroSize { what })
    } else {
        Ok(())
    }
}

/// Checks that `got` equals `expected`, naming the tensor otherwise.
pub(crate) fn check_shape(what: &'static str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(Error::Shape {
            what,
            expected: format!("{expected:?}"),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// The parameters of one recurrent cell (layer k, direction d), in PyTorch's orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell<T> {
    /// (H, I) for layer 0, (H, D·H) above: PyTorch `weight_ih_l{k}[_reverse]`.
    pub w_ih: T,
    /// (H, H): `weight_hh_l{k}[_reverse]`.
    pub w_hh: T,
    /// (H): `bias_ih_l{k} + bias_hh_l{k}` (one bias; see the checkpoint module).
    pub b_h: T,
}

/// All parameters (or anything kept per parameter: gradients, shapes, optimizer state).
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    /// L·D cells: layer by layer, forward then reverse direction.
    pub cells: Vec<Cell<T>>,
    /// (O, D·H), the head's `nn.Linear.weight`.
    pub w_hy: T,
    /// (O), the head's `nn.Linear.bias`.
    pub b_y: T,
}

impl<T> Params<T> {
    /// Every tensor in a fixed order: each cell's w_ih, w_hh, b_h, then w_hy, b_y.
    pub fn tensors(&self) -> Vec<&T> {
        let mut v: Vec<&T> = self
            .cells
            .iter()
            .flat_map(|c| [&c.w_ih, &c.w_hh, &c.b_h])
            .collect();
        v.push(&self.w_hy);
        v.push(&self.b_y);
        v
    }

    /// [`Params::tensors`], mutably.
    pub fn tensors_mut(&mut self) -> Vec<&mut T> {
        let mut v: Vec<&mut T> = self
            .cells
            .iter_mut()
            .flat_map(|c| [&mut c.w_ih, &mut c.w_hh, &mut c.b_h])
            .collect();
        v.push(&mut self.w_hy);
        v.push(&mut self.b_y);
        v
    }

    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Params<U> {
        Params {
            cells: self
                .cells
                .iter()
                .map(|c| Cell {
                    w_ih: f(&c.w_ih),
                    w_hh: f(&c.w_hh),
                    b_h: f(&c.b_h),
                })
                .collect(),
            w_hy: f(&self.w_hy),
            b_y: f(&self.b_y),
        }
    }

    /// Like [`Params::map`] for a fallible `f`, stopping at the first error.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<Params<U>, E> {
        let mut cells = Vec::with_capacity(self.cells.len());
        for c in &self.cells {
            cells.push(Cell {
                w_ih: f(&c.w_ih)?,
                w_hh: f(&c.w_hh)?,
                b_h: f(&c.b_h)?,
            });
        }
        Ok(Params {
            cells,
            w_hy: f(&self.w_hy)?,
            b_y: f(&self.b_y)?,
        })
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

    /// Checks that the cell count and each parameter's length fit `config`.
    pub fn check(&self, config: &RnnConfig) -> Result<()> {
        self.map(Vec::len).check_lengths(config)
    }
}

impl Params<Vec<f64>> {
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

impl<T> Params<T> {
    /// A name for each of [`Params::tensors`] of a model of `config`: `w_ih_l0`,
    /// `w_hh_l0_reverse`, ..., `w_hy`, `b_y`.
    pub fn names_for(&self, config: &RnnConfig) -> Vec<String> {
        let d = config.directions();
        let mut v: Vec<String> = (0..self.cells.len())
            .flat_map(|c| {
                let sfx = cell_suffix(c, d);
                ["w_ih", "w_hh", "b_h"].map(|n| format!("{n}_{sfx}"))
            })
            .collect();
        v.push("w_hy".into());
        v.push("b_y".into());
        v
    }
}
