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

/// A device with deliberately small limits: what fits runs (and still matches the
/// reference), what does not is refused with an error naming the limit, its value and
/// what was asked.
#[test]
fn small_device_limits_are_respected_or_named() {
    use wgpu_rnn::{cpu, GpuOptions, RecurrencePath};
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 16 << 10,
        max_buffer_size: 64 << 10,
        max_compute_workgroup_storage_size: 8 << 10,
        ..wgpu::Limits::default()
    };
    let gpu = Gpu::with_options(&GpuOptions::from_env().with_limits(limits)).unwrap();
    assert_eq!(gpu.limits().max_storage_buffer_binding_size, 16 << 10);

    // Fits: (T+1)·B·H·4 = 11·4·16·4 bytes. The persistent kernel's 16 KiB of workgroup
    // memory does not fit, so the stepwise path runs.
    let cfg = RnnConfig::new(3, 16, 2);
    let mut rnn = Rnn::new(&gpu, cfg.clone(), 3).unwrap();
    assert_eq!(rnn.path(10, 4).unwrap(), RecurrencePath::Stepwise);
    let x = uniform(5, 10 * 4 * 3, 1.0);
    let out = rnn
        .forward(&gpu.tensor(&[10, 4, 3], &x).unwrap(), None)
        .unwrap();
    let p = cfg.init_params(3).to_f64();
    let want = cpu::forward(&cfg, &p, &common::widen(&x), &[10, 4, 3], None).unwrap();
    common::assert_close(
        "small-limits y",
        &out.y.download().unwrap(),
        &want.y,
        1e-5,
        1e-4,
    );

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

    // Per-row lengths need the persistent kernel: refused, naming workgroup storage.
    let e = rnn
        .forward_with_lengths(&gpu.tensor(&[10, 4, 3], &x).unwrap(), None, &[10, 3, 2, 1])
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::DeviceLimit {
                limit: "max_compute_workgroup_storage_size",
                value: 8192,
                asked: 16384,
                ..
            }
        ),
        "{e}"
    );
    // Pinning the persistent path is refused the same way.
    rnn.set_path(Some(RecurrencePath::Persistent {
        rows_per_workgroup: 1,
        shared_w: false,
    }));
    let e = rnn
        .forward(&gpu.tensor(&[10, 4, 3], &x).unwrap(), None)
        .unwrap_err();
    assert!(
        e.to_string().contains("max_compute_workgroup_storage_size"),
        "{e}"
    );

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
