//! Failing safely: a lost device, exploding training, reduced device limits, checkpoints
//! killed while saving, and bitwise-reproducible training.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::uniform;
use wgpu_rnn::{
    Batch, Error, Gpu, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets, Train,
    TrainConfig, Trainer,
};

/// Runs `f` on another thread and fails the test if it has not returned in `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        tx.send(f()).ok();
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not return within {secs} s (a hang)"))
}

fn own_gpu() -> Gpu {
    Gpu::new().unwrap_or_else(|e| panic!("these tests need a wgpu adapter: {e}"))
}

/// Destroying the device mid-use makes the next calls return errors, not hang or panic.
#[test]
fn device_loss_is_an_error_on_the_next_call() {
    within(60, "calls after device loss", || {
        let gpu = own_gpu();
        let cfg = RnnConfig::new(3, 8, 2);
        let mut rnn = Rnn::new(&gpu, cfg, 0).unwrap();
        let x = gpu.tensor(&[4, 2, 3], &uniform(1, 24, 1.0)).unwrap();
        rnn.forward(&x, None).unwrap().y.download().unwrap();
        gpu.device().destroy();
        let mut errors = Vec::new();
        for _ in 0..3 {
            let r = rnn.forward(&x, None).and_then(|o| o.y.download());
            errors.push(r.expect_err("a call on a destroyed device succeeded"));
        }
        let e = gpu
            .tensor(&[2], &[1.0, 2.0])
            .expect_err("allocation on a lost device");
        errors.push(e);
        for e in &errors {
            assert!(
                matches!(
                    e,
                    Error::DeviceLost(_) | Error::Gpu { .. } | Error::Readback(_)
                ),
                "{e}"
            );
        }
        // Once the lost callback has run, the error says so.
        gpu.wait().ok();
        let e = rnn.forward(&x, None).unwrap_err();
        assert!(matches!(e, Error::DeviceLost(_)), "{e}");
        assert!(e.to_string().contains("create a new Gpu"), "{e}");
    });
}

fn mse_batch(t: usize, b: usize, i: usize, o: usize, seed: u64) -> Batch {
    Batch {
        t,
        b,
        x: uniform(seed, t * b * i, 1.0),
        targets: Targets::Values(uniform(seed + 1, t * b * o, 1.0)),
        weights: vec![1.0; t * b],
        lengths: None,
        tokens: None,
    }
}

/// A huge learning rate without clipping blows the loss up to infinity or NaN; that step
/// is reported as skipped, with its number, and leaves every parameter as it was.
#[test]
fn exploding_training_skips_the_bad_update() {
    let gpu = common::gpu();
    let cfg = RnnConfig::new(3, 16, 2).with_activation(wgpu_rnn::Activation::Relu);
    let mut tc = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Sgd, 1e4), LossKind::Mse);
    tc.clip_norm = None;
    let mut trainer = Trainer::new(Rnn::new(gpu, cfg, 1).unwrap(), tc).unwrap();
    let mut skipped = None;
    for s in 0..200 {
        let before = trainer.params().unwrap();
        let stats = trainer.step(&mse_batch(6, 4, 3, 2, s)).unwrap();
        assert_eq!(stats.step, s + 1);
        if stats.skipped {
            assert!(
                !(stats.loss.is_finite() && stats.grad_norm.is_finite()),
                "{stats:?}"
            );
            let after = trainer.params().unwrap();
            let bits = |p: &wgpu_rnn::Params<Vec<f32>>| -> Vec<u32> {
                p.tensors()
                    .iter()
                    .flat_map(|v| v.iter().map(|x| x.to_bits()))
                    .collect()
            };
            assert_eq!(
                bits(&after),
                bits(&before),
                "a skipped step changed the parameters"
            );
            skipped = Some(stats.step);
            break;
        }
        assert!(
            stats.loss.is_finite() && stats.grad_norm.is_finite(),
            "{stats:?}"
        );
    }
    let step = skipped.expect("lr 1e4 never blew up in 200 steps: the test checks nothing");
    eprintln!("first non-finite step: {step}");
}

