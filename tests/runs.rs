//! Runs you cannot lose, through the CLI: the save folder is checked before training,
//! flags a run does not use are errors, Ctrl-C / SIGTERM save and exit 130 / 143,
//! `--save-every` and `--keep-best` keep checkpoints, `--resume` continues the run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use wgpu_rnn::files::checkpoint::Checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_wgpu-rnn");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu-rnn-runs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// (exit code, stdout, stderr); a panic is a failure.
fn run(args: &[&str]) -> (i32, String, String) {
    common::run_cli(args)
}

fn fails_with(args: &[&str], needle: &str) {
    let (code, _, err) = run(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
}

/// Starts a long sine run; returns the child and its stderr lines as they come.
fn spawn(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wgpu-rnn");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (up to two minutes) for a stderr line containing `needle`; returns the lines.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return seen;
            }
        }
    }
    panic!("no line with {needle:?} within 2 minutes; saw: {seen:#?}");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} failed");
}

#[test]
fn flags_a_run_does_not_use_are_errors() {
    let d = dir("flags");
    let csv = d.join("x.csv");
    std::fs::write(&csv, "a\n1\n").unwrap();
    let save = s(&d.join("m.safetensors"));
    let sv = save.as_str();
    for (args, needle) in [
        (
            vec!["--task", "sine", "--text", "x.txt"],
            "--text is for --task text",
        ),
        (
            vec!["--task", "adding", "--sample-len", "5"],
            "--sample-len is for --task text",
        ),
        (
            vec!["--task", "text", "--csv", "x.csv"],
            "--csv is for --task series",
        ),
        (
            vec!["--task", "sine", "--target", "a"],
            "--target is for --task series",
        ),
        (
            vec!["--task", "sine", "--inputs", "a"],
            "--inputs is for --task series",
        ),
        (
            vec!["--task", "sine", "--warmup", "5"],
            "--warmup is for --lr-schedule cosine",
        ),
        (
            vec!["--task", "sine", "--min-lr", "0"],
            "--min-lr is for --lr-schedule cosine",
        ),
        (
            vec!["--task", "sine", "--lr-gamma", "0.5"],
            "--lr-gamma is for --lr-schedule step",
        ),
        (
            vec!["--task", "sine", "--lr-step-size", "9"],
            "--lr-step-size is for --lr-schedule step",
        ),
        (
            vec!["--task", "sine", "--momentum", "0.5"],
            "--momentum is for --optimizer sgd",
        ),
        (
            vec!["--task", "sine", "--bidirectional"],
            "--bidirectional with task sine",
        ),
        (
            vec!["--task", "sine", "--cell", "lstm", "--nonlinearity", "relu"],
            "--nonlinearity",
        ),
        (vec!["--task", "series"], "--task series needs --csv"),
    ] {
        let mut a = vec!["train", "--steps", "1", "--save", sv];
        a.extend(args);
        fails_with(&a, needle);
    }
    // Flags before the subcommand would otherwise be dropped.
    fails_with(&["--steps", "3", "train"], "cannot be used with");
    assert!(!Path::new(sv).exists(), "nothing trained, nothing saved");
}

#[test]
fn the_save_folder_is_checked_before_training() {
    let d = dir("save");
    fails_with(
        &[
            "train",
            "--task",
            "sine",
            "--steps",
            "1",
            "--save",
            "/no/such/folder/m.safetensors",
        ],
        "does not exist",
    );
    fails_with(
        &["train", "--task", "sine", "--steps", "1", "--save", &s(&d)],
        "is a folder",
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = d.join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // root writes anywhere: only meaningful for other users.
        if std::fs::File::create(ro.join("probe")).is_err() {
            let (code, _, err) = run(&[
                "train",
                "--task",
                "sine",
                "--steps",
                "1",
                "--save",
                &s(&ro.join("m.safetensors")),
            ]);
            assert_ne!(code, 0);
            assert!(!err.contains("step "), "trained before failing: {err}");
        }
    }
}

