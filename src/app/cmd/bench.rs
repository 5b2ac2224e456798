//! `wgpu-rnn bench` (throughput of training steps and forwards, on the GPU and the CPU
//! reference, as a table or JSON lines) and `wgpu-rnn tune` (times the candidate matrix
//! products and writes the fastest to this adapter's tuning file).

use crate::app::bench::{self, BenchOptions, BenchRow, Shape};
use crate::app::cli::{BenchArgs, BenchDevices, TuneArgs};
use crate::error::{Error, Result};
use crate::gpu::{cache_dir, Gpu, GpuOptions};
use crate::model::CellKind;

/// Seconds per measurement from a flag, refused outside (0, 1 day).
fn budget(flag: &'static str, seconds: f64) -> Result<std::time::Duration> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 86_400.0) {
        return Err(Error::BadHyperparameter {
            what: flag,
            value: seconds as f32,
            expected: "seconds, > 0 and < 86400",
        });
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// The `--shapes` list, each with the `--cell`.
fn shapes(list: &str, cell: CellKind) -> Result<Vec<Shape>> {
    Ok(Shape::parse_list(list)?
        .into_iter()
        .map(|s| s.with_cell(cell))
        .collect())
}

pub fn tune(a: TuneArgs) -> Result<()> {
    let shapes = shapes(&a.shapes, a.cell)?;
    let opts = BenchOptions {
        budget: budget("--budget", a.budget)?,
        warmup: 1,
        ..Default::default()
    };
    let options = GpuOptions::from_env();
    for var in ["WGPU_RNN_GEMM", "WGPU_RNN_STEPWISE_ROWS"] {
        if std::env::var(var).is_ok_and(|v| !v.trim().is_empty()) {
            return Err(Error::IncompatibleArgs(format!(
                "{var} is set: tune compares the choices it fixes, so unset it first"
            )));
        }
    }
    println!(
        "# candidate gemm kernels, training-step ms summed over {}",
        a.shapes
    );
    let (file, _) = bench::tune(&options, &shapes, &opts, |row| match &row.result {
        Ok(ms) => println!("{:<44} {ms:>10.3} ms", row.label()),
        Err(e) => println!("{:<44} skipped: {e}", row.label()),
    })?;
    let dir = a
        .output_dir
        .or_else(|| options.tuning_dir.clone())
        .or_else(cache_dir)
        .ok_or_else(|| {
            Error::IncompatibleArgs(
                "neither XDG_CACHE_HOME nor HOME is set; give --output-dir".into(),
            )
        })?;
    let path = file.path_in(&dir);
    file.save(&path)?;
    println!(
        "best: {} on {}; wrote {}",
        file.gemm,
        file.adapter,
        path.display()
    );
    Ok(())
}

/// What one `bench` run measures, from its flags.
struct Plan {
    shapes: Vec<Shape>,
    matmul: Vec<usize>,
    opts: BenchOptions,
    /// The CPU reference is skipped past this many GFLOP per training step (0: never).
    cpu_max_gflop: f64,
    gpu: Option<Gpu>,
    json: bool,
    profile: bool,
    cpu: bool,
}

/// The flags as a plan; nothing typed is dropped (the GPU-only and CPU-only flags need
/// their device).
fn plan(a: &BenchArgs) -> Result<Plan> {
    let shapes: Vec<Shape> = shapes(&a.shapes, a.cell)?
        .into_iter()
        .map(|s| s.with_vocab(a.vocab))
        .collect();
    for s in &shapes {
        s.check()?;
    }
    let matmul: Vec<usize> = a
        .matmul
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().ok().filter(|&n| n > 0 && n <= 8192))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::BadShapeList(a.matmul.clone()))?;
    let opts = BenchOptions {
        budget: budget("--budget", a.budget)?,
        ..Default::default()
    };
    let unused = |flag: &str, devices: &str| {
        Err(Error::IncompatibleArgs(format!(
            "{flag} measures the {devices}, which --devices {} leaves out",
            if devices == "GPU" { "cpu" } else { "gpu" }
        )))
    };
    if a.devices == BenchDevices::Cpu {
        if a.profile {
            return unused("--profile", "GPU");
        }
        if !matmul.is_empty() {
            return unused("--matmul", "GPU");
        }
    }
    if a.devices == BenchDevices::Gpu && a.cpu_max_gflop.is_some() {
        return unused("--cpu-max-gflop", "CPU reference");
    }
    let gpu = match a.devices {
        BenchDevices::Cpu => None,
        _ => Some(Gpu::new()?),
    };
    Ok(Plan {
        shapes,
        matmul,
        opts,
        cpu_max_gflop: a.cpu_max_gflop.unwrap_or(2.0),
        gpu,
        json: a.json,
        profile: a.profile,
        cpu: a.devices != BenchDevices::Gpu,
    })
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let p = plan(&a)?;
    if !p.json {
        print_header(p.gpu.as_ref(), a.cell);
        if let Some(v) = a.vocab {
            println!("# inputs: token ids of a {v}-token vocabulary, embedded into I features");
        }
    }
    for &shape in &p.shapes {
        if let Some(gpu) = &p.gpu {
            print_row(&bench::bench_gpu(gpu, shape, &p.opts)?, p.json);
            if p.profile {
                print_profile(shape, &bench::profile_gpu(gpu, shape)?, p.json);
            }
        }
        if p.cpu {
            let gflop = shape.train_flops() / 1e9;
            if p.cpu_max_gflop > 0.0 && gflop > p.cpu_max_gflop {
                if !p.json {
                    println!(
                        "{:<20} cpu  skipped: a training step is {gflop:.1} GFLOP \
                         (> --cpu-max-gflop {})",
                        shape.to_string(),
                        p.cpu_max_gflop
                    );
                }
            } else {
                print_row(&bench::bench_cpu(shape, &p.opts)?, p.json);
            }
        }
    }
    if let Some(gpu) = &p.gpu {
        for &n in &p.matmul {
            let r = bench::bench_matmul(gpu, n, &p.opts)?;
            if p.json {
                println!("{}", bench::matmul_json(gpu, &r));
            } else {
                println!(
                    "matmul {n}x{n}x{n}: {:.2} ms, {:.2} GFLOP/s (gemm {}, median of {})",
                    r.ms,
                    r.gflops(),
                    gpu.gemm(),
                    r.reps
                );
            }
        }
    }
    Ok(())
}