/// Runs `rnn` (parameters from `seed`) on the small device at (T, B), with or without
/// per-row lengths, forward and backward, and compares y, the final state and dx with the
/// CPU reference.
fn run_and_compare(
    gpu: &Gpu,
    rnn: &mut Rnn,
    seed: u64,
    (t, b): (usize, usize),
    lengths: Option<&[usize]>,
    tag: &str,
) {
    use wgpu_rnn::cpu;
    let cfg = rnn.config().clone();
    let (i, o) = (cfg.input_size, cfg.output_size);
    let x = uniform(seed + 10, t * b * i, 1.0);
    let dy = uniform(seed + 11, t * b * o, 1.0);
    let x_gpu = gpu.tensor(&[t, b, i], &x).unwrap();
    let out = match lengths {
        Some(l) => rnn.forward_with_lengths(&x_gpu, None, l),
        None => rnn.forward(&x_gpu, None),
    }
    .unwrap_or_else(|e| panic!("{tag}: forward: {e}"));
    let grads = rnn
        .backward(&gpu.tensor(&[t, b, o], &dy).unwrap(), None)
        .unwrap_or_else(|e| panic!("{tag}: backward: {e}"));
    let p = cfg.init_params(seed).to_f64();
    let x64 = common::widen(&x);
    let want = cpu::forward(&cfg, &p, &x64, &[t, b, i], None, lengths).unwrap();
    let g = cpu::backward(&cfg, &p, &x64, &want, &common::widen(&dy), None).unwrap();
    common::assert_close(
        &format!("{tag} y"),
        &out.y.download().unwrap(),
        &want.y,
        1e-5,
        1e-4,
    );
    for (k, (gv, cv)) in out
        .state
        .tensors()
        .into_iter()
        .zip(want.state.tensors())
        .enumerate()
    {
        common::assert_close(
            &format!("{tag} final state {k}"),
            &gv.download().unwrap(),
            cv,
            1e-5,
            1e-4,
        );
    }
    common::assert_close(
        &format!("{tag} dx"),
        &grads.dx.download().unwrap(),
        &g.dx,
        1e-4,
        1e-3,
    );
}

