//! Forward and backward of one RNN shape on the GPU and on the CPU reference.
//! GPU timings wait for the device inside the timed region (criterion `iter_custom`),
//! excluding readback; throughput is tokens (T·B) per second.
//!
//!   cargo bench --bench rnn
//!   RNN_BENCH_SHAPE=T,B,I,H,O cargo bench --bench rnn    (default 64,64,64,128,64)

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use wgpu_rnn::{cpu, Gpu, Rnn, RnnConfig};

fn shape() -> [usize; 5] {
    let s = std::env::var("RNN_BENCH_SHAPE").unwrap_or_else(|_| "64,64,64,128,64".into());
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().expect("RNN_BENCH_SHAPE is T,B,I,H,O"))
        .collect();
    v.try_into().expect("RNN_BENCH_SHAPE is T,B,I,H,O")
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn bench(c: &mut Criterion) {
    let [t, b, i, h, o] = shape();
    let cfg = RnnConfig::new(i, h, o);
    let gpu = Gpu::new().expect("a wgpu adapter (see README: Requirements)");
    let name = format!("T{t}_B{b}_I{i}_H{h}_O{o}");
    let mut group = c.benchmark_group(format!("rnn/{name}"));
    group.throughput(Throughput::Elements((t * b) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));

    let x = data(t * b * i, 1);
    let dy = data(t * b * o, 2);
    let mut rnn = Rnn::new(&gpu, cfg.clone(), 0).unwrap();
    let x_gpu = gpu.tensor(&[t, b, i], &x).unwrap();
    let dy_gpu = gpu.tensor(&[t, b, o], &dy).unwrap();
    let adapter = &gpu.adapter().name;

    group.bench_function(format!("gpu forward ({adapter})"), |bench| {
        bench.iter_custom(|iters| {
            rnn.forward(&x_gpu, None).unwrap();
            gpu.wait().unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                rnn.forward(&x_gpu, None).unwrap();
                gpu.wait().unwrap();
            }
            start.elapsed()
        })
    });
    group.bench_function(format!("gpu backward ({adapter})"), |bench| {
        rnn.forward(&x_gpu, None).unwrap();
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rnn.backward(&dy_gpu, None).unwrap();
                gpu.wait().unwrap();
            }
            start.elapsed()
        })
    });

    let p = cfg.init_params(0).to_f64();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let dy64: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
    group.bench_function("cpu reference forward", |bench| {
        bench.iter(|| cpu::forward(&cfg, &p, &x64, &[t, b, i], None).unwrap())
    });
    let fwd = cpu::forward(&cfg, &p, &x64, &[t, b, i], None).unwrap();
    group.bench_function("cpu reference backward", |bench| {
        bench.iter(|| cpu::backward(&cfg, &p, &x64, &fwd, &dy64, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
