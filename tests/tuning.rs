//! Tuning files: written by `wgpu-rnn tune` (or `TuningFile::save`), found by later runs,
//! applied, and bitwise reproducible; a corrupt, foreign or unfitting file is skipped with
//! a warning, never a crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use wgpu_rnn::app::bench::{batch, train_config, Shape};
use wgpu_rnn::gpu::{tuning_path, TuningFile, TuningSource};
use wgpu_rnn::{CellKind, GemmTuning, Gpu, GpuOptions, Rnn, Train, Trainer};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-tuning-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gpu_from(dir: &Path) -> Gpu {
    for var in ["WGPU_RNN_GEMM", "WGPU_RNN_STEPWISE_ROWS"] {
        assert!(
            std::env::var(var).is_err(),
            "{var} overrides tuning files; run these tests without it"
        );
    }
    Gpu::with_options(&GpuOptions::from_env().with_tuning_dir(dir)).unwrap_or_else(|e| {
        panic!(
            "these tests need a working wgpu adapter: {e}\nOn a machine without a GPU run \
             `sudo .ci/install-adapter` (installs Mesa's lavapipe)."
        )
    })
}

/// The bits of an LSTM's gradients (whose weight gradients split K on the tiled kernel)
/// and of its parameters after three training steps.
fn train_three_steps(gpu: &Gpu) -> (Vec<u32>, Vec<u32>) {
    let shape = Shape::parse_list("8,64,5,12,3").unwrap()[0].with_cell(CellKind::Lstm);
    let bits =
        |p: Vec<Vec<f32>>| -> Vec<u32> { p.into_iter().flatten().map(f32::to_bits).collect() };
    let batch = batch(shape).unwrap();
    let mut rnn = Rnn::new(gpu, shape.config(), 3).unwrap();
    let x = gpu.tensor(&[shape.t, shape.b, shape.i], &batch.x).unwrap();
    let dy = gpu
        .tensor(
            &[shape.t, shape.b, shape.o],
            &vec![0.5; shape.t * shape.b * shape.o],
        )
        .unwrap();
    rnn.forward(&x, None).unwrap();
    let grads = rnn.backward(&dy, None).unwrap();
    let grads = bits(
        grads
            .params
            .tensors()
            .into_iter()
            .map(|t| t.download().unwrap())
            .collect(),
    );
    let mut trainer = Trainer::new(rnn, train_config()).unwrap();
    for _ in 0..3 {
        trainer.step(&batch).unwrap();
    }
    let params = trainer.params().unwrap();
    (grads, bits(params.tensors().into_iter().cloned().collect()))
}

#[test]
fn a_tuning_file_is_found_applied_and_bitwise_reproducible() {
    let dir = fresh_dir("round-trip");
    let probe = gpu_from(&dir);
    let path = tuning_path(&dir, probe.adapter());
    assert_eq!(
        probe.gemm_source(),
        &TuningSource::Default(Some(path.clone()))
    );

    let chosen: GemmTuning = "tiled:16x32x8/split4".parse().unwrap();
    assert_ne!(probe.gemm(), chosen);
    let rows = if probe.stepwise_rows() == 4 { 16 } else { 4 };
    let mut file = TuningFile::new(probe.adapter(), chosen);
    file.measured = vec![(chosen.to_string(), 1.5)];
    file.stepwise_rows = Some(rows);
    file.save(&path).unwrap();
    let (loaded, gemm) = TuningFile::load(&path, probe.adapter()).unwrap();
    assert_eq!((loaded, gemm), (file, chosen));

    let a = gpu_from(&dir);
    let b = gpu_from(&dir);
    assert_eq!(a.gemm(), chosen);
    assert_eq!(a.stepwise_rows(), rows);
    assert_eq!(a.gemm_source(), &TuningSource::File(path));
    let forced = Gpu::with_options(
        &GpuOptions::from_env()
            .with_gemm(chosen)
            .with_stepwise_rows(rows),
    )
    .unwrap();
    let run = train_three_steps(&a);
    assert!(run == train_three_steps(&b), "same file, different results");
    assert!(
        run == train_three_steps(&forced),
        "the file's kernel is not the one that ran"
    );
    // And the kernel matters: the default's gradients differ in some bits (split-K sums
    // in another order), so the comparisons above can fail.
    assert!(
        run.0 != train_three_steps(&probe).0,
        "the kernels gave the same gradient bits"
    );
}

