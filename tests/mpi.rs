//! Data-parallel training over MPI: `mpirun -np 2` runs this test binary's `rank_program`
//! (selected by the environment), whose loss curves must match one process training on
//! the whole batch, with bitwise equal parameters on both ranks and an exact resume.
//! Needs `mpirun` (Debian: openmpi-bin) and `cargo test --features mpi --test mpi`.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::dist::{checksum, Communicator, Mpi, SingleProcess};
use wgpu_rnn::files::checkpoint::Checkpoint;
use wgpu_rnn::{
    Batch, CellKind, Gpu, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets, Train,
    TrainConfig, Trainer,
};

/// The folder a rank program writes to; set only for the ranks mpirun starts.
const OUT: &str = "WGPU_RNN_MPI_TEST_OUT";
/// `train` (50 steps, a checkpoint after 25) or `resume` (steps 26..50 from it).
const MODE: &str = "WGPU_RNN_MPI_TEST_MODE";
const STEPS: u64 = 50;
const HALF: u64 = 25;
/// 5 rows over 2 ranks: shares of 2 and 3 rows, so the global normalizer matters.
const T: usize = 7;
const B: usize = 5;
const I: usize = 3;
const H: usize = 16;
const O: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    cell: CellKind,
    loss: LossKind,
    /// Truncated BPTT: each step starts from the last one's final state.
    stateful: bool,
    bidirectional: bool,
    /// Dropout on the head's input: each rank must draw the whole batch's masks.
    dropout: bool,
    /// Token ids through an embedding of VOCAB rows: the table's gradient is all-reduced
    /// with the rest.
    embedding: bool,
}

const VOCAB: usize = 7;

const fn case(name: &'static str, cell: CellKind, loss: LossKind, stateful: bool) -> Case {
    Case {
        name,
        cell,
        loss,
        stateful,
        bidirectional: false,
        dropout: false,
        embedding: false,
    }
}

const CTC: LossKind = LossKind::Ctc {
    blank: 0,
    zero_infinity: false,
};

const CASES: [Case; 10] = [
    case("elman-mse", CellKind::Rnn, LossKind::Mse, false),
    case("elman-xent", CellKind::Rnn, LossKind::CrossEntropy, false),
    case("lstm-mse", CellKind::Lstm, LossKind::Mse, false),
    case("lstm-xent", CellKind::Lstm, LossKind::CrossEntropy, false),
    // Each rank carries its own rows' state; a checkpoint gathers them all.
    case(
        "elman-xent-stateful",
        CellKind::Rnn,
        LossKind::CrossEntropy,
        true,
    ),
    case("lstm-mse-stateful", CellKind::Lstm, LossKind::Mse, true),
    case("gru-ctc", CellKind::Gru, CTC, false),
    Case {
        bidirectional: true,
        ..case("lstm-ctc-bidirectional", CellKind::Lstm, CTC, false)
    },
    Case {
        dropout: true,
        ..case(
            "gru-xent-dropout",
            CellKind::Gru,
            LossKind::CrossEntropy,
            true,
        )
    },
    Case {
        embedding: true,
        ..case(
            "lstm-xent-embedding",
            CellKind::Lstm,
            LossKind::CrossEntropy,
            true,
        )
    },
];

/// The global batch of `step`, the same on every rank; weights are uneven and some 0
/// (CTC: rows of 3..=T steps, targets of 1..=2 labels, weights 1).
fn batch(case: Case, step: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + step);
    let x: Vec<f32> = (0..T * B * I)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    if let LossKind::Ctc { .. } = case.loss {
        let rows: Vec<Vec<u32>> = (0..B)
            .map(|_| {
                let u = rng.random_range(1..=2);
                (0..u).map(|_| rng.random_range(1..O as u32)).collect()
            })
            .collect();
        let lengths = (0..B).map(|_| rng.random_range(3..=T)).collect();
        let labels = Targets::Labels(wgpu_rnn::ctc::Labels::from_rows(&rows));
        return Batch::new(T, B, x, labels)
            .unwrap()
            .with_lengths(lengths)
            .unwrap();
    }
    let targets = match case.loss {
        LossKind::Mse => Targets::Values(
            (0..T * B * O)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        ),
        _ => Targets::Classes((0..T * B).map(|_| rng.random_range(0..O as u32)).collect()),
    };
    let mut b = match case.embedding {
        true => {
            let ids = x
                .chunks(I)
                .map(|v| ((v[0] + 1.0) * 3.5) as u32 % VOCAB as u32);
            Batch::from_tokens(T, B, ids.collect(), targets).unwrap()
        }
        false => Batch::new(T, B, x, targets).unwrap(),
    };
    b.weights = (0..T * B)
        .map(|k| [0.0, 0.5, 1.0, 2.0][(k * 7 + step as usize) % 4])
        .collect();
    b
}

