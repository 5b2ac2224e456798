//! The PyTorch export: for every layout in tests/fixtures/torch_state_dict_keys.json (what
//! PyTorch's own `state_dict()` of `M(rnn, head)` holds, written by make_fixtures.py), the
//! export holds exactly those keys, shapes and dtypes and round-trips bit for bit; an
//! nn.RNN file without its nonlinearity is an error; exporting a checkpoint never
//! overwrites that checkpoint or leaves a half-written file.
//!
//! With WGPU_RNN_EXPORT_DIR set, the exports are left in that folder for
//! `make_fixtures.py --check-exports` to load into PyTorch with
//! `load_state_dict(strict=True)`:
//!
//! ```python
//! with safe_open(path, "pt") as f:
//!     meta = f.metadata()
//! m = M(meta["cell"], int(meta["input_size"]), ..., meta["nonlinearity"])
//! m.load_state_dict(load_file(path), strict=True)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use wgpu_rnn::files::checkpoint::{self, Checkpoint};
use wgpu_rnn::files::interop::{export_torch, load_torch};
use wgpu_rnn::{Activation, CellKind, Params, RnnConfig, State};

/// A fresh folder of this process, or WGPU_RNN_EXPORT_DIR's `sub` for the Python check.
fn folder(sub: &str) -> PathBuf {
    let d = match std::env::var_os("WGPU_RNN_EXPORT_DIR") {
        Some(d) if sub == "layouts" => PathBuf::from(d),
        _ => std::env::temp_dir().join(format!("wgpu-rnn-export-{}-{sub}", std::process::id())),
    };
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(serde::Deserialize)]
struct Keys {
    source: String,
    input_size: usize,
    hidden_size: usize,
    output_size: usize,
    layouts: Vec<Layout>,
}

#[derive(serde::Deserialize)]
struct Layout {
    name: String,
    cell: String,
    nonlinearity: String,
    num_layers: usize,
    bidirectional: bool,
    bias: bool,
    /// The vocabulary of an `embedding` before `rnn` (None: no embedding).
    embedding: Option<usize>,
    state_dict: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    key: String,
    shape: Vec<usize>,
    dtype: String,
}

fn torch_keys() -> Keys {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_state_dict_keys.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config_of(keys: &Keys, l: &Layout) -> RnnConfig {
    let cell = match l.cell.as_str() {
        "rnn" => CellKind::Rnn,
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        c => panic!("{}: cell {c}", l.name),
    };
    let activation = match l.nonlinearity.as_str() {
        "tanh" => Activation::Tanh,
        "relu" => Activation::Relu,
        a => panic!("{}: nonlinearity {a}", l.name),
    };
    let cfg = RnnConfig::new(keys.input_size, keys.hidden_size, keys.output_size)
        .with_cell(cell)
        .with_activation(activation)
        .with_layers(l.num_layers)
        .with_bidirectional(l.bidirectional)
        .with_bias(l.bias);
    match l.embedding {
        Some(v) => cfg.with_embedding(v),
        None => cfg,
    }
}

/// Every tensor's (shape, dtype) by name, and the metadata.
type Header = (
    BTreeMap<String, (Vec<usize>, Dtype)>,
    HashMap<String, String>,
);

fn header(path: &Path) -> Header {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.dtype())))
        .collect();
    let (_, h) = SafeTensors::read_metadata(&bytes).unwrap();
    (tensors, h.metadata().clone().unwrap_or_default())
}

/// Params with values whose bits a lossy path would change: -0.0, a subnormal, the
/// smallest normal f32 and a value no short decimal holds (all small enough that PyTorch's
/// forward pass on the export stays finite).
fn awkward_params(cfg: &RnnConfig, seed: u64) -> Params<Vec<f32>> {
    let mut p = cfg.init_params(seed);
    for (k, t) in p.tensors_mut().into_iter().enumerate() {
        let special = [-0.0, f32::from_bits(1), f32::MIN_POSITIVE, 1.0 / 3.0];
        t[0] = special[k % special.len()];
    }
    p
}

