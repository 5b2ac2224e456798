//! ONNX export (feature `onnx`): a model as an ONNX graph that onnxruntime and the other
//! ONNX runtimes run, with ONNX's own recurrent operators, one per layer.
//!
//! The graph (opset [`OPSET`]) takes
//! - `x` (T, B, I) float, time-major; or for a model with an embedding `ids` (T, B) int64,
//!   token ids, which a `Gather` of the table turns into x;
//! - `h0` (L·D, B, H) float and, for LSTM, `c0` (L·D, B, H): the initial state (zeros for
//!   none);
//! - `lengths` (B) int32: each row's steps, 1..=T (T for every row of a full batch);
//!
//! and returns `y` (T, B, O), zero past a row's length, `h_n` (L·D, B, H) and, for LSTM,
//! `c_n`: what [`crate::Rnn::forward_with_lengths`] and `wgpu-rnn eval` return.
//!
//! Each layer is one `RNN`, `LSTM` or `GRU` node (both directions in one node when the
//! model is bidirectional) with `sequence_lens` and `initial_h`/`initial_c` sliced from the
//! inputs. ONNX orders the gate blocks differently from PyTorch, so the weights are
//! reordered: LSTM i, f, g, o becomes i, o, f, c; GRU r, z, n becomes z, r, h, with
//! `linear_before_reset = 1` (PyTorch's n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))). A
//! layer's Y (T, D, B, H) becomes the next layer's input (T, B, D·H) by a Transpose and a
//! Reshape, PyTorch's layout. The head is a MatMul and an Add, then a mask from `lengths`
//! zeroes the steps past each row's end. Every model this crate trains can be expressed.
//!
//! The protobuf messages are the subset of ONNX's `onnx.proto` an inference graph needs,
//! declared with prost's derive (field numbers as in that file), so no protoc or build
//! script is involved.

use std::path::Path;

use prost::Message;

use crate::error::Result;
use crate::model::{Activation, CellKind, Params, RnnConfig};

/// The ONNX operator set the graph uses (the recurrent operators' latest version).
pub const OPSET: i64 = 14;
/// The IR version that goes with opset 14 (ONNX 1.9).
const IR_VERSION: i64 = 7;

/// The graph's inputs and outputs, as named above.
pub const INPUTS: [&str; 5] = ["x", "ids", "h0", "c0", "lengths"];
pub const OUTPUTS: [&str; 3] = ["y", "h_n", "c_n"];

mod proto {
    //! ONNX's messages (onnx.proto3), the fields an inference graph uses.

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(string, tag = "6")]
        pub doc_string: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    /// AttributeProto.AttributeType values.
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const INTS: i32 = 7;
    pub const STRINGS: i32 = 8;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, tag = "2")]
        pub f: f32,
        #[prost(int64, tag = "3")]
        pub i: i64,
        #[prost(bytes = "vec", tag = "4")]
        pub s: Vec<u8>,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        #[prost(bytes = "vec", repeated, tag = "9")]
        pub strings: Vec<Vec<u8>>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    /// TensorProto.DataType values.
    pub const DT_FLOAT: i32 = 1;
    pub const DT_INT32: i32 = 6;
    pub const DT_INT64: i32 = 7;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        /// Little-endian values, as ONNX stores raw data.
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorType {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

use proto::*;

/// A dimension of a graph input or output: a number, or a name (T, B) the runtime fills.
enum Dim {
    Fixed(usize),
    Named(&'static str),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            Dim::Named(s) => Dimension {
                dim_value: None,
                dim_param: Some(s.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: INT,
        ..Default::default()
    }
}

fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        r#type: STRING,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: INTS,
        ..Default::default()
    }
}

fn attr_strings(name: &str, strings: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: STRINGS,
        ..Default::default()
    }
}

/// The nodes and initializers of a graph being built.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder {
    fn tensor(&mut self, name: &str, data_type: i32, dims: &[usize], raw_data: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.into(),
            raw_data,
        });
        name.into()
    }

    fn floats(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, DT_FLOAT, dims, raw)
    }

    fn int64s(&mut self, name: &str, dims: &[usize], v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, DT_INT64, dims, raw)
    }

    /// A node of `op` whose outputs are named after `name`; returns them.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: usize,
        attribute: Vec<AttributeProto>,
    ) -> Vec<String> {
        let output: Vec<String> = match outputs {
            1 => vec![name.to_string()],
            n => (0..n).map(|k| format!("{name}_{k}")).collect(),
        };
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name: name.into(),
            op_type: op.into(),
            attribute,
        });
        output
    }

    fn one(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.node(op, name, inputs, 1, attrs).remove(0)
    }
}