fn train_config(case: Case) -> TrainConfig {
    let mut tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Adam, 0.02), case.loss);
    // Small enough that most steps clip: the norm must be the reduced gradient's.
    tc.clip_norm = Some(0.3);
    tc.stateful = case.stateful;
    tc
}

fn rnn_config(case: Case) -> RnnConfig {
    let c = RnnConfig::new(I, H, O)
        .with_cell(case.cell)
        .with_bidirectional(case.bidirectional)
        .with_head_dropout(if case.dropout { 0.3 } else { 0.0 });
    match case.embedding {
        true => c.with_embedding(VOCAB),
        false => c,
    }
}

fn run(trainer: &mut Trainer, case: Case, steps: std::ops::Range<u64>) -> Vec<f32> {
    steps
        .map(|s| trainer.step(&batch(case, s)).unwrap().loss)
        .collect()
}

fn param_hash(trainer: &Trainer) -> u64 {
    let p = trainer.params().unwrap();
    checksum(p.tensors().into_iter().map(Vec::as_slice))
}

fn write_json(path: &Path, losses: &[f32], hash: u64, times: [f64; 4]) {
    let v = serde_json::json!({
        "losses": losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "hash": hash.to_string(),
        "times_ms": times,
    });
    std::fs::write(path, v.to_string()).unwrap();
}