/// Ctrl-C stops at the end of the step, saves a loadable checkpoint (and the best one),
/// says where, and exits 130; the run then resumes from it.
#[cfg(unix)]
#[test]
fn sigint_saves_and_resume_continues() {
    let d = dir("sigint");
    let save = d.join("run.safetensors");
    let (child, rx) = spawn(&[
        "train",
        "--task",
        "sine",
        "--hidden",
        "8",
        "--seq",
        "16",
        "--batch",
        "8",
        "--steps",
        "1000000",
        "--eval-every",
        "10",
        "--save",
        &s(&save),
    ]);
    wait_for(&rx, "step     20");
    signal(&child, "-INT");
    let mut child = child;
    let status = child.wait().unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{lines:#?}");
    let said = lines.join("\n");
    assert!(said.contains("stopped by SIGINT"), "{said}");
    assert!(said.contains(&s(&save)), "{said}");
    let ck = Checkpoint::load(&save).unwrap();
    assert!(ck.step >= 20, "saved at step {}", ck.step);
    let log = wgpu_rnn::files::metrics::read(&d.join("run.metrics.jsonl")).unwrap();
    assert_eq!(log.len() as u64, ck.step, "a log line per step taken");
    assert!(d.join("run.svg").exists());
    let best = Checkpoint::load(&d.join("run.best.safetensors")).unwrap();
    assert!(best.step <= ck.step);

    // Resume: the task and sizes come from the checkpoint; contradicting ones are errors.
    let r = s(&save);
    fails_with(
        &["train", "--resume", &r, "--hidden", "9"],
        "conflicts with",
    );
    fails_with(
        &["train", "--resume", &r, "--task", "adding"],
        "conflicts with",
    );
    fails_with(
        &["train", "--resume", &r, "--cell", "gru"],
        "conflicts with",
    );
    fails_with(
        &["train", "--resume", &r, "--init", "xavier"],
        "--init with --resume",
    );
    fails_with(
        &["train", "--resume", &r, "--steps", &ck.step.to_string()],
        "not beyond the checkpoint's step",
    );
    let target = (ck.step + 5).to_string();
    let (code, _, err) = run(&["train", "--resume", &r, "--steps", &target]);
    assert_eq!(code, 0, "{err}");
    let after = Checkpoint::load(&save).unwrap();
    assert_eq!(after.step, ck.step + 5, "saved back to the resumed file");
    assert_eq!(after.config, ck.config);
    // The metrics log holds every step once, in order, across the interruption.
    let log = wgpu_rnn::files::metrics::read(&d.join("run.metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=after.step).collect::<Vec<_>>());
    assert!(log
        .iter()
        .all(|r| r.loss.is_finite() && r.learning_rate > 0.0));
    assert!(
        log.last().unwrap().validation.is_some(),
        "the last step is validated"
    );
    let svg = std::fs::read_to_string(d.join("run.svg")).unwrap();
    assert!(svg.contains("validation") && svg.contains("step"), "{svg}");
}

/// SIGTERM does the same with exit code 143.
#[cfg(unix)]
#[test]
fn sigterm_saves_and_exits_143() {
    let d = dir("sigterm");
    let save = d.join("run.safetensors");
    let (mut child, rx) = spawn(&[
        "train",
        "--task",
        "adding",
        "--hidden",
        "8",
        "--seq",
        "10",
        "--batch",
        "8",
        "--steps",
        "1000000",
        "--eval-every",
        "5",
        "--save",
        &s(&save),
    ]);
    wait_for(&rx, "step      5");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(Checkpoint::load(&save).unwrap().step >= 5);
}

/// --save-every leaves a checkpoint of a whole number of intervals when the process is
/// killed outright (no chance to save at exit).
#[cfg(unix)]
#[test]
fn save_every_survives_a_hard_kill() {
    let d = dir("every");
    let save = d.join("run.safetensors");
    let (mut child, rx) = spawn(&[
        "train",
        "--task",
        "sine",
        "--hidden",
        "8",
        "--seq",
        "16",
        "--batch",
        "8",
        "--steps",
        "1000000",
        "--eval-every",
        "10",
        "--save-every",
        "10",
        "--save",
        &s(&save),
    ]);
    wait_for(&rx, "step     30");
    signal(&child, "-KILL");
    let _ = child.wait();
    let ck = Checkpoint::load(&save).unwrap();
    assert!(
        ck.step >= 20 && ck.step.is_multiple_of(10),
        "step {}",
        ck.step
    );
}

/// `sample --temperature 0` is greedy (the same text whatever the seed); a negative
/// temperature is an error.
#[test]
fn temperature_zero_is_greedy() {
    let d = dir("greedy");
    let model = s(&d.join("text.safetensors"));
    let (code, _, err) = run(&[
        "train",
        "--steps",
        "3",
        "--hidden",
        "8",
        "--seq",
        "8",
        "--batch",
        "4",
        "--sample-len",
        "0",
        "--save",
        &model,
    ]);
    assert_eq!(code, 0, "{err}");
    let sample = |seed: &str, t: &str| {
        let (code, out, err) = run(&[
            "sample",
            "--model",
            &model,
            "--len",
            "40",
            "--temperature",
            t,
            "--seed",
            seed,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert_eq!(sample("1", "0"), sample("2", "0"));
    assert_ne!(
        sample("1", "1.5"),
        sample("2", "1.5"),
        "seeds differ when sampling"
    );
    fails_with(
        &["sample", "--model", &model, "--temperature", "-1"],
        "--temperature",
    );
}

/// bench refuses flags for a device it is told to leave out.
#[test]
fn bench_refuses_flags_for_devices_left_out() {
    fails_with(&["bench", "--devices", "cpu", "--profile"], "--profile");
    fails_with(&["bench", "--devices", "cpu", "--matmul", "64"], "--matmul");
    fails_with(
        &["bench", "--devices", "gpu", "--cpu-max-gflop", "1"],
        "--cpu-max-gflop",
    );
}

/// A seasonal CSV series trained and forecast through the CLI: the forecast (in the
/// original units) beats repeating the last value; the CSV and the picture are written;
/// malformed files are refused with the line and column.
#[test]
fn csv_series_trains_and_forecasts() {
    let d = dir("series");
    let period = 24.0;
    let value = |i: usize| 20.0 + 5.0 * (2.0 * std::f64::consts::PI * i as f64 / period).sin();
    let mut text = String::from("date,load,temp\n");
    for i in 0..600 {
        // A deterministic wobble stands in for noise.
        let wobble = 0.2 * ((i * 7919) % 13) as f64 / 13.0;
        text.push_str(&format!("day{i},{},{}\n", i % 5, value(i) + wobble));
    }
    let csv = d.join("series.csv");
    std::fs::write(&csv, &text).unwrap();
    let model = d.join("m.safetensors");
    let (code, out, err) = run(&[
        "train",
        "--task",
        "series",
        "--csv",
        &s(&csv),
        "--hidden",
        "24",
        "--seq",
        "48",
        "--batch",
        "16",
        "--steps",
        "250",
        "--eval-every",
        "50",
        "--save",
        &s(&model),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("final validation: MSE"), "{out}");
    let horizon = 24;
    let fc = d.join("f.csv");
    let (code, _, err) = run(&[
        "forecast",
        "--model",
        &s(&model),
        "--csv",
        &s(&csv),
        "--horizon",
        "24",
        "--output",
        &s(&fc),
    ]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&fc).unwrap();
    let mut lines = written.lines();
    // The model's forecast, then the baselines' of the same steps.
    assert_eq!(lines.next(), Some("step,forecast,naive,seasonal_naive"));
    let f: Vec<f64> = lines
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(f.len(), horizon);
    let last = value(599);
    let (mut model_err, mut naive_err) = (0.0, 0.0);
    for (k, y) in f.iter().enumerate() {
        let truth = value(600 + k);
        model_err += (y - truth).abs();
        naive_err += (last - truth).abs();
    }
    assert!(
        model_err < 0.5 * naive_err,
        "forecast error {model_err:.2} vs repeating the last value {naive_err:.2}"
    );
    assert!(fc.with_extension("svg").exists());

    let bad = d.join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n3,\n").unwrap();
    fails_with(
        &[
            "train",
            "--task",
            "series",
            "--csv",
            &s(&bad),
            "--steps",
            "1",
        ],
        "line 3",
    );
    fails_with(
        &[
            "train",
            "--task",
            "series",
            "--csv",
            &s(&csv),
            "--target",
            "nope",
            "--steps",
            "1",
        ],
        "nope",
    );
    fails_with(
        &[
            "forecast",
            "--model",
            &s(&model),
            "--csv",
            &s(&csv),
            "--horizon",
            "0",
        ],
        "--horizon",
    );
}

/// The series task's trend, season and baselines through the CLI: a trended series with
/// gaps, filled; validation lines, the metrics log and the loss picture carry the
/// baselines; `forecast --holdout` and `--backtest` score against known rows and say
/// whether the model beat them; bad options name their numbers.
#[test]
fn series_baselines_gaps_holdout_and_backtest() {
    let d = dir("series-baselines");
    let values = wgpu_rnn::data::synthetic::series(
        wgpu_rnn::data::synthetic::SeriesKind::TrendSeason,
        400,
        3,
    );
    let mut text = String::from("t,co2\n");
    for (t, v) in values.iter().enumerate() {
        // Every 37th row is missing.
        let cell = if t % 37 == 5 {
            String::new()
        } else {
            v.to_string()
        };
        text.push_str(&format!("{t},{cell}\n"));
    }
    let csv = d.join("co2.csv");
    std::fs::write(&csv, &text).unwrap();
    let model = d.join("co2.safetensors");
    let train = |extra: &[&str]| {
        let base = [
            "train",
            "--task",
            "series",
            "--csv",
            &s(&csv),
            "--cell",
            "gru",
            "--hidden",
            "16",
            "--steps",
            "60",
            "--eval-every",
            "30",
            "--save",
            &s(&model),
        ];
        run(&[&base[..], extra].concat())
    };
    let (code, _, err) = train(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("line 7") && err.contains("--fill"), "{err}");
    let (code, out, err) = train(&["--fill", "linear"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("one-step forecasts of the validation rows: MAE"),
        "{out}"
    );
    assert!(
        out.contains("beats both baselines") || out.contains("does NOT beat"),
        "{out}"
    );
    assert!(
        err.contains("filled 11 missing cell(s) of column \"co2\""),
        "{err}"
    );
    assert!(
        err.contains("first differences (chosen by a KPSS test"),
        "{err}"
    );
    assert!(err.contains("season 12 rows (estimated"), "{err}");
    assert!(
        err.contains("naive MAE") && err.contains("seasonal naive MAE"),
        "{err}"
    );
    let log = std::fs::read_to_string(model.with_extension("metrics.jsonl")).unwrap();
    assert!(log.contains("\"seasonal_naive_mae\""), "{log}");
    let svg = std::fs::read_to_string(model.with_extension("svg")).unwrap();
    assert!(svg.contains("seasonal naive") && svg.contains("MAE (target units)"));

    let forecast = |extra: &[&str]| {
        let base = [
            "forecast",
            "--model",
            &s(&model),
            "--csv",
            &s(&csv),
            "--fill",
            "linear",
        ];
        run(&[&base[..], extra].concat())
    };
    let (code, out, err) = forecast(&["--holdout", "24"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("held out the last 24 of 400 rows (season 12 rows)"),
        "{out}"
    );
    assert!(
        out.contains("beats both baselines") || out.contains("does NOT beat"),
        "{out}"
    );
    let held = std::fs::read_to_string(d.join("co2.holdout.csv")).unwrap();
    assert!(
        held.starts_with("step,forecast,actual,naive,seasonal_naive\n"),
        "{held}"
    );
    assert_eq!(held.lines().count(), 25);
    let (code, out, err) = forecast(&["--horizon", "6"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("seasonal naive repeats the last season (12 rows)"),
        "{out}"
    );
    let (code, out, err) = forecast(&["--backtest", "5", "--horizon", "24"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("backtest: 5 forecasts of 24 rows from rows 372..=376 of 400"),
        "{out}"
    );

    for (extra, needle) in [
        (&["--season", "1"][..], "--season 1"),
        (&["--season", "200"][..], "at most 180"),
        (
            &["--difference", "second"][..],
            "expected auto, none, first",
        ),
    ] {
        let (code, _, err) = train(&[&["--fill", "linear"][..], extra].concat());
        assert_ne!(code, 0, "{extra:?}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    for (extra, needle) in [
        (&["--holdout", "395"][..], "needs at least"),
        (&["--backtest", "0", "--horizon", "5"][..], "--backtest"),
        (
            &["--holdout", "24", "--horizon", "12"][..],
            "give one of the two",
        ),
    ] {
        let (code, _, err) = forecast(extra);
        assert_ne!(code, 0, "{extra:?}");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    fails_with(
        &[
            "forecast",
            "--model",
            &s(&model),
            "--csv",
            &s(&csv),
            "--fill",
            "spline",
            "--horizon",
            "3",
        ],
        "expected linear or previous",
    );
    fails_with(
        &["train", "--task", "sine", "--season", "12"],
        "--season is for --task series",
    );
}

/// The default build (no feature `mpi`) started as one of several MPI ranks refuses to
/// train (each rank would train alone, writing the same files) and says how to build it;
/// as the only rank it trains as usual.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_be_one_of_several_ranks() {
    let d = dir("no-mpi");
    let save = s(&d.join("m.safetensors"));
    let args = [
        "train", "--task", "sine", "--steps", "1", "--hidden", "4", "--save", &save,
    ];
    let with_ranks = |n: &str| {
        Command::new(BIN)
            .args(args)
            .env("OMPI_COMM_WORLD_SIZE", n)
            .output()
            .unwrap()
    };
    let out = with_ranks("2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("one of 2 MPI ranks") && err.contains("--features mpi"),
        "{err}"
    );
    assert!(!Path::new(&save).exists());
    let out = with_ranks("1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&save).exists());
}

/// A resumed run's flags are judged against the checkpoint's task, not the default one:
/// `--bidirectional` (adding only, not text) is accepted on a bidirectional adding run.
#[test]
fn resume_judges_flags_by_the_checkpoints_task() {
    let d = dir("resume-task");
    let save = s(&d.join("add.safetensors"));
    let first = [
        "train",
        "--task",
        "adding",
        "--bidirectional",
        "--hidden",
        "8",
        "--seq",
        "10",
        "--batch",
        "4",
        "--steps",
        "2",
        "--save",
        &save,
    ];
    let (code, _, err) = run(&first);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "train",
        "--resume",
        &save,
        "--bidirectional",
        "--steps",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(Checkpoint::load(Path::new(&save)).unwrap().step, 3);
}

/// A checkpoint the library saved (`Checkpoint::from_trainer`, no `train.*` keys) resumes
/// through the CLI with its own optimizer and learning rate, not the CLI's defaults.
#[test]
fn resuming_a_library_checkpoint_keeps_its_optimizer() {
    use wgpu_rnn::{CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, RnnConfig, TrainConfig};
    let d = dir("library");
    let path = d.join("lib.safetensors");
    let config = RnnConfig::new(1, 6, 1);
    let opt = OptimizerConfig::new(OptimizerKind::Sgd, 0.05).with_momentum(0.5);
    let trainer = CpuTrainer::new(
        config.clone(),
        &config.init_params(3),
        TrainConfig::new(opt, LossKind::Mse),
    )
    .unwrap();
    let mut ck = Checkpoint::from_trainer(&trainer, "sine", None).unwrap();
    ck.extra.insert("train.seed".into(), "1".into());
    ck.save(&path).unwrap();
    let (code, _, err) = run(&["train", "--resume", &s(&path), "--steps", "2"]);
    assert_eq!(code, 0, "{err}");
    let resumed = Checkpoint::load(&path).unwrap();
    let get = |k: &str| resumed.extra.get(k).cloned().unwrap_or_default();
    assert_eq!(
        (
            get("train.optimizer"),
            get("train.lr"),
            get("train.momentum")
        ),
        ("sgd".into(), "0.05".into(), "0.5".into()),
        "{err}"
    );
    assert_eq!(resumed.step, 2);
}
