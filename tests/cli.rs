//! The command line: bad input gives a clear error and a non-zero exit, never a panic;
//! a short run trains, saves, and samples.

use std::process::Command;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(args)
        .output()
        .expect("run the wgpu-rnn binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu-rnn-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = cli(args);
    assert!(!ok, "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let empty = temp("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let binary = temp("binary.txt");
    std::fs::write(&binary, [0x66, 0x6f, 0xff, 0xfe, 0x00]).unwrap();
    let corrupt = temp("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    let s = |p: &std::path::Path| p.display().to_string();

    fails_with(&["--text", "/no/such/file.txt"], "/no/such/file.txt");
    fails_with(&["--text", &s(&empty)], "unusable text");
    fails_with(&["--text", &s(&binary)], "not UTF-8");
    fails_with(&["--lr", "NaN"], "learning rate");
    fails_with(&["--hidden", "0"], "--hidden");
    fails_with(&["--batch", "100000000"], "--batch");
    fails_with(&["--resume", &s(&corrupt)], "checkpoint");
    fails_with(&["sample", "--model", &s(&corrupt)], "checkpoint");
    fails_with(&["--task", "nonsense"], "invalid value");
}

#[test]
fn short_run_trains_saves_and_samples() {
    let model = temp("sine.safetensors");
    let m = model.display().to_string();
    let (ok, out, err) = cli(&[
        "train",
        "--task",
        "sine",
        "--steps",
        "30",
        "--hidden",
        "16",
        "--batch",
        "8",
        "--seq",
        "16",
        "--eval-every",
        "10",
        "--save",
        &m,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("final validation: MSE"), "{out}");
    assert!(model.exists() && model.with_extension("svg").exists());

    // A sine checkpoint cannot resume a text run, nor be sampled as text.
    fails_with(&["--resume", &m, "--task", "text"], "task");
    fails_with(&["sample", "--model", &m], "only text models");

    let text_model = temp("text.safetensors");
    let t = text_model.display().to_string();
    let (ok, out, err) = cli(&[
        "--steps",
        "5",
        "--hidden",
        "16",
        "--batch",
        "4",
        "--seq",
        "8",
        "--save",
        &t,
        "--sample-len",
        "20",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("bits/char") && out.contains("--- sample ---"),
        "{out}"
    );
    let (ok, out, err) = cli(&[
        "sample", "--model", &t, "--len", "12", "--prime", "the ", "--seed", "4",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("the ") && out.trim_end().chars().count() >= 12,
        "{out}"
    );
}

#[test]
fn text_models_embed_their_characters_or_read_them_one_hot() {
    let common = [
        "--steps", "4", "--hidden", "12", "--batch", "4", "--seq", "8",
    ];
    let mut paths = Vec::new();
    for (e, what) in [("6", "embedding V="), ("0", "I=")] {
        let path = temp(&format!("text-e{e}.safetensors"));
        let p = path.display().to_string();
        let mut args = common.to_vec();
        args.extend(["--embedding", e, "--save", &p, "--sample-len", "10"]);
        let (ok, out, err) = cli(&args);
        assert!(ok, "{err}");
        assert!(
            err.contains(what) && out.contains("--- sample ---"),
            "{err}"
        );
        let ck = wgpu_rnn::Checkpoint::load(&path).unwrap();
        assert_eq!(ck.config.embedding.is_some(), e != "0");
        let (ok, out, err) = cli(&["sample", "--model", &p, "--len", "8", "--prime", "fn "]);
        assert!(ok && out.starts_with("fn "), "{err}");
        paths.push(p);
    }
    // The flag belongs to the text task, and a resumed run keeps the checkpoint's inputs.
    fails_with(
        &["--task", "sine", "--embedding", "8"],
        "--embedding is for --task text",
    );
    fails_with(
        &["--resume", &paths[0], "--steps", "8", "--embedding", "7"],
        "--embedding",
    );
    fails_with(&["--embedding", "100000"], "--embedding");
    let mut more = vec!["--resume", paths[0].as_str(), "--steps", "6"];
    more.extend(["--sample-len", "5"]);
    let (ok, _, err) = cli(&more);
    assert!(ok, "resuming the embedding model: {err}");
}

#[test]
fn bench_prints_a_table_and_json() {
    let base = [
        "bench",
        "--budget",
        "0.01",
        "--shapes",
        "2,5,3,6,2;1,3,2,4,1",
    ];
    let (ok, out, err) = cli(&base);
    assert!(ok, "bench failed: {err}");
    assert!(out.contains("train tok/s"), "no table header: {out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("2,5,3,6,2")).count(),
        2,
        "{out}"
    );

    let (ok, out, err) = cli(&[&base[..], &["--json", "--matmul", "16"]].concat());
    assert!(ok, "bench --json failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    // two shapes x {gpu, cpu}, then the matmul line
    assert_eq!(lines.len(), 5, "{out}");
    for (line, (shape, device)) in lines.iter().zip([
        ("[2, 5, 3, 6, 2]", "gpu"),
        ("[2, 5, 3, 6, 2]", "cpu"),
        ("[1, 3, 2, 4, 1]", "gpu"),
        ("[1, 3, 2, 4, 1]", "cpu"),
    ]) {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains(&format!("\"shape\": {shape}")), "{line}");
        assert!(
            line.contains(&format!("\"device\": \"{device}\"")),
            "{line}"
        );
        for key in [
            "adapter",
            "forward_tokens_per_s",
            "train_tokens_per_s",
            "dispatches_per_step",
        ] {
            assert!(
                line.contains(&format!("\"{key}\": ")),
                "{key} missing: {line}"
            );
        }
        let tps: f64 = line
            .split("\"train_tokens_per_s\": ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0);
        assert!(tps > 0.0, "train tokens/s not positive: {line}");
    }
    assert!(lines[4].contains("\"matmul\": 16"), "{}", lines[4]);

    fails_with(&["bench", "--shapes", "1,2,3"], "bad shape list");
    fails_with(&["bench", "--shapes", "1,2,3,0,5"], "bad shape list");
    fails_with(
        &["bench", "--shapes", "100000,100000,1000,1,1"],
        "bad shape list",
    );
    fails_with(&["bench", "--shapes", "1,1,1,2000000,1"], "hidden");
    fails_with(&["bench", "--budget=-1"], "--budget");
    fails_with(&["bench", "--budget", "NaN"], "--budget");
    fails_with(&["bench", "--matmul", "x"], "bad shape list");
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Reads one f32 tensor of a safetensors file.
fn tensor(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        _ => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    };
    (t.shape().to_vec(), v)
}

/// `eval` runs a PyTorch nn.RNN, nn.LSTM or nn.GRU state_dict on a file's x and h0 (c0,
/// lengths) and writes what PyTorch computed (y, h_n, and c_n for LSTM), on the GPU and on
/// the CPU reference, with no flag saying which cell the file holds.
#[test]
fn eval_reproduces_pytorch_from_files() {
    for (name, device) in [
        ("tanh_bi_l2", "gpu"),
        ("relu_l2", "gpu"),
        ("tanh_bi_l2_lengths", "gpu"),
        ("relu_bi_l2", "cpu"),
        ("lstm_bi_l2_lengths", "gpu"),
        ("lstm_l2", "cpu"),
        ("gru_bi_l2", "gpu"),
        ("gru_l2_lengths", "cpu"),
        ("lstm_nobias_l1", "gpu"),
        // nn.Embedding + LSTM / GRU: eval reads the ids tensor.
        ("emb_lstm_bi_l2_lengths", "gpu"),
        ("emb_gru_bi_l2", "cpu"),
    ] {
        let f = fixture(name);
        let out = temp(&format!("eval-{name}.safetensors"));
        let o = out.display().to_string();
        let (ok, _, err) = cli(&[
            "eval", "--model", &f, "--input", &f, "--output", &o, "--device", device,
        ]);
        assert!(ok, "{name}: {err}");
        let keys: &[&str] = if name.starts_with("lstm") {
            &["y", "h_n", "c_n"]
        } else {
            &["y", "h_n"]
        };
        for &key in keys {
            let (gs, got) = tensor(&out, key);
            let (ws, want) = tensor(std::path::Path::new(&f), key);
            assert_eq!(gs, ws, "{name} {key} shape");
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1e-2 * scale),
                    "{name} {key}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn eval_bad_inputs_fail_cleanly() {
    let model = fixture("tanh_l1");
    let out = temp("eval-out.safetensors").display().to_string();
    // An input file whose x has the wrong feature size, and one with no x at all: write
    // them with the tool itself (its output has y and h_n, no x).
    let (ok, _, err) = cli(&[
        "eval", "--model", &model, "--input", &model, "--output", &out,
    ]);
    assert!(ok, "{err}");
    fails_with(
        &["eval", "--model", &model, "--input", &out, "--output", &out],
        "no tensor named x",
    );
    let other = fixture("tanh_l2"); // its x is (6, 2, 5); tanh_l1 takes I = 7
    fails_with(
        &[
            "eval", "--model", &model, "--input", &other, "--output", &out,
        ],
        "x has shape",
    );
    // A model file that is not an nn.RNN state_dict.
    fails_with(
        &["eval", "--model", &out, "--input", &model, "--output", &out],
        "weight_ih_l0",
    );
    fails_with(
        &[
            "eval",
            "--model",
            "/no/such.safetensors",
            "--input",
            &model,
            "--output",
            &out,
        ],
        "/no/such",
    );
}

#[test]
fn train_flags_for_stacked_models() {
    let m = temp("stacked.safetensors").display().to_string();
    let (ok, out, err) = cli(&[
        "--task",
        "adding",
        "--seq",
        "6",
        "--steps",
        "3",
        "--hidden",
        "8",
        "--batch",
        "4",
        "--layers",
        "2",
        "--bidirectional",
        "--nonlinearity",
        "relu",
        "--init",
        "irnn",
        "--save",
        &m,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("final validation"), "{out}");
    // It saved a model that sampling (text only) rejects by task, not as unreadable.
    let (ok, _, err) = cli(&["sample", "--model", &m]);
    assert!(!ok && err.contains("only text models"), "{err}");
    fails_with(&["--bidirectional", "--steps", "1"], "--bidirectional");
    fails_with(&["--init", "nonsense", "--steps", "1"], "unknown init");
    fails_with(&["--layers", "0", "--steps", "1"], "--layers");
}

/// `--cell lstm` and `--cell gru` train, save a checkpoint with the cell and c state, and
/// resume exactly; flags that do not fit the cell are errors, not ignored.
#[test]
fn train_flags_for_gated_cells() {
    for cell in ["lstm", "gru"] {
        let m = temp(&format!("{cell}.safetensors")).display().to_string();
        let full = temp(&format!("{cell}-full.safetensors"))
            .display()
            .to_string();
        // Trains to `steps`, saving to `save`, resuming from it if asked.
        let run = |steps: &str, save: &str, resume: bool| {
            let mut args = vec![
                "--task",
                "sine",
                "--cell",
                cell,
                "--seq",
                "8",
                "--hidden",
                "6",
                "--batch",
                "3",
                "--layers",
                "2",
                "--eval-every",
                "2",
                "--steps",
                steps,
                "--save",
                save,
            ];
            if resume {
                args.extend(["--resume", save]);
            }
            let (ok, out, err) = cli(&args);
            assert!(ok, "{cell}: {err}");
            assert!(err.contains(&format!("{cell} I=1 H=6")), "{err}");
            out
        };
        run("2", &m, false);
        let resumed = run("4", &m, true);
        // The same 4 steps without a stop give the same final validation.
        let straight = run("4", &full, false);
        let last = |s: &str| {
            s.lines()
                .find(|l| l.contains("final validation"))
                .map(str::to_string)
        };
        assert_eq!(last(&resumed), last(&straight), "{cell}");
        let (_, w) = tensor(std::path::Path::new(&m), "rnn.weight_hh_l1");
        let gates = if cell == "lstm" { 4 } else { 3 };
        assert_eq!(w.len(), gates * 6 * 6, "{cell}");
        let bytes = std::fs::read(&m).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("state.c").is_ok(), cell == "lstm", "{cell}");
        assert!(st.tensor("rnn.bias_hh_l1").is_ok(), "{cell}");
    }
    fails_with(
        &["--cell", "lstm", "--nonlinearity", "relu", "--steps", "1"],
        "--nonlinearity",
    );
    fails_with(
        &[
            "--task", "adding", "--cell", "gru", "--init", "identity", "--steps", "1",
        ],
        "identity",
    );
    fails_with(&["--cell", "elman2", "--steps", "1"], "invalid value");
    // A relu nn.RNN file evaluated as tanh contradicts its metadata.
    let f = fixture("relu_l1");
    let o = temp("eval-contradiction.safetensors").display().to_string();
    fails_with(
        &[
            "eval",
            "--model",
            &f,
            "--input",
            &f,
            "--output",
            &o,
            "--nonlinearity",
            "tanh",
        ],
        "nonlinearity",
    );
    let lstm = fixture("lstm_l1");
    fails_with(
        &[
            "eval",
            "--model",
            &lstm,
            "--input",
            &lstm,
            "--output",
            &o,
            "--nonlinearity",
            "relu",
        ],
        "nn.RNN only",
    );
}

/// 10,000 random command lines (flags from every subcommand, valid and invalid values)
/// through the parser and the argument checks: never a panic, always a parse or a
/// typed result. Then a few dozen of them run for real (tiny sizes, one or two steps):
/// each exits 0, or non-zero with an error message, never a panic.
#[test]
fn fuzzed_command_lines_never_panic() {
    use rand::{Rng, SeedableRng};
    use wgpu_rnn::app::cli::{Cli, Command};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let subcommands = [
        "", "train", "sample", "info", "bench", "eval", "forecast", "export", "nonsense",
    ];
    let flags: &[(&str, &[&str])] = &[
        ("--task", &["text", "sine", "adding", "series", "x", ""]),
        ("--csv", &["/no/such.csv", "Cargo.toml", ""]),
        ("--target", &["a", ""]),
        ("--inputs", &["a,b", ",", ""]),
        ("--horizon", &["0", "3", "-1"]),
        ("--lr-schedule", &["constant", "cosine", "step", "linear"]),
        ("--warmup", &["0", "5", "-1"]),
        ("--min-lr", &["0", "1", "NaN"]),
        ("--lr-step-size", &["0", "1"]),
        ("--lr-gamma", &["0", "0.5", "2"]),
        ("--momentum", &["0", "0.9", "1", "-1"]),
        ("--weight-decay", &["0", "0.01", "-1", "inf"]),
        ("--save-every", &["0", "1"]),
        ("--keep-best", &["true", "false", "maybe"]),
        (
            "--steps",
            &["0", "1", "2", "-1", "1e3", "99999999999999999999"],
        ),
        ("--hidden", &["0", "1", "4", "100000", "x"]),
        ("--batch", &["0", "1", "3", "1000000"]),
        ("--seq", &["0", "1", "5", "70000"]),
        ("--lr", &["0.01", "0", "-1", "NaN", "inf", "1e40"]),
        ("--clip", &["0", "5", "-1", "NaN"]),
        ("--optimizer", &["sgd", "adam", "adagrad", "lbfgs"]),
        ("--layers", &["0", "1", "2", "65", "-2"]),
        ("--bidirectional", &[]),
        ("--nonlinearity", &["tanh", "relu", "sigmoid"]),
        (
            "--init",
            &[
                "pytorch",
                "xavier",
                "orthogonal",
                "identity",
                "irnn",
                "zeros",
            ],
        ),
        ("--device", &["gpu", "cpu", "tpu"]),
        ("--seed", &["0", "1", "-5", "18446744073709551616"]),
        ("--text", &["/no/such/file", "", "Cargo.toml"]),
        ("--save", &["/no/such/dir/x.safetensors"]),
        ("--resume", &["/no/such.safetensors", "Cargo.toml"]),
        ("--model", &["/no/such.safetensors", "Cargo.toml"]),
        ("--input", &["Cargo.toml"]),
        ("--output", &["/no/such/dir/y.safetensors"]),
        ("--len", &["0", "5", "-1"]),
        ("--temperature", &["0", "0.5", "NaN", "-1"]),
        (
            "--shapes",
            &["1,2,3,4,5", "1,2", "0,1,1,1,1", ";", "a,b,c,d,e"],
        ),
        ("--budget", &["0.01", "0", "-1", "NaN"]),
        ("--matmul", &["8", "0", "x", "99999"]),
        ("--json", &[]),
        ("--eval-every", &["0", "1", "10"]),
        ("--sample-len", &["0", "5"]),
        ("--unknown-flag", &[]),
    ];
    let argv_of = |rng: &mut rand_chacha::ChaCha8Rng| -> Vec<String> {
        let mut argv = vec!["wgpu-rnn".to_string()];
        let sub = subcommands[rng.random_range(0..subcommands.len())];
        if !sub.is_empty() {
            argv.push(sub.into());
        }
        for _ in 0..rng.random_range(0..6) {
            let (flag, vals) = flags[rng.random_range(0..flags.len())];
            argv.push(flag.into());
            if !vals.is_empty() {
                argv.push(vals[rng.random_range(0..vals.len())].into());
            }
        }
        argv
    };
    let (mut parsed, mut checked_ok, mut refused) = (0, 0, 0);
    let mut runnable = Vec::new();
    for _ in 0..10_000 {
        let argv = argv_of(&mut rng);
        match Cli::parse_from_checked(&argv) {
            Err(_) => refused += 1,
            Ok(cli) => {
                parsed += 1;
                let train = match cli.command {
                    None => Some(cli.train),
                    Some(Command::Train(a)) => Some(*a),
                    _ => None,
                };
                if let Some(a) = train {
                    match a.validate().and_then(|()| a.check_flags(a.task)) {
                        Ok(()) => {
                            checked_ok += 1;
                            let tiny = a.steps <= 2 && a.hidden <= 8 && a.batch <= 4 && a.seq <= 8;
                            if tiny && runnable.len() < 40 {
                                runnable.push(argv.clone());
                            }
                        }
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
            }
        }
    }
    eprintln!("10000 command lines: {parsed} parsed ({checked_ok} train checks passed), {refused} refused");
    assert!(
        parsed > 1000 && refused > 1000 && checked_ok > 10,
        "the generator is too one-sided"
    );

    // Some real runs: random flags on top of tiny sizes.
    let dir = temp("fuzz-runs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut succeeded = 0;
    for k in 0..40 {
        let mut argv = if k < runnable.len() {
            runnable[k][1..].to_vec()
        } else {
            argv_of(&mut rng)[1..].to_vec()
        };
        if argv.first().is_some_and(|a| a == "bench" || a == "info") {
            continue;
        }
        argv.extend(
            [
                "--steps", "2", "--hidden", "8", "--batch", "2", "--seq", "4",
            ]
            .map(String::from),
        );
        argv.push("--save".into());
        argv.push(
            dir.join(format!("run{k}.safetensors"))
                .display()
                .to_string(),
        );
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (ok, _, err) = cli(&args); // asserts no panic
        assert!(
            ok || err.contains("error"),
            "{args:?}: failed without a message: {err}"
        );
        succeeded += usize::from(ok);
    }
    eprintln!("40 runs: {succeeded} trained and saved, the rest refused with a message");
    assert!(
        succeeded > 0,
        "no run succeeded: the runs checked only refusals"
    );
}