fn read_json(path: &Path) -> (Vec<f32>, String, Vec<f64>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (did the rank program run?)", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let losses = v["losses"].as_array().unwrap().iter();
    (
        losses
            .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
            .collect(),
        v["hash"].as_str().unwrap().to_string(),
        v["times_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect(),
    )
}

/// What each rank runs under mpirun; returns at once in an ordinary `cargo test`.
#[test]
fn rank_program() {
    let Some(out) = std::env::var_os(OUT).map(PathBuf::from) else {
        return;
    };
    let resume = std::env::var(MODE).as_deref() == Ok("resume");
    let comm: Arc<dyn Communicator> = Arc::new(Mpi::init().unwrap());
    let r = comm.rank();
    let gpu = Gpu::new().unwrap();
    for case in CASES {
        let ck_path = out.join(format!("{}.safetensors", case.name));
        // Rank 1 starts from other parameters: rank 0's must reach it by broadcast.
        let (rnn, first) = if resume {
            let ck = Checkpoint::load(&ck_path).unwrap();
            (
                Rnn::from_params(&gpu, ck.config.clone(), &ck.params).unwrap(),
                Some(ck),
            )
        } else {
            (
                Rnn::new(&gpu, rnn_config(case), 1 + 1000 * r as u64).unwrap(),
                None,
            )
        };
        let mut trainer = Trainer::new(rnn, train_config(case)).unwrap();
        if let Some(ck) = &first {
            ck.restore_into(&mut trainer).unwrap();
        }
        let mut trainer = trainer.with_communicator(comm.clone(), 10).unwrap();
        let (from, losses) = if resume {
            (HALF, run(&mut trainer, case, HALF..STEPS))
        } else {
            let mut l = run(&mut trainer, case, 0..HALF);
            // Every rank builds the checkpoint (it gathers the ranks' carried states).
            let ck = Checkpoint::from_trainer(&trainer, "test", None).unwrap();
            if comm.is_root() {
                ck.save(&ck_path).unwrap();
            }
            assert!(comm.all_agree(true).unwrap());
            l.extend(run(&mut trainer, case, HALF..STEPS));
            (0, l)
        };
        let st = trainer.last_step_times().unwrap();
        let times = [
            st.compute_ms,
            st.readback_ms,
            st.all_reduce_ms,
            st.update_ms,
        ];
        assert_eq!(trainer.steps(), STEPS, "{} from step {from}", case.name);
        let tag = if resume { "resume" } else { "train" };
        write_json(
            &out.join(format!("{}.{tag}.rank{r}.json", case.name)),
            &losses,
            param_hash(&trainer),
            times,
        );
    }
}

fn mpirun(out: &Path, mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", "--allow-run-as-root"])
        .args(["-x", OUT, "-x", MODE])
        .arg(&exe)
        .args(["--exact", "rank_program", "--nocapture", "--test-threads=1"])
        .env(OUT, out)
        .env(MODE, mode)
        .status()
        .unwrap_or_else(|e| {
            panic!("running mpirun failed ({e}); install Open MPI (Debian: openmpi-bin)")
        });
    assert!(status.success(), "mpirun -np 2 ({mode}) failed: {status}");
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu-rnn-mpi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn two_ranks_match_one_process_and_resume_exactly() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let out = out_dir("train");
    mpirun(&out, "train");
    mpirun(&out, "resume");
    let gpu = common::gpu();
    for case in CASES {
        let rnn = Rnn::new(gpu, rnn_config(case), 1).unwrap();
        let mut one = Trainer::new(rnn, train_config(case)).unwrap();
        let mut single = run(&mut one, case, 0..HALF);
        // The 2-rank checkpoint holds the whole batch's carried state, rows in order.
        let ck = Checkpoint::load(&out.join(format!("{}.safetensors", case.name))).unwrap();
        let (b, carried) = ck
            .carried_state
            .clone()
            .expect("a carried state in the checkpoint");
        let (b1, mine) = one.carried_state().unwrap().unwrap();
        assert_eq!((b, b1), (B, B), "{}", case.name);
        for (got, want) in carried.tensors().into_iter().zip(mine.tensors()) {
            assert_eq!(got.len(), want.len(), "{}", case.name);
            for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{} carried state [{k}]: 2 ranks {g} vs 1 process {w}",
                    case.name
                );
            }
        }
        single.extend(run(&mut one, case, HALF..STEPS));
        let (l0, h0, t0) = read_json(&out.join(format!("{}.train.rank0.json", case.name)));
        let (l1, h1, _) = read_json(&out.join(format!("{}.train.rank1.json", case.name)));
        assert_eq!(h0, h1, "{}: the ranks' parameters differ", case.name);
        assert_eq!(
            l0.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
            l1.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
            "{}: the ranks report different (reduced) losses",
            case.name
        );
        let mut worst = 0.0f64;
        for (s, (&d, &o)) in l0.iter().zip(&single).enumerate() {
            let rel = ((d - o) as f64).abs() / (o as f64).abs().max(1e-12);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-5,
                "{} step {}: 2 ranks {d} vs 1 process {o}",
                case.name,
                s + 1
            );
        }
        let (r0, rh0, _) = read_json(&out.join(format!("{}.resume.rank0.json", case.name)));
        let (_, rh1, _) = read_json(&out.join(format!("{}.resume.rank1.json", case.name)));
        assert_eq!(rh0, rh1, "{}: resumed ranks' parameters differ", case.name);
        assert_eq!(
            r0.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
            l0[HALF as usize..]
                .iter()
                .map(|l| l.to_bits())
                .collect::<Vec<_>>(),
            "{}: a 2-rank resume from step {HALF} must repeat the 2-rank run exactly",
            case.name
        );
        assert_eq!(
            rh0, h0,
            "{}: resumed parameters differ from the uninterrupted run",
            case.name
        );
        // One process resumes the 2-rank checkpoint too (its rows re-split into one).
        let mut alone = Trainer::new(
            Rnn::from_params(gpu, ck.config.clone(), &ck.params).unwrap(),
            train_config(case),
        )
        .unwrap();
        ck.restore_into(&mut alone).unwrap();
        for (s, (d, o)) in l0[HALF as usize..]
            .iter()
            .zip(run(&mut alone, case, HALF..STEPS))
            .enumerate()
        {
            assert!(
                ((d - o) as f64).abs() <= 1e-5 * (o as f64).abs().max(1e-12),
                "{} step {}: 2 ranks {d} vs one process resuming their checkpoint {o}",
                case.name,
                HALF as usize + s + 1
            );
        }
        eprintln!(
            "{}: worst relative loss difference {worst:.2e}; last step (ms): compute {:.2} \
             readback {:.2} all-reduce {:.2} update {:.2}",
            case.name, t0[0], t0[1], t0[2], t0[3]
        );
    }
    std::fs::remove_dir_all(&out).ok();
}