fn same_bits(a: &Params<Vec<f32>>, b: &Params<Vec<f32>>) -> bool {
    let bits = |p: &Params<Vec<f32>>| -> Vec<Vec<u32>> {
        p.tensors()
            .into_iter()
            .map(|t| t.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    bits(a) == bits(b)
}

#[test]
fn every_layout_exports_exactly_pytorchs_state_dict_keys_shapes_and_dtypes() {
    let keys = torch_keys();
    assert!(keys.source.contains("torch"), "{}", keys.source);
    // The JSON covers every cell x layers 1, 2 x uni/bidirectional x bias on/off, and two
    // layouts with an embedding.
    let layouts: BTreeSet<(String, String, usize, bool, bool, Option<usize>)> = keys
        .layouts
        .iter()
        .map(|l| {
            (
                l.cell.clone(),
                l.nonlinearity.clone(),
                l.num_layers,
                l.bidirectional,
                l.bias,
                l.embedding,
            )
        })
        .collect();
    assert_eq!((keys.layouts.len(), layouts.len()), (34, 34));
    assert_eq!(
        keys.layouts
            .iter()
            .filter(|l| l.embedding.is_some())
            .count(),
        2
    );
    let dir = folder("layouts");
    for (n, l) in keys.layouts.iter().enumerate() {
        let cfg = config_of(&keys, l);
        let params = awkward_params(&cfg, 100 + n as u64);
        let path = dir.join(format!("{}.safetensors", l.name));
        export_torch(&cfg, &params, &path).unwrap();
        let (tensors, meta) = header(&path);
        let theirs: BTreeMap<String, (Vec<usize>, Dtype)> = l
            .state_dict
            .iter()
            .map(|e| {
                assert_eq!(e.dtype, "torch.float32", "{}: {}", l.name, e.key);
                (e.key.clone(), (e.shape.clone(), Dtype::F32))
            })
            .collect();
        assert_eq!(tensors, theirs, "{}: keys, shapes and dtypes", l.name);
        for (k, v) in [
            ("cell", l.cell.clone()),
            ("nonlinearity", l.nonlinearity.clone()),
            ("num_layers", l.num_layers.to_string()),
            ("bidirectional", l.bidirectional.to_string()),
            ("bias", l.bias.to_string()),
            ("input_size", keys.input_size.to_string()),
            ("hidden_size", keys.hidden_size.to_string()),
            ("output_size", keys.output_size.to_string()),
        ] {
            assert_eq!(meta.get(k), Some(&v), "{}: metadata {k}", l.name);
        }
        let vocab = l.embedding.map(|v| v.to_string());
        assert_eq!(
            meta.get("embedding"),
            vocab.as_ref(),
            "{}: metadata embedding",
            l.name
        );
        let back = load_torch(&path, None).unwrap();
        assert_eq!(back.config, cfg, "{}", l.name);
        assert_eq!(back.prefix, "rnn.", "{}", l.name);
        assert!(
            same_bits(&back.params, &params),
            "{}: not bit for bit",
            l.name
        );
    }
}

/// The export's metadata is what tells a relu nn.RNN from a tanh one; stripped of it, the
/// file loads only with the nonlinearity given.
#[test]
fn relu_elman_without_metadata_is_an_error_unless_the_nonlinearity_is_given() {
    let dir = folder("plain");
    for cfg in [
        RnnConfig::new(3, 4, 2).with_activation(Activation::Relu),
        RnnConfig::new(3, 4, 2)
            .with_cell(CellKind::Lstm)
            .with_layers(2),
        RnnConfig::new(3, 4, 2)
            .with_cell(CellKind::Gru)
            .with_bidirectional(true),
    ] {
        let params = cfg.init_params(5);
        let path = dir.join(format!("{}.safetensors", cfg.cell.name()));
        export_torch(&cfg, &params, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let plain = safetensors::serialize(st.tensors(), None).unwrap();
        let plain_path = dir.join(format!("{}-plain.safetensors", cfg.cell.name()));
        std::fs::write(&plain_path, plain).unwrap();
        let loaded = load_torch(&plain_path, None);
        if cfg.cell == CellKind::Rnn {
            let e = loaded.unwrap_err().to_string();
            assert!(
                e.contains("nonlinearity")
                    && e.contains("--nonlinearity")
                    && e.contains("metadata")
                    && e.contains(&plain_path.display().to_string()),
                "{e}"
            );
            let m = load_torch(&plain_path, Some(Activation::Relu)).unwrap();
            assert_eq!(m.config, cfg);
        } else {
            // LSTM and GRU have no nonlinearity to choose.
            assert_eq!(loaded.unwrap().config, cfg);
        }
        assert_eq!(load_torch(&path, None).unwrap().config, cfg);
    }
}

fn checkpoint() -> Checkpoint {
    let config = RnnConfig::new(3, 4, 3)
        .with_cell(CellKind::Lstm)
        .with_layers(2)
        .with_bidirectional(true);
    let b = 2;
    let n = config.state_shape(b).iter().product();
    Checkpoint {
        params: awkward_params(&config, 1),
        optim: Some((config.init_params(2), config.init_params(3))),
        task: "sine".into(),
        vocab: None,
        step: 7,
        carried_state: Some((
            b,
            State {
                h: vec![0.25; n],
                c: Some(vec![-0.5; n]),
            },
        )),
        extra: BTreeMap::from([("lr".to_string(), "0.01".to_string())]),
        config,
    }
}

/// A checkpoint holds optimizer moments, carried state and task metadata that PyTorch's
/// strict load would reject; its export holds the model alone.
#[test]
fn checkpoint_export_holds_the_model_alone_and_round_trips() {
    let dir = folder("checkpoint");
    let ck = checkpoint();
    let ck_path = dir.join("model.safetensors");
    ck.save(&ck_path).unwrap();
    let out = match std::env::var_os("WGPU_RNN_EXPORT_DIR") {
        Some(d) => PathBuf::from(d).join("from_checkpoint_lstm_l2_bi.safetensors"),
        None => dir.join("export.safetensors"),
    };
    checkpoint::export_torch(&ck_path, &out).unwrap();
    let (tensors, meta) = header(&out);
    assert!(
        tensors
            .keys()
            .all(|k| k.starts_with("rnn.") || k.starts_with("head.")),
        "{:?}",
        tensors.keys()
    );
    assert_eq!(tensors.len(), 2 * 2 * 4 + 2);
    assert!(
        !meta.contains_key("format") && !meta.contains_key("step"),
        "{meta:?}"
    );
    let back = load_torch(&out, None).unwrap();
    assert_eq!(back.config, ck.config);
    assert!(same_bits(&back.params, &ck.params));
}

#[test]
fn export_refuses_to_overwrite_its_own_checkpoint_by_any_name() {
    let dir = folder("own");
    let ck_path = dir.join("model.safetensors");
    checkpoint().save(&ck_path).unwrap();
    let before = std::fs::read(&ck_path).unwrap();
    let link = dir.join("link.safetensors");
    let hard = dir.join("hard.safetensors");
    std::fs::remove_file(&link).ok();
    std::fs::remove_file(&hard).ok();
    std::fs::hard_link(&ck_path, &hard).unwrap();
    let mut names = vec![
        ck_path.clone(),
        dir.join(".").join("model.safetensors"),
        hard,
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&ck_path, &link).unwrap();
        names.push(link);
    }
    for out in &names {
        let e = checkpoint::export_torch(&ck_path, out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is this checkpoint") && e.contains("another output"),
            "{}: {e}",
            out.display()
        );
        assert_eq!(
            std::fs::read(&ck_path).unwrap(),
            before,
            "{}",
            out.display()
        );
    }
    assert_eq!(Checkpoint::load(&ck_path).unwrap(), checkpoint());
}

/// The export goes to a temporary file renamed over the target: a failed export leaves an
/// existing file as it was and no temporary file behind; a good one replaces it whole.
#[test]
fn export_replaces_an_existing_file_whole_or_not_at_all() {
    let dir = folder("atomic");
    let path = dir.join("out.safetensors");
    let cfg = RnnConfig::new(3, 4, 2).with_cell(CellKind::Gru);
    let params = cfg.init_params(1);
    export_torch(&cfg, &params, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = cfg.init_params(2);
    bad.w_hy.pop();
    assert!(export_torch(&cfg, &bad, &path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let other = RnnConfig::new(5, 6, 3).with_activation(Activation::Relu);
    let params = other.init_params(3);
    export_torch(&other, &params, &path).unwrap();
    let back = load_torch(&path, None).unwrap();
    assert_eq!(back.config, other);
    assert!(same_bits(&back.params, &params));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out.safetensors"]);
}
