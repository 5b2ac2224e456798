//! The model: configuration (cell kind, sizes, layers, directions), parameters and their
//! initialisation, the recurrent state, and the GPU implementation ([`Rnn`]).

pub mod dropout;
mod gpu;
pub(crate) mod kernels;
mod params;
mod plan;
mod timeline;

pub use dropout::DropoutKey;
pub use gpu::{CallStats, ForwardOutput, Gradients, RecurrencePath, Rnn, Slot};
pub use params::{cell_suffix, Cell, Init, Params, State};
pub use timeline::Timeline;

use crate::error::{Error, Result};
use crate::shapes::nonzero;

/// The hidden-state nonlinearity of the Elman cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Tanh,
    Relu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }
}

/// The recurrent cell, with PyTorch's definitions, parameter layouts and gate orders.
/// Every cell computes G gate blocks of H rows from `W_ih x + b_ih` and `W_hh h + b_hh`:
///
/// - `Rnn` (G = 1, `nn.RNN`): h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh | relu.
/// - `Lstm` (G = 4, `nn.LSTM`, gates i, f, g, o): i, f, o = σ(·), g = tanh(·);
///   c' = f ⊙ c + i ⊙ g; h' = o ⊙ tanh(c').
/// - `Gru` (G = 3, `nn.GRU`, gates r, z, n): r, z = σ(·);
///   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum CellKind {
    #[default]
    Rnn = 0,
    Lstm = 1,
    Gru = 2,
}

impl CellKind {
    pub const ALL: [CellKind; 3] = [CellKind::Rnn, CellKind::Lstm, CellKind::Gru];

    /// The id the kernels know the cell by: the `CELL` override constant, compared with
    /// the generated `CELL_RNN`, `CELL_LSTM`, ... (model::kernels).
    pub(crate) fn id(self) -> u32 {
        self as u32
    }

    /// G: gate blocks per cell (rows of W_ih and W_hh are G·H).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// The cell with G gates, as read off a state_dict (`weight_hh_l0` is (G·H, H)).
    pub fn from_gates(g: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.gates() == g)
    }

    /// Whether the cell carries a second state, c (LSTM).
    pub fn has_c(self) -> bool {
        self == CellKind::Lstm
    }

    /// Whether dL/d(W_hh h + b_hh) differs from dL/d(W_ih x + b_ih) and needs a buffer of
    /// its own: GRU's n gate multiplies the recurrent part by r.
    pub fn separate_dr(self) -> bool {
        self == CellKind::Gru
    }

    /// Values a unit saves per step for its backward (besides h and c): LSTM's gates
    /// i, f, g, o; GRU's r, z, n and W_hn h_prev + b_hn; none for the Elman cell, whose
    /// backward needs only h.
    pub fn saved_slots(self) -> usize {
        match self {
            CellKind::Rnn => 0,
            CellKind::Lstm | CellKind::Gru => SAVED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }
}