/// With one rank the communicator changes nothing: the same single-submit step, bitwise.
#[test]
fn a_single_process_communicator_changes_nothing() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let gpu = common::gpu();
    let case = CASES[3];
    let bits =
        |t: &mut Trainer| -> Vec<u32> { run(t, case, 0..10).iter().map(|l| l.to_bits()).collect() };
    let mut plain = Trainer::new(
        Rnn::new(gpu, rnn_config(case), 1).unwrap(),
        train_config(case),
    )
    .unwrap();
    let mut with = Trainer::new(
        Rnn::new(gpu, rnn_config(case), 1).unwrap(),
        train_config(case),
    )
    .unwrap()
    .with_communicator(Arc::new(SingleProcess), 1)
    .unwrap();
    assert_eq!(bits(&mut plain), bits(&mut with));
    assert_eq!(with.last_step_stats().submits, 1);
    assert!(with.last_step_times().is_none());
    assert_eq!(param_hash(&plain), param_hash(&with));
}

/// `mpirun -np 2 wgpu-rnn train`: rank 0 writes the checkpoint and the log, both exit 0.
#[test]
fn the_cli_trains_under_mpirun() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let out = out_dir("cli");
    let save = out.join("sine.safetensors").display().to_string();
    let (_, err) = mpirun_cli(&[
        "train", "--task", "sine", "--steps", "6", "--hidden", "16", "--batch", "5", "--save",
        &save,
    ]);
    assert!(err.contains("rank 1 of 2"), "{err}");
    let ck = Checkpoint::load(Path::new(&save)).unwrap();
    assert_eq!(ck.step, 6);
    std::fs::remove_dir_all(&out).ok();

    // `info` under mpirun: each rank names the adapter it would train on.
    let (text, _) = mpirun_cli(&["info"]);
    for r in 0..2 {
        assert!(text.contains(&format!("rank {r} of 2: chosen: ")), "{text}");
    }
}

/// Runs `mpirun -np 2 wgpu-rnn ARGS`, which must succeed; its (stdout, stderr).
fn mpirun_cli(args: &[&str]) -> (String, String) {
    let output = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", "--allow-run-as-root"])
        .arg(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args(args)
        .output()
        .expect("mpirun (install Open MPI: Debian openmpi-bin)");
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {err}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), err)
}

fn bits(ck: &Checkpoint) -> (Vec<u32>, Vec<u32>) {
    let params = ck.params.tensors().into_iter().flatten();
    let (_, carry) = ck.carried_state.as_ref().expect("a carried state");
    let carry = carry.tensors().into_iter().flatten();
    (
        params.map(|v| v.to_bits()).collect(),
        carry.map(|v| v.to_bits()).collect(),
    )
}

