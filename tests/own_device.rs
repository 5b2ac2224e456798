//! A caller's own wgpu device can carry the model (wgpu-rnn inside an existing wgpu program).

mod common;

use common::{assert_close, uniform, widen};
use wgpu_rnn::{cpu, Error, Gpu, GpuOptions, Rnn, RnnConfig};

#[test]
fn model_runs_on_a_device_the_caller_created() {
    let options = GpuOptions::from_env();
    let backends = options.backends.unwrap_or(wgpu::Backends::all());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let adapter = adapters
        .into_iter()
        .next()
        .expect("a wgpu adapter (run .ci/install-adapter on a machine without a GPU)");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let gpu = Gpu::from_device(device, queue).unwrap();

    let cfg = RnnConfig::new(3, 6, 2);
    let mut rnn = Rnn::new(&gpu, cfg.clone(), 1).unwrap();
    let x = uniform(5, 4 * 2 * 3, 1.0);
    let out = rnn
        .forward(&gpu.tensor(&[4, 2, 3], &x).unwrap(), None)
        .unwrap();
    let p = rnn.params_to_host().unwrap().to_f64();
    let reference = cpu::forward(&cfg, &p, &widen(&x), &[4, 2, 3], None, None).unwrap();
    assert_close("y", &out.y.download().unwrap(), &reference.y, 1e-5, 1e-4);

    // A tensor from another device is refused, not silently misused.
    let other = common::gpu().tensor(&[4, 2, 3], &x).unwrap();
    assert!(matches!(
        rnn.forward(&other, None),
        Err(Error::WrongDevice("x"))
    ));
}

#[test]
fn no_backend_at_all_says_how_to_get_an_adapter() {
    let options = GpuOptions::default().with_backends(wgpu::Backends::empty());
    let e = Gpu::with_options(&options).unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }), "{e}");
    assert!(e.to_string().contains("mesa-vulkan-drivers"), "{e}");
}