/// A device with deliberately small limits: what fits runs (and still matches the
/// reference), what does not is refused with an error naming the limit, its value and
/// what was asked.
#[test]
fn small_device_limits_are_respected_or_named() {
    use wgpu_rnn::{CellKind, GpuOptions, RecurrencePath};
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 16 << 10,
        max_buffer_size: 64 << 10,
        max_compute_workgroup_storage_size: 8 << 10,
        ..wgpu::Limits::default()
    };
    let gpu = Gpu::with_options(&GpuOptions::from_env().with_limits(limits)).unwrap();
    assert_eq!(gpu.limits().max_storage_buffer_binding_size, 16 << 10);
    assert_eq!(gpu.limits().max_compute_workgroup_storage_size, 8 << 10);

    // Fits: (T+1)·B·H·4 = 11·4·16·4 bytes. Only the persistent path with W_hh in
    // workgroup memory uses workgroup memory for the recurrence (G·H·H·4 = 1 KiB here,
    // which fits), so every path runs here, including variable-length batches (which
    // used to need 16 KiB of workgroup memory and were refused on this device).
    let cfg = RnnConfig::new(3, 16, 2);
    let mut rnn = Rnn::new(&gpu, cfg.clone(), 3).unwrap();
    let lengths = [10, 3, 2, 1];
    for path in [
        None,
        Some(RecurrencePath::Stepwise),
        Some(RecurrencePath::Persistent {
            rows_per_workgroup: 1,
            shared_w: false,
        }),
        Some(RecurrencePath::Persistent {
            rows_per_workgroup: 4,
            shared_w: true,
        }),
    ] {
        rnn.set_path(path);
        let chosen = rnn.path(10, 4).unwrap();
        if let Some(p) = path {
            assert_eq!(chosen, p);
        }
        for l in [None, Some(&lengths[..])] {
            run_and_compare(
                &gpu,
                &mut rnn,
                3,
                (10, 4),
                l,
                &format!("small-limits {chosen} lengths {l:?}"),
            );
        }
    }
    rnn.set_path(None);

    // Too big for one storage binding: (T+1)·B·H·4 = 65·16·16·4 > 16 KiB.
    let big = gpu.zeros(&[64, 4, 3]).unwrap();
    let e = rnn.forward(&big, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, Error::DeviceLimit { limit: "max_storage_buffer_binding_size", value, asked, .. }
            if *value == 16 << 10 && *asked > 16 << 10),
        "{msg}"
    );
    assert!(
        msg.contains("max_storage_buffer_binding_size") && msg.contains("16384"),
        "{msg}"
    );

    // W_hh in workgroup memory needs G·H·H·4 bytes: more than this device's 8 KiB for
    // each cell here (16384, 16384 and 12288 bytes). Pinning that path is refused, naming
    // the limit, its value and what was asked; the adapter's own choice never takes it
    // where it does not fit, and the same models run on the paths that need no
    // workgroup memory, with per-row lengths too.
    for (cell, h) in [
        (CellKind::Rnn, 64),
        (CellKind::Lstm, 32),
        (CellKind::Gru, 32),
    ] {
        let cfg = RnnConfig::new(3, h, 2).with_cell(cell);
        let asked = (cell.gates() * h * h * 4) as u64;
        assert!(asked > 8 << 10 && asked <= 16 << 10);
        let mut rnn = Rnn::new(&gpu, cfg, 4).unwrap();
        let chosen = rnn.path(5, 2).unwrap();
        assert!(
            !matches!(chosen, RecurrencePath::Persistent { shared_w: true, .. }),
            "{cell:?}: chose {chosen}, which does not fit"
        );
        run_and_compare(
            &gpu,
            &mut rnn,
            4,
            (5, 2),
            Some(&[5, 2]),
            &format!("{cell:?} {chosen}"),
        );
        rnn.set_path(Some(RecurrencePath::Persistent {
            rows_per_workgroup: 1,
            shared_w: true,
        }));
        let e = rnn
            .forward(&gpu.zeros(&[5, 2, 3]).unwrap(), None)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::DeviceLimit {
                    limit: "max_compute_workgroup_storage_size",
                    value: 8192,
                    asked: a,
                    ..
                } if *a == asked
            ),
            "{cell:?}: {e}"
        );
        assert!(
            e.to_string().contains("max_compute_workgroup_storage_size"),
            "{e}"
        );
        let e = rnn.path(5, 2).unwrap_err();
        assert!(matches!(e, Error::DeviceLimit { .. }), "{cell:?}: {e}");
        rnn.set_path(Some(RecurrencePath::Persistent {
            rows_per_workgroup: 1,
            shared_w: false,
        }));
        run_and_compare(
            &gpu,
            &mut rnn,
            4,
            (5, 2),
            Some(&[5, 2]),
            &format!("{cell:?} unshared"),
        );
    }

    // Too few storage buffers per stage for the kernels: refused at creation, named.
    let few = wgpu::Limits {
        max_storage_buffers_per_shader_stage: 4,
        ..wgpu::Limits::default()
    };
    let e = Gpu::with_options(&GpuOptions::from_env().with_limits(few)).unwrap_err();
    assert!(
        e.to_string()
            .contains("max_storage_buffers_per_shader_stage"),
        "{e}"
    );

    // Asking for more than the adapter offers fails at creation with a message.
    let greedy = wgpu::Limits {
        max_buffer_size: u64::MAX,
        ..wgpu::Limits::default()
    };
    let e = Gpu::with_options(&GpuOptions::from_env().with_limits(greedy)).unwrap_err();
    assert!(matches!(e, Error::RequestDevice { .. }), "{e}");
}

fn checkpoint_for_kill_test() -> wgpu_rnn::files::checkpoint::Checkpoint {
    let cfg = RnnConfig::new(8, 256, 8);
    wgpu_rnn::files::checkpoint::Checkpoint {
        params: cfg.init_params(5),
        config: cfg,
        task: "sine".into(),
        vocab: None,
        optim: None,
        step: 0,
        carried_state: None,
        extra: Default::default(),
    }
}