/// Stateful text training under 2 ranks, stopped and resumed under 2 ranks, ends bit for
/// bit where the uninterrupted 2-rank run does (each rank's streams' state is kept in the
/// checkpoint); one process may resume it too.
#[test]
fn the_cli_resumes_stateful_text_under_mpirun_exactly() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let out = out_dir("text");
    let path = |name: &str| out.join(name).display().to_string();
    let common = [
        "--hidden",
        "16",
        "--batch",
        "5",
        "--seq",
        "12",
        "--sample-len",
        "0",
    ];
    fn train<'a>(steps: &'a str, save: &'a str, common: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["train", "--task", "text", "--steps", steps, "--save", save];
        args.extend(common);
        args
    }
    let whole = path("whole.safetensors");
    let parts = path("parts.safetensors");
    mpirun_cli(&train("8", &whole, &common));
    mpirun_cli(&train("4", &parts, &common));
    let half = Checkpoint::load(Path::new(&parts)).unwrap();
    assert_eq!(
        half.carried_state.as_ref().map(|c| c.0),
        Some(5),
        "the whole batch's state"
    );
    assert_eq!(half.extra.get("train.ranks").map(String::as_str), Some("2"));
    let (_, err) = mpirun_cli(&["train", "--resume", &parts, "--steps", "8"]);
    assert!(!err.contains("resuming a run trained by"), "{err}");
    let (a, b) = (
        Checkpoint::load(Path::new(&whole)).unwrap(),
        Checkpoint::load(Path::new(&parts)).unwrap(),
    );
    assert_eq!(b.step, 8);
    assert!(
        bits(&a) == bits(&b),
        "a 2-rank run resumed at step 4 must end where the uninterrupted one does"
    );

    // A different number of ranks (one process here) re-splits the state and says so.
    std::fs::copy(out.join("whole.safetensors"), out.join("one.safetensors")).unwrap();
    let one = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
        .args([
            "train",
            "--resume",
            &path("one.safetensors"),
            "--steps",
            "9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&one.stderr);
    assert!(one.status.success(), "{err}");
    assert!(
        err.contains("resuming a run trained by 2 rank(s) with 1"),
        "{err}"
    );
    let one = Checkpoint::load(&out.join("one.safetensors")).unwrap();
    assert_eq!(one.step, 9);
    assert_eq!(one.extra.get("train.ranks").map(String::as_str), Some("1"));
    std::fs::remove_dir_all(&out).ok();
}

/// Speech (CTC) trains under mpirun: each rank takes its utterances of the batch.
#[test]
fn the_cli_trains_speech_under_mpirun() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let out = out_dir("speech");
    std::fs::create_dir_all(out.join("audio")).unwrap();
    let mut manifest = String::from("path,transcript\n");
    let rate = 16_000;
    for i in 0..12usize {
        let file = format!("audio/u{i}.wav");
        let hz = 200.0 + 60.0 * i as f32;
        let samples: Vec<f32> = (0..3200 + 400 * (i % 5))
            .map(|k| 0.3 * (std::f32::consts::TAU * hz * k as f32 / rate as f32).sin())
            .collect();
        wgpu_rnn::data::audio::write_wav(&out.join(&file), &samples, rate).unwrap();
        let transcript: String = "abc".chars().take(1 + i % 3).collect();
        manifest += &format!("{file},{transcript}\n");
    }
    std::fs::write(out.join("train.csv"), manifest).unwrap();
    let save = out.join("speech.safetensors");
    let (_, err) = mpirun_cli(&[
        "train",
        "--task",
        "speech",
        "--manifest",
        &out.join("train.csv").display().to_string(),
        "--hidden",
        "8",
        "--batch",
        "4",
        "--steps",
        "3",
        "--save",
        &save.display().to_string(),
    ]);
    assert!(err.contains("rank 1 of 2"), "{err}");
    assert!(err.contains("CER"), "{err}");
    assert_eq!(Checkpoint::load(&save).unwrap().step, 3);
    std::fs::remove_dir_all(&out).ok();
}

/// A rank that fails (here rank 1 cannot find its adapter) ends the whole job with its
/// message instead of leaving rank 0 waiting in a collective.
#[test]
fn a_failing_rank_ends_the_job() {
    if std::env::var_os(OUT).is_some() {
        return;
    }
    let out = out_dir("fail");
    let save = out.join("never.safetensors").display().to_string();
    let exe = env!("CARGO_BIN_EXE_wgpu-rnn");
    let train = [
        "train", "--task", "sine", "--steps", "50", "--hidden", "8", "--batch", "4", "--save",
        &save,
    ];
    // MPMD launch: the same program, rank 1 with an adapter name no adapter has.
    let mut child = Command::new("mpirun")
        .args(["--oversubscribe", "--allow-run-as-root", "-np", "1", exe])
        .args(train)
        .args([
            ":",
            "-np",
            "1",
            "-x",
            "WGPU_ADAPTER_NAME=no-such-adapter",
            exe,
        ])
        .args(train)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("the job hung after rank 1 failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("error on rank 1 of 2"), "{err}");
    assert!(err.contains("no-such-adapter"), "{err}");
    assert!(
        !Path::new(&save).exists(),
        "no checkpoint from a failed job"
    );
    std::fs::remove_dir_all(&out).ok();
}