#[test]
fn corrupt_foreign_or_unfitting_tuning_files_are_skipped() {
    let dir = fresh_dir("bad");
    let probe = gpu_from(&dir);
    let path = tuning_path(&dir, probe.adapter());
    let default = probe.gemm();
    let good = TuningFile::new(probe.adapter(), "tiled:32x32x8".parse().unwrap());
    let mut foreign = good.clone();
    foreign.adapter = "Some Other GPU".into();
    let mut old = good.clone();
    old.crate_version = "0.0.1".into();
    let mut nonsense = good.clone();
    nonsense.gemm = "warp:9".into();
    let mut bad_rows = good.clone();
    bad_rows.stepwise_rows = Some(7);
    let mut too_big = good.clone();
    too_big.gemm = "tiled:512x512x64".into();
    let json = |f: &TuningFile| serde_json::to_string(f).unwrap();
    let cases = [
        ("not json", "]] garbage".to_string()),
        ("empty", String::new()),
        ("truncated", json(&good)[..20].to_string()),
        ("foreign adapter", json(&foreign)),
        ("other crate version", json(&old)),
        ("unknown kernel", json(&nonsense)),
        ("too big for the device", json(&too_big)),
        ("bad stepwise rows", json(&bad_rows)),
    ];
    for (what, text) in cases {
        std::fs::write(&path, text).unwrap();
        let gpu = gpu_from(&dir);
        assert_eq!(gpu.gemm(), default, "{what}");
        assert_eq!(gpu.stepwise_rows(), probe.stepwise_rows(), "{what}");
        assert!(
            matches!(gpu.gemm_source(), TuningSource::Default(_)),
            "{what}"
        );
        if ["foreign adapter", "other crate version", "unknown kernel"].contains(&what) {
            assert!(TuningFile::load(&path, probe.adapter()).is_err(), "{what}");
        }
    }
}

#[test]
fn tune_command_writes_a_file_that_info_and_bench_report() {
    let dir = fresh_dir("cli");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wgpu-rnn"))
            .args(args)
            .env("WGPU_RNN_TUNING_DIR", &dir)
            .env_remove("WGPU_RNN_GEMM")
            .env_remove("WGPU_RNN_STEPWISE_ROWS")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let out = run(&["tune", "--shapes", "2,8,3,8,2", "--budget", "0.02"]);
    assert!(out.contains("register:8x8"), "{out}");
    assert!(out.contains("tiled:64x64x16/split8"), "{out}");
    let best = out
        .lines()
        .find_map(|l| l.strip_prefix("best: "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file: TuningFile =
        serde_json::from_str(&std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap())
            .unwrap();
    assert_eq!(file.gemm, best);
    let rows = file.stepwise_rows.expect("tune records the stepwise rows");
    let info = run(&["info"]);
    assert!(
        info.contains(&format!("stepwise recurrence: {rows} batch rows")),
        "{info}"
    );
    assert!(
        info.contains(&format!("gemm:    {best} (tuning file")),
        "{info}"
    );
    let bench = run(&[
        "bench",
        "--devices",
        "gpu",
        "--shapes",
        "2,4,3,8,2",
        "--budget",
        "0.01",
    ]);
    assert!(
        bench.contains(&format!("# gemm: {best} (tuning file")),
        "{bench}"
    );
    assert!(bench.contains(&format!("gemm {best}")), "{bench}");
}