fn print_header(gpu: Option<&Gpu>, cell: CellKind) {
    if let Some(gpu) = gpu {
        println!("# adapter: {}", gpu.adapter());
        println!("# gemm: {} ({})", gpu.gemm(), gpu.gemm_source());
    }
    println!("# cell: {}", cell.name());
    println!(
        "{:<20} {:<4} {:>11} {:>11} {:>9} {:>8} {:>6} {:>4} {:>9} {:>9} {:>9}  path",
        "shape B,T,I,H,O",
        "dev",
        "fwd tok/s",
        "train tok/s",
        "train ms",
        "GFLOP/s",
        "disp",
        "sub",
        "host µs",
        "µs/disp",
        "peak MiB"
    );
}

fn print_row(r: &BenchRow, json: bool) {
    if json {
        println!("{}", r.to_json());
        return;
    }
    let peak = r
        .peak_device_bytes
        .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0));
    let (host, per_dispatch) = match r.host_record_us {
        Some(us) => (
            format!("{us:.0}"),
            format!("{:.2}", us / r.dispatches_per_step.max(1) as f64),
        ),
        None => ("-".into(), "-".into()),
    };
    println!(
        "{:<20} {:<4} {:>11.0} {:>11.0} {:>9.2} {:>8.2} {:>6} {:>4} {:>9} {:>9} {:>9}  {}",
        r.shape.to_string(),
        r.device,
        r.forward_tokens_per_s(),
        r.train_tokens_per_s(),
        r.train_ms,
        r.train_gflops(),
        r.dispatches_per_step,
        r.submits_per_step,
        host,
        per_dispatch,
        peak,
        r.path
    );
}

/// The GPU milliseconds of each part of a training step.
fn print_profile(shape: Shape, parts: &[(&'static str, f64)], json: bool) {
    if json {
        println!("{}", bench::profile_json(shape, parts));
        return;
    }
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let parts: Vec<String> = parts
        .iter()
        .map(|(k, ms)| format!("{k} {ms:.2} ({:.0}%)", 100.0 * ms / total))
        .collect();
    println!(
        "  GPU ms per part ({total:.2} in all): {}",
        parts.join(", ")
    );
}
