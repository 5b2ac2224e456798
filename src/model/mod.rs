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

/// Sizes and nonlinearity of an Elman RNN with a linear output head:
/// `h_t = act(W_xh x_t + W_hh h_{t-1} + b_h)`, `y_t = W_hy h_t + b_y`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RnnConfig {
    /// I: features per input step.
    pub input_size: usize,
    /// H: hidden units.
    pub hidden_size: usize,
    /// O: outputs per step.
    pub output_size: usize,
    pub activation: Activation,
}

impl RnnConfig {
    /// A tanh RNN with input size I, hidden size H and output size O.
    pub fn new(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            output_size,
            activation: Activation::Tanh,
        }
    }

    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Checks that every size is at least 1.
    pub fn validate(&self) -> Result<()> {
        nonzero("input_size", self.input_size)?;
        nonzero("hidden_size", self.hidden_size)?;
        nonzero("output_size", self.output_size)
    }

    /// The shape of each parameter: W_xh (H,I), W_hh (H,H), b_h (H), W_hy (O,H), b_y (O).
    pub fn param_shapes(&self) -> Params<Vec<usize>> {
        let (i, h, o) = (self.input_size, self.hidden_size, self.output_size);
        Params {
            w_xh: vec![h, i],
            w_hh: vec![h, h],
            b_h: vec![h],
            w_hy: vec![o, h],
            b_y: vec![o],
        }
    }

    /// Parameters drawn like PyTorch's defaults, from a ChaCha8 stream seeded with `seed`
    /// (portable across platforms and crate versions): every weight uniform in ±1/√H.
    /// b_h is the sum of two such draws, as PyTorch's b_ih + b_hh is.
    pub fn init_params(&self, seed: u64) -> Params<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let bound = 1.0 / (self.hidden_size as f32).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    // 24 random bits -> [0, 1), exact in f32.
                    let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
                    (2.0 * u - 1.0) * bound
                })
                .collect()
        };
        let shapes = self.param_shapes();
        let w_xh = uniform(shapes.w_xh.iter().product());
        let w_hh = uniform(shapes.w_hh.iter().product());
        let b_ih = uniform(self.hidden_size);
        let b_hh = uniform(self.hidden_size);
        let b_h = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        let w_hy = uniform(shapes.w_hy.iter().product());
        let b_y = uniform(self.output_size);
        Params {
            w_xh,
            w_hh,
            b_h,
            w_hy,
            b_y,
        }
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

/// The five parameters (or anything kept per parameter: gradients, shapes, optimizer
/// state), in PyTorch's orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    /// (H, I), PyTorch `weight_ih_l0`.
    pub w_xh: T,
    /// (H, H), PyTorch `weight_hh_l0`.
    pub w_hh: T,
    /// (H), PyTorch `bias_ih_l0 + bias_hh_l0`.
    pub b_h: T,
    /// (O, H), the head's `nn.Linear.weight`.
    pub w_hy: T,
    /// (O), the head's `nn.Linear.bias`.
    pub b_y: T,
}

impl<T> Params<T> {
    pub const NAMES: [&'static str; 5] = ["w_xh", "w_hh", "b_h", "w_hy", "b_y"];

    pub fn as_array(&self) -> [&T; 5] {
        [&self.w_xh, &self.w_hh, &self.b_h, &self.w_hy, &self.b_y]
    }

    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Params<U> {
        Params {
            w_xh: f(&self.w_xh),
            w_hh: f(&self.w_hh),
            b_h: f(&self.b_h),
            w_hy: f(&self.w_hy),
            b_y: f(&self.b_y),
        }
    }

    /// Like [`Params::map`] for a fallible `f`, stopping at the first error.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<Params<U>, E> {
        Ok(Params {
            w_xh: f(&self.w_xh)?,
            w_hh: f(&self.w_hh)?,
            b_h: f(&self.b_h)?,
            w_hy: f(&self.w_hy)?,
            b_y: f(&self.b_y)?,
        })
    }
}

impl Params<Vec<f32>> {
    /// Widened to f64, for the CPU reference.
    pub fn to_f64(&self) -> Params<Vec<f64>> {
        self.map(|v| v.iter().map(|&x| x as f64).collect())
    }

    /// Checks that each parameter holds as many values as `config` says.
    pub fn check(&self, config: &RnnConfig) -> Result<()> {
        let shapes = config.param_shapes();
        for ((name, v), shape) in Params::<()>::NAMES
            .iter()
            .zip(self.as_array())
            .zip(shapes.as_array())
        {
            let expected: usize = shape.iter().product();
            if v.len() != expected {
                return Err(Error::DataLength {
                    what: name,
                    shape: shape.clone(),
                    expected,
                    got: v.len(),
                });
            }
        }
        Ok(())
    }
}