/// Helper for the kill test: saves the same checkpoint over and over, each time with the
/// next step number, until killed. Does nothing unless the kill test started it.
#[test]
#[ignore = "run by killed_while_saving_leaves_a_loadable_checkpoint"]
fn save_in_a_loop_helper() {
    let Ok(path) = std::env::var("WGPU_RNN_SAVE_LOOP") else {
        return;
    };
    let mut ck = checkpoint_for_kill_test();
    loop {
        ck.step += 1;
        ck.save(std::path::Path::new(&path)).unwrap();
    }
}

/// A process killed at random moments while saving (a ~1 MB checkpoint, over and over)
/// always leaves a checkpoint that loads and holds the right parameters. (Writing the
/// file in place instead of temp + fsync + rename fails this test in its first round.)
#[test]
fn killed_while_saving_leaves_a_loadable_checkpoint() {
    use rand::{Rng, SeedableRng};
    use wgpu_rnn::files::checkpoint::Checkpoint;
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let expected = checkpoint_for_kill_test();
    expected.save(&path).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut advanced = 0;
    for round in 0..25 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "save_in_a_loop_helper",
                "--test-threads",
                "1",
            ])
            .env("WGPU_RNN_SAVE_LOOP", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..120)));
        child.kill().unwrap();
        child.wait().unwrap();
        let ck = Checkpoint::load(&path)
            .unwrap_or_else(|e| panic!("round {round}: checkpoint unreadable after a kill: {e}"));
        assert_eq!(ck.params, expected.params, "round {round}");
        // Count the rounds in which the helper got a save done before the kill.
        if ck.step > 0 {
            advanced += 1;
        }
    }
    assert!(
        advanced > 0,
        "the helper never saved: the test checked nothing"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Files that lie: a header claiming absurd shapes, a wrong dtype, metadata that does not
/// match the tensors. Each is an error, with no panic and no allocation the file asked
/// for.
#[test]
fn hostile_checkpoints_are_errors() {
    use wgpu_rnn::files::checkpoint::Checkpoint;
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = |header: &str, data: &[u8]| -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    };
    let meta = r#""__metadata__":{"format":"wgpu-rnn/1","input_size":"1","hidden_size":"1","output_size":"1","task":"sine","step":"0"}"#;
    let cases = [
        (
            "absurd shape",
            raw(
                &format!(
                    r#"{{{meta},"rnn.weight_ih_l0":{{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}}}"#
                ),
                &[0; 16],
            ),
        ),
        (
            "wrong dtype",
            raw(
                &format!(
                    r#"{{{meta},"rnn.weight_ih_l0":{{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}}}"#
                ),
                &[0; 8],
            ),
        ),
        (
            "offsets past the end",
            raw(
                &format!(
                    r#"{{{meta},"rnn.weight_ih_l0":{{"dtype":"F32","shape":[1,1],"data_offsets":[0,4000000000]}}}}"#
                ),
                &[0; 4],
            ),
        ),
        ("not json", raw("{{{{", &[])),
    ];
    for (name, bytes) in cases {
        let p = dir.join(format!("{}.safetensors", name.replace(' ', "_")));
        std::fs::write(&p, bytes).unwrap();
        let e = Checkpoint::load(&p).unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }), "{name}: {e}");
    }
    // Metadata that claims a huge model over small tensors.
    let cfg = RnnConfig::new(2, 3, 1);
    let mut ck = checkpoint_for_kill_test();
    ck.config = cfg.clone();
    ck.params = cfg.init_params(1);
    let p = dir.join("liar.safetensors");
    ck.save(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    // Found among the bytes (a lossy UTF-8 copy would shift the index past the length
    // prefix's bytes).
    let needle = br#""hidden_size":"3""#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("metadata in the header");
    bytes[at..at + 17].copy_from_slice(br#""hidden_size":"9""#);
    std::fs::write(&p, &bytes).unwrap();
    let e = Checkpoint::load(&p).unwrap_err();
    assert!(e.to_string().contains("metadata"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
