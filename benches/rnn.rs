//! Criterion benches: forward and training step (forward, MSE, backward, SGD update) over
//! a grid of shapes (B,T,I,H,O) on the GPU and on the CPU reference, and square matrix
//! products. Throughput is in tokens (T·B) per second for the RNN groups and in FLOP per
//! second for matmul; each RNN bench name carries its MFLOP per call, so GFLOP/s =
//! tokens/s × MFLOP / (T·B) / 1000. `wgpu-rnn bench` prints the same figures as a table.
//!
//!   cargo bench --bench rnn
//!   RNN_BENCH_SHAPES="1,256,32,64,32;16,128,64,128,64" cargo bench --bench rnn
//!   RNN_BENCH_CELL=lstm cargo bench --bench rnn             (rnn, lstm or gru; rnn by default)
//!   RNN_BENCH_CPU_MAX_GFLOP=100 cargo bench --bench rnn   (CPU reference on big shapes too)
//!
//! GPU timings wait for the device inside the timed region; a training step includes the
//! batch upload and the 32-byte loss readback, as in real training.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wgpu_rnn::app::bench::{batch, bench_matmul_plan, train_config, Shape, DEFAULT_SHAPES};
use wgpu_rnn::{cpu, CellKind, CpuTrainer, Gpu, Rnn, Train, Trainer};

/// The shapes of RNN_BENCH_SHAPES (or the defaults) with the cell of RNN_BENCH_CELL.
fn shapes() -> Vec<Shape> {
    let s = std::env::var("RNN_BENCH_SHAPES").unwrap_or_else(|_| DEFAULT_SHAPES.into());
    let cell: CellKind = std::env::var("RNN_BENCH_CELL")
        .unwrap_or_else(|_| "rnn".into())
        .parse()
        .unwrap_or_else(|e| panic!("RNN_BENCH_CELL: {e}"));
    let shapes: Vec<Shape> = Shape::parse_list(&s)
        .unwrap_or_else(|e| panic!("RNN_BENCH_SHAPES: {e}"))
        .into_iter()
        .map(|s| s.with_cell(cell))
        .collect();
    for s in &shapes {
        s.check()
            .unwrap_or_else(|e| panic!("RNN_BENCH_SHAPES with {}: {e}", cell.name()));
    }
    shapes
}

fn cpu_max_gflop() -> f64 {
    std::env::var("RNN_BENCH_CPU_MAX_GFLOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0)
}

fn bench_rnn(c: &mut Criterion) {
    let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    let adapter = gpu.adapter().name.clone();
    for shape in shapes() {
        let mut group = c.benchmark_group(format!("{}/{shape}", shape.cell.name()));
        group.throughput(Throughput::Elements(shape.tokens() as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        let fwd_mflop = shape.forward_flops() / 1e6;
        let train_mflop = shape.train_flops() / 1e6;
        let cfg = shape.config();
        let data = batch(shape).unwrap_or_else(|e| panic!("{e}"));

        let mut rnn = Rnn::new(&gpu, cfg.clone(), 0).unwrap();
        let path = rnn.path(shape.t, shape.b).unwrap();
        let x = gpu.tensor(&[shape.t, shape.b, shape.i], &data.x).unwrap();
        let id = |what: &str, mflop: f64| {
            BenchmarkId::new(what, format!("{adapter}, {path}, {mflop:.3} MFLOP"))
        };
        group.bench_function(id("gpu forward", fwd_mflop), |bench| {
            bench.iter(|| {
                rnn.forward(&x, None).unwrap();
                gpu.wait().unwrap();
            })
        });
        let mut trainer = Trainer::new(rnn, train_config()).unwrap();
        group.bench_function(id("gpu train step", train_mflop), |bench| {
            bench.iter(|| trainer.step(&data).unwrap())
        });
        drop(trainer);

        if shape.train_flops() / 1e9 <= cpu_max_gflop() {
            let params = cfg.init_params(0);
            let p64 = params.to_f64();
            let x64: Vec<f64> = data.x.iter().map(|&v| v as f64).collect();
            let dims = [shape.t, shape.b, shape.i];
            let cpu_id = |what: &str, mflop: f64| {
                BenchmarkId::new(what, format!("f64 reference, {mflop:.3} MFLOP"))
            };
            group.bench_function(cpu_id("cpu forward", fwd_mflop), |bench| {
                bench.iter(|| cpu::forward(&cfg, &p64, &x64, &dims, None, None).unwrap())
            });
            let mut trainer = CpuTrainer::new(cfg.clone(), &params, train_config()).unwrap();
            group.bench_function(cpu_id("cpu train step", train_mflop), |bench| {
                bench.iter(|| trainer.step(&data).unwrap())
            });
        }
        group.finish();
    }
}

fn bench_matmul(c: &mut Criterion) {
    let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for n in [512usize, 1024] {
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        let mut run = bench_matmul_plan(&gpu, n).unwrap();
        let name = format!(
            "{}, gemm {} (elements = FLOP)",
            gpu.adapter().name,
            gpu.gemm()
        );
        group.bench_function(BenchmarkId::new(format!("{n}x{n}x{n}"), name), |bench| {
            bench.iter(|| run().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rnn, bench_matmul);
criterion_main!(benches);