/// ONNX's order of a cell's gate blocks, as indices of PyTorch's blocks.
fn onnx_gate_order(cell: CellKind) -> &'static [usize] {
    match cell {
        // i, f, g, o -> i, o, f, c
        CellKind::Lstm => &[0, 3, 1, 2],
        // r, z, n -> z, r, h
        CellKind::Gru => &[1, 0, 2],
        CellKind::Rnn => &[0],
    }
}

/// The gate blocks of `v` (G blocks of `block` values each) in `order`.
fn reorder(v: &[f32], order: &[usize]) -> Vec<f32> {
    let block = v.len() / order.len();
    order
        .iter()
        .flat_map(|&k| &v[k * block..(k + 1) * block])
        .copied()
        .collect()
}

/// The model as ONNX bytes (see the module's documentation for the graph).
pub fn to_onnx(config: &RnnConfig, params: &Params<Vec<f32>>) -> Result<Vec<u8>> {
    config.validate()?;
    params.check(config)?;
    let mut g = Builder::default();
    let (l, d, h) = (config.num_layers, config.directions(), config.hidden_size);
    let gh = config.gates() * h;
    let order = onnx_gate_order(config.cell);
    let lstm = config.cell.has_c();
    let op = match config.cell {
        CellKind::Rnn => "RNN",
        CellKind::Lstm => "LSTM",
        CellKind::Gru => "GRU",
    };
    let axis0 = g.int64s("axis0", &[1], &[0]);
    if let (Some(table), Some(vocab)) = (&params.embedding, config.embedding) {
        let table = g.floats("embedding_weight", &[vocab, config.input_size], table);
        g.one("Gather", "x", &[&table, "ids"], vec![attr_int("axis", 0)]);
    }
    let mut layer_input = "x".to_string();
    let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
    for layer in 0..l {
        let cells = &params.cells[layer * d..(layer + 1) * d];
        let i = config.layer_input_size(layer);
        let w: Vec<f32> = cells.iter().flat_map(|c| reorder(&c.w_ih, order)).collect();
        let r: Vec<f32> = cells.iter().flat_map(|c| reorder(&c.w_hh, order)).collect();
        let w = g.floats(&format!("W_l{layer}"), &[d, gh, i], &w);
        let r = g.floats(&format!("R_l{layer}"), &[d, gh, h], &r);
        let b = if config.bias {
            let b: Vec<f32> = cells
                .iter()
                .flat_map(|c| {
                    let bi = c.b_ih.as_deref().unwrap_or(&[]);
                    let bh = c.b_hh.as_deref().unwrap_or(&[]);
                    [reorder(bi, order), reorder(bh, order)].concat()
                })
                .collect();
            g.floats(&format!("B_l{layer}"), &[d, 2 * gh], &b)
        } else {
            String::new() // ONNX's missing optional input: zero biases
        };
        let starts = g.int64s(&format!("start_l{layer}"), &[1], &[(layer * d) as i64]);
        let ends = g.int64s(&format!("end_l{layer}"), &[1], &[((layer + 1) * d) as i64]);
        let slice = |g: &mut Builder, state: &str| {
            let name = format!("{state}_l{layer}");
            g.one("Slice", &name, &[state, &starts, &ends, &axis0], vec![])
        };
        let h0 = slice(&mut g, "h0");
        let mut inputs = vec![layer_input.clone(), w, r, b, "lengths".into(), h0];
        if lstm {
            inputs.push(slice(&mut g, "c0"));
        }
        let mut attrs = vec![
            attr_int("hidden_size", h as i64),
            attr_string(
                "direction",
                if config.bidirectional {
                    "bidirectional"
                } else {
                    "forward"
                },
            ),
        ];
        match config.cell {
            CellKind::Rnn => {
                let act = match config.activation {
                    Activation::Tanh => "Tanh",
                    Activation::Relu => "Relu",
                };
                attrs.push(attr_strings("activations", &vec![act; d]));
            }
            CellKind::Gru => attrs.push(attr_int("linear_before_reset", 1)),
            CellKind::Lstm => {}
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let outs = g.node(
            op,
            &format!("{}_l{layer}", op.to_lowercase()),
            &refs,
            if lstm { 3 } else { 2 },
            attrs,
        );
        h_n.push(outs[1].clone());
        if lstm {
            c_n.push(outs[2].clone());
        }
        // Y (T, D, B, H) -> (T, B, D, H) -> (T, B, D·H), PyTorch's layout.
        let t = g.one(
            "Transpose",
            &format!("y_tbdh_l{layer}"),
            &[&outs[0]],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let shape = g.int64s(&format!("shape_l{layer}"), &[3], &[0, 0, -1]);
        layer_input = g.one("Reshape", &format!("out_l{layer}"), &[&t, &shape], vec![]);
    }
    for (name, parts) in [("h_n", &h_n), ("c_n", &c_n)] {
        if parts.is_empty() {
            continue;
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.one("Concat", name, &refs, vec![attr_int("axis", 0)]);
    }
    head(&mut g, config, params, &layer_input);
    let graph = graph(config, g);
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "wgpu-rnn".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} model: {}, h0{} (L·D = {}, B, {h}), lengths (B) -> y (T, B, {}), h_n{}",
            config.cell.name(),
            match config.embedding {
                Some(v) => format!("ids (T, B) below {v}"),
                None => format!("x (T, B, {})", config.input_size),
            },
            if lstm { ", c0" } else { "" },
            config.cells(),
            config.output_size,
            if lstm { ", c_n" } else { "" },
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: crate::files::interop::config_metadata(config)
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

/// y = (out W_hyᵀ + b_y) ⊙ [t < lengths[b]], (T, B, O).
fn head(g: &mut Builder, config: &RnnConfig, params: &Params<Vec<f32>>, out: &str) {
    let (dh, o) = (config.directions() * config.hidden_size, config.output_size);
    // W_hy (O, D·H) transposed to (D·H, O) for MatMul.
    let mut wt = vec![0.0f32; dh * o];
    for (r, row) in params.w_hy.chunks(dh).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            wt[c * o + r] = v;
        }
    }
    let wt = g.floats("head_weight_t", &[dh, o], &wt);
    let by = g.floats("head_bias", &[o], &params.b_y);
    let mm = g.one("MatMul", "head_matmul", &[out, &wt], vec![]);
    let y = g.one("Add", "head_out", &[&mm, &by], vec![]);
    // The mask: Range(0, T) (T, 1) < lengths (1, B), as floats (T, B, 1).
    let shape = g.one("Shape", "x_shape", &["x"], vec![]);
    let zero = g.int64s("zero", &[], &[0]);
    let one = g.int64s("one", &[], &[1]);
    let t = g.one(
        "Gather",
        "t_len",
        &[&shape, &zero],
        vec![attr_int("axis", 0)],
    );
    let steps = g.one("Range", "steps", &[&zero, &t, &one], vec![]);
    let axis1 = g.int64s("axis1", &[1], &[1]);
    let axis2 = g.int64s("axis2", &[1], &[2]);
    let axis0 = "axis0";
    let steps = g.one("Unsqueeze", "steps_t1", &[&steps, &axis1], vec![]);
    let lengths = g.one(
        "Cast",
        "lengths_i64",
        &["lengths"],
        vec![attr_int("to", DT_INT64 as i64)],
    );
    let lengths = g.one("Unsqueeze", "lengths_1b", &[&lengths, axis0], vec![]);
    let live = g.one("Less", "live", &[&steps, &lengths], vec![]);
    let live = g.one(
        "Cast",
        "live_f",
        &[&live],
        vec![attr_int("to", DT_FLOAT as i64)],
    );
    let live = g.one("Unsqueeze", "live_tb1", &[&live, &axis2], vec![]);
    g.one("Mul", "y", &[&y, &live], vec![]);
}

fn graph(config: &RnnConfig, g: Builder) -> GraphProto {
    use Dim::{Fixed, Named};
    let (i, h, o, cells) = (
        config.input_size,
        config.hidden_size,
        config.output_size,
        config.cells(),
    );
    let state = || [Fixed(cells), Named("B"), Fixed(h)];
    let mut input = vec![
        match config.embedding {
            Some(_) => value_info("ids", DT_INT64, &[Named("T"), Named("B")]),
            None => value_info("x", DT_FLOAT, &[Named("T"), Named("B"), Fixed(i)]),
        },
        value_info("h0", DT_FLOAT, &state()),
    ];
    let mut output = vec![
        value_info("y", DT_FLOAT, &[Named("T"), Named("B"), Fixed(o)]),
        value_info("h_n", DT_FLOAT, &state()),
    ];
    if config.cell.has_c() {
        input.push(value_info("c0", DT_FLOAT, &state()));
        output.push(value_info("c_n", DT_FLOAT, &state()));
    }
    input.push(value_info("lengths", DT_INT32, &[Named("B")]));
    GraphProto {
        node: g.nodes,
        name: "wgpu_rnn".into(),
        initializer: g.initializers,
        input,
        output,
    }
}

/// Writes the model as ONNX to `path` (crash-safely, as checkpoints are written); the
/// folder must exist.
pub fn export_onnx(config: &RnnConfig, params: &Params<Vec<f32>>, path: &Path) -> Result<()> {
    let bytes = to_onnx(config, params)?;
    crate::files::interop::write_atomic(path, &bytes)
}

/// Exports the model of the checkpoint at `checkpoint` to `output` as ONNX, after the
/// checks of [`crate::files::checkpoint::check_export_target`].
pub fn export_checkpoint(checkpoint: &Path, output: &Path) -> Result<()> {
    crate::files::checkpoint::check_export_target(checkpoint, output)?;
    let ck = crate::Checkpoint::load(checkpoint)?;
    export_onnx(&ck.config, &ck.params, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_blocks_take_onnx_order() {
        // Blocks of 2 values: PyTorch's LSTM i, f, g, o; GRU r, z, n.
        let lstm = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let order = onnx_gate_order(CellKind::Lstm);
        assert_eq!(
            reorder(&lstm, order),
            [1.0, 1.0, 4.0, 4.0, 2.0, 2.0, 3.0, 3.0]
        );
        let gru = [1.0, 2.0, 3.0];
        assert_eq!(
            reorder(&gru, onnx_gate_order(CellKind::Gru)),
            [2.0, 1.0, 3.0]
        );
    }

    #[test]
    fn an_embedding_is_a_gather_of_the_table_by_int64_ids() {
        let cfg = RnnConfig::new(3, 5, 4).with_embedding(9);
        let params = cfg.init_params(2);
        let m = ModelProto::decode(to_onnx(&cfg, &params).unwrap().as_slice()).unwrap();
        let g = m.graph.unwrap();
        assert_eq!(
            (g.input[0].name.as_str(), g.node[0].op_type.as_str()),
            ("ids", "Gather")
        );
        assert_eq!(g.node[0].input, ["embedding_weight", "ids"]);
        assert_eq!(g.node[0].output, ["x"]);
        let table = g
            .initializer
            .iter()
            .find(|t| t.name == "embedding_weight")
            .unwrap();
        assert_eq!(table.dims, [9, 3]);
        assert_eq!(
            table.raw_data,
            bytemuck::cast_slice::<f32, u8>(params.embedding.as_ref().unwrap())
        );
        assert!(m
            .metadata_props
            .iter()
            .any(|p| p.key == "embedding" && p.value == "9"));
    }

    #[test]
    fn one_recurrent_node_per_layer_with_the_attributes() {
        for (cell, op) in [
            (CellKind::Rnn, "RNN"),
            (CellKind::Lstm, "LSTM"),
            (CellKind::Gru, "GRU"),
        ] {
            let cfg = RnnConfig::new(3, 5, 4)
                .with_cell(cell)
                .with_layers(2)
                .with_bidirectional(true)
                .with_bias(false);
            let bytes = to_onnx(&cfg, &cfg.init_params(1)).unwrap();
            let m = ModelProto::decode(bytes.as_slice()).unwrap();
            assert_eq!(
                (m.ir_version, m.opset_import[0].version),
                (IR_VERSION, OPSET)
            );
            let g = m.graph.unwrap();
            let nodes: Vec<&NodeProto> = g.node.iter().filter(|n| n.op_type == op).collect();
            assert_eq!(nodes.len(), 2, "{op}");
            for n in nodes {
                let attr = |k: &str| n.attribute.iter().find(|a| a.name == k);
                assert_eq!(attr("direction").unwrap().s, b"bidirectional");
                assert_eq!(attr("hidden_size").unwrap().i, 5);
                assert_eq!(
                    attr("linear_before_reset").map(|a| a.i),
                    (cell == CellKind::Gru).then_some(1)
                );
                // No biases: ONNX's empty name for the optional B; lengths and h0 given.
                assert_eq!(n.input[3], "");
                assert_eq!(n.input[4], "lengths");
                assert_eq!(n.input.len(), if cell == CellKind::Lstm { 7 } else { 6 });
            }
            let names = |v: &[ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
            let lstm = cell == CellKind::Lstm;
            let want_in: Vec<&str> = ["x", "h0"]
                .into_iter()
                .chain(lstm.then_some("c0"))
                .chain(["lengths"])
                .collect();
            assert_eq!(names(&g.input), want_in);
            let want_out: Vec<&str> = ["y", "h_n"]
                .into_iter()
                .chain(lstm.then_some("c_n"))
                .collect();
            assert_eq!(names(&g.output), want_out);
        }
    }
}