impl std::str::FromStr for CellKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = if s == "elman" { "rnn" } else { s };
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                Error::IncompatibleArgs(format!(
                    "unknown cell {s:?}; the cells are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Sizes and structure of a recurrent network with a linear output head, as PyTorch's
/// `nn.RNN` / `nn.LSTM` / `nn.GRU` followed by `nn.Linear`: L layers (`num_layers`), each
/// of D directions (2 when `bidirectional`), the reverse direction running from t = T down
/// to 1; layer k > 0 reads the D·H outputs of layer k−1 (forward direction first);
/// `y_t = W_hy [h_t of the last layer's directions] + b_y`. With an
/// [`RnnConfig::embedding`] of V tokens, an `nn.Embedding(V, I)` comes first: inputs are
/// token ids (T, B), and x_t is row id of the embedding table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RnnConfig {
    /// I: features per input step (the embedding's dimension E where there is one).
    pub input_size: usize,
    /// H: hidden units per direction.
    pub hidden_size: usize,
    /// O: outputs per step.
    pub output_size: usize,
    pub cell: CellKind,
    /// The Elman cell's nonlinearity (LSTM and GRU take tanh only).
    pub activation: Activation,
    /// L: stacked layers (1 by default).
    pub num_layers: usize,
    /// D = 2: every layer also runs backwards in time (PyTorch's `bidirectional`).
    pub bidirectional: bool,
    /// The cells have the biases b_ih and b_hh (PyTorch's `bias`, true by default).
    pub bias: bool,
    /// Dropout on the outputs of every layer but the last, in training only (PyTorch's
    /// `dropout`), in [0, 1); 0 by default. See [`dropout`].
    pub dropout: f32,
    /// Dropout on the head's input (the last layer's outputs), in training only, in
    /// [0, 1); 0 by default.
    pub head_dropout: f32,
    /// `Some(V)`: an embedding table (V, I) before layer 0 (PyTorch's `nn.Embedding(V, I)`),
    /// and the inputs are token ids in 0..V rather than features; `None` by default.
    pub embedding: Option<usize>,
}

/// Most values a cell saves per unit and step (see [`CellKind::saved_slots`]).
pub const SAVED: usize = 4;

/// Most layers a config may have (a guard against absurd sizes from files).
pub const MAX_LAYERS: usize = 64;

/// Most values one parameter tensor may hold.
pub const MAX_TENSOR_VALUES: u64 = 1 << 30;

impl RnnConfig {
    /// A one-layer, one-direction tanh Elman RNN with biases, input size I, hidden size H
    /// and output size O.
    pub fn new(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        RnnConfig {
            input_size,
            hidden_size,
            output_size,
            cell: CellKind::Rnn,
            activation: Activation::Tanh,
            num_layers: 1,
            bidirectional: false,
            bias: true,
            dropout: 0.0,
            head_dropout: 0.0,
            embedding: None,
        }
    }

    /// An embedding of `vocab` tokens before layer 0 (`nn.Embedding(vocab, input_size)`):
    /// inputs become token ids, and I is the embedding's dimension.
    pub fn with_embedding(mut self, vocab: usize) -> Self {
        self.embedding = Some(vocab);
        self
    }

    /// Dropout p between layers (PyTorch's `dropout=p`; training only).
    pub fn with_dropout(mut self, p: f32) -> Self {
        self.dropout = p;
        self
    }

    /// Dropout p on the head's input (training only).
    pub fn with_head_dropout(mut self, p: f32) -> Self {
        self.head_dropout = p;
        self
    }

    /// The dropout probability on layer `layer`'s outputs: [`RnnConfig::dropout`] below
    /// the last layer, [`RnnConfig::head_dropout`] on it.
    pub fn dropout_after(&self, layer: usize) -> f32 {
        if layer + 1 < self.num_layers {
            self.dropout
        } else {
            self.head_dropout
        }
    }

    pub fn with_cell(mut self, cell: CellKind) -> Self {
        self.cell = cell;
        self
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

    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// G: gate blocks per cell.
    pub fn gates(&self) -> usize {
        self.cell.gates()
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

    /// Whether cell `c` (in [`RnnConfig::cells`] order) runs backwards in time.
    pub fn is_reverse(&self, c: usize) -> bool {
        self.bidirectional && c % 2 == 1
    }

    /// Checks that every size is at least 1, the layer count is sane and the
    /// nonlinearity fits the cell.
    pub fn validate(&self) -> Result<()> {
        nonzero("input_size", self.input_size)?;
        nonzero("hidden_size", self.hidden_size)?;
        nonzero("output_size", self.output_size)?;
        nonzero("num_layers", self.num_layers)?;
        if let Some(v) = self.embedding {
            nonzero("embedding vocabulary", v)?;
            if v > u32::MAX as usize {
                return Err(Error::TooLarge {
                    what: "embedding vocabulary",
                    value: v as u64,
                    limit: u32::MAX as u64,
                    why: "token ids reach the GPU as u32",
                });
            }
        }
        if self.num_layers > MAX_LAYERS {
            return Err(Error::TooLarge {
                what: "num_layers",
                value: self.num_layers as u64,
                limit: MAX_LAYERS as u64,
                why: "layers in one model",
            });
        }
        for (what, p) in [
            ("dropout", self.dropout),
            ("head_dropout", self.head_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::BadHyperparameter {
                    what,
                    value: p,
                    expected: "in [0, 1): the probability of zeroing a unit in training",
                });
            }
        }
        if self.cell != CellKind::Rnn && self.activation != Activation::Tanh {
            return Err(Error::IncompatibleArgs(format!(
                "the {} nonlinearity belongs to the Elman cell (rnn); {} uses its own gates",
                self.activation.name(),
                self.cell.name()
            )));
        }
        // No parameter tensor may exceed 2^30 values (4 GiB of f32): checked before
        // anything is allocated for it.
        let (d, g) = (self.directions() as u128, self.gates() as u128);
        let (i, h, o) = (
            self.input_size as u128,
            self.hidden_size as u128,
            self.output_size as u128,
        );
        let vocab = self.embedding.unwrap_or(0) as u128;
        for (what, n) in [
            ("values in the embedding (vocabulary × input)", vocab * i),
            (
                "values in W_ih (gates·hidden × input)",
                g * h * i.max(d * h),
            ),
            ("values in W_hh (gates·hidden × hidden)", g * h * h),
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

    /// The shape of each parameter: the embedding (V, I) where there is one; per cell W_ih
    /// (G·H, in), W_hh (G·H, H), and with biases b_ih (G·H), b_hh (G·H); then W_hy
    /// (O, D·H) and b_y (O).
    pub fn param_shapes(&self) -> Params<Vec<usize>> {
        let gh = self.gates() * self.hidden_size;
        let cells = (0..self.cells())
            .map(|c| Cell {
                w_ih: vec![gh, self.layer_input_size(c / self.directions())],
                w_hh: vec![gh, self.hidden_size],
                b_ih: self.bias.then(|| vec![gh]),
                b_hh: self.bias.then(|| vec![gh]),
            })
            .collect();
        Params {
            embedding: self.embedding.map(|v| vec![v, self.input_size]),
            cells,
            w_hy: vec![self.output_size, self.directions() * self.hidden_size],
            b_y: vec![self.output_size],
        }
    }

    /// Checks token ids (T·B of them, each below the vocabulary V) for a model with an
    /// embedding; returns (T, B). A model without one is refused: it takes features.
    pub fn check_tokens(&self, ids: &[u32], t: usize, b: usize) -> Result<(usize, usize)> {
        let Some(vocab) = self.embedding else {
            return Err(Error::IncompatibleArgs(format!(
                "this model has no embedding: it reads {} features per step (x of shape \
                 (T, B, {})), not token ids",
                self.input_size, self.input_size
            )));
        };
        nonzero("sequence length T", t)?;
        nonzero("batch size B", b)?;
        crate::shapes::check_len("token ids", &[t, b], ids.len())?;
        if let Some((at, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            return Err(Error::BadToken {
                id,
                vocab,
                at: [at / b, at % b],
            });
        }
        Ok((t, b))
    }

    /// Checks x's shape (T, B, I) and returns (T, B). A model with an embedding is
    /// refused: it takes token ids ([`RnnConfig::check_tokens`]).
    pub fn check_input(&self, shape: &[usize]) -> Result<(usize, usize)> {
        if let Some(v) = self.embedding {
            return Err(Error::IncompatibleArgs(format!(
                "this model embeds token ids (vocabulary {v}); give ids of shape (T, B), not \
                 features"
            )));
        }
        self.check_feature_shape(shape)
    }

    /// [`RnnConfig::check_input`]'s shape check alone: x (T, B, I), embedded or not.
    pub(crate) fn check_feature_shape(&self, shape: &[usize]) -> Result<(usize, usize)> {
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

    /// The shape of each state tensor (h0, c0, h_n, c_n): (L·D, B, H).
    pub fn state_shape(&self, b: usize) -> [usize; 3] {
        [self.cells(), b, self.hidden_size]
    }

    /// Multiply-adds of one forward step per batch row: the input and recurrent products
    /// of every cell (G·H outputs each) and the head.
    pub fn forward_macs_per_token(&self) -> usize {
        let (g, h) = (self.gates(), self.hidden_size);
        // The embedding's gather is a copy, not a product.
        let cells: usize = (0..self.cells())
            .map(|c| g * h * (self.layer_input_size(c / self.directions()) + h))
            .sum();
        cells + self.output_size * self.directions() * h
    }
}
