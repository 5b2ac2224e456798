//! `wgpu-rnn`: train, sample from, evaluate and inspect recurrent networks on the GPU.

use rand::{Rng, SeedableRng};
use wgpu_rnn::checkpoint::Checkpoint;
use wgpu_rnn::cli::{
    BenchArgs, BenchDevices, Cli, Command, DeviceArg, EvalArgs, ExportArgs, ForecastArgs,
    SampleArgs, TranscribeArgs, TuneArgs,
};
use wgpu_rnn::tasks::Text;
use wgpu_rnn::{Error, Gpu, GpuOptions, Result, Rnn, RnnConfig, State};

/// `std::eprintln!`, but each line reaches stderr in one write. The standard macro writes
/// a line's pieces one by one to the unbuffered stderr, and under mpirun the ranks share
/// one stderr pipe: their lines came out cut into each other ("rank task sine…1 of 2").
/// Shadows the standard macro in this binary (main and `cmd`).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

mod cmd;

fn main() {
    let cli = Cli::parse_checked();
    let done = |r: Result<()>| r.map(|()| 0);
    let r = match cli.command {
        None => cmd::train::train(cli.train),
        Some(Command::Train(a)) => cmd::train::train(*a),
        Some(Command::Sample(a)) => done(sample(a)),
        Some(Command::Info) => done(info()),
        Some(Command::Bench(a)) => done(bench(a)),
        Some(Command::Eval(a)) => done(eval(a)),
        Some(Command::Tune(a)) => done(tune(a)),
        Some(Command::Forecast(a)) => done(forecast(a)),
        Some(Command::Export(a)) => done(export(a)),
        Some(Command::Transcribe(a)) => done(transcribe(a)),
    };
    match r {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// `wgpu-rnn forecast`: warms a series model up on every row of the CSV file, then
/// forecasts `--horizon` steps, feeding each forecast back; writes the CSV and a plot.
fn forecast(a: ForecastArgs) -> Result<()> {
    use wgpu_rnn::series::{self, Normalization, SeriesData};
    let ck = Checkpoint::load(&a.model)?;
    if ck.task != "series" {
        return Err(Error::Checkpoint {
            path: a.model.display().to_string(),
            why: format!(
                "it is a {:?} model; forecast runs series models (train --task series --csv FILE)",
                ck.task
            ),
        });
    }
    if a.horizon == 0 {
        return Err(Error::ZeroSize { what: "--horizon" });
    }
    let norm = Normalization::from_extra(&ck.extra)?;
    let data = SeriesData::from_csv(&a.csv, Some(&norm.target.name), Some(&norm.input_names()))?;
    let gpu = match a.device {
        DeviceArg::Gpu => Some(Gpu::new()?),
        DeviceArg::Cpu => None,
    };
    let f = series::forecast(
        gpu.as_ref(),
        &ck.config,
        &ck.params,
        &norm,
        &data,
        a.horizon,
    )?;
    let out = a.output.clone().unwrap_or_else(|| {
        let stem = a.model.file_stem().unwrap_or_default().to_string_lossy();
        a.model.with_file_name(format!("{stem}.forecast.csv"))
    });
    series::save_forecast(&out, &f)?;
    let svg = out.with_extension("svg");
    wgpu_rnn::plot::forecast_plot(
        &svg,
        &format!("{} forecast, {} steps", norm.target.name, a.horizon),
        &norm.target.name,
        data.target_values(),
        &f,
    )?;
    eprintln!(
        "forecast {} steps of {} after {} rows: wrote {} and {}",
        a.horizon,
        norm.target.name,
        data.rows(),
        out.display(),
        svg.display()
    );
    Ok(())
}

/// `wgpu-rnn transcribe`: the files' log-mel features as the model was trained on them,
/// one batch, decoded greedily or with a prefix beam search; a line per file, in order.
fn transcribe(a: TranscribeArgs) -> Result<()> {
    use wgpu_rnn::speech::{self, Example, FrontEnd};
    let ck = Checkpoint::load(&a.model)?;
    if ck.task != "speech" {
        return Err(Error::Checkpoint {
            path: a.model.display().to_string(),
            why: format!(
                "it is a {:?} model; transcribe runs speech models (train --task speech)",
                ck.task
            ),
        });
    }
    if a.beam == Some(0) {
        return Err(Error::ZeroSize { what: "--beam" });
    }
    let front = FrontEnd::from_extra(&ck.extra)?;
    let examples = a
        .files
        .iter()
        .map(|p| {
            let features = front.features(p)?;
            if features.frames() == 0 {
                return Err(Error::BadSpeech(format!(
                    "{} is shorter than one 25 ms window; nothing to transcribe",
                    p.display()
                )));
            }
            Ok(Example {
                path: p.clone(),
                transcript: String::new(),
                labels: Vec::new(),
                features,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<usize> = (0..examples.len()).collect();
    let batch = speech::collate(&examples, &rows)?;
    let gpu = match a.device {
        DeviceArg::Gpu => Some(Gpu::new()?),
        DeviceArg::Cpu => None,
    };
    let heard = speech::transcribe(
        gpu.as_ref(),
        &ck.config,
        &ck.params,
        &front.vocabulary,
        &batch,
        a.beam,
    )?;
    for line in heard {
        println!("{line}");
    }
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    wgpu_rnn::checkpoint::export_torch(&a.model, &a.output)?;
    eprintln!(
        "wrote {}: the model tensors as PyTorch names them (rnn., head.), loadable with \
         load_state_dict(strict=True)",
        a.output.display()
    );
    Ok(())
}

/// `info`; under mpirun (feature `mpi`) every rank prints its lines, prefixed by its rank,
/// for the adapter `train` would give it.
fn info() -> Result<()> {
    let comm = cmd::ranks::communicator()?;
    let prefix = if comm.size() > 1 {
        format!("rank {} of {}: ", comm.rank(), comm.size())
    } else {
        String::new()
    };
    macro_rules! println {
        ($($arg:tt)*) => { std::println!("{prefix}{}", format!($($arg)*)) };
    }
    let options = GpuOptions::from_env();
    for a in Gpu::adapters(&options) {
        println!("found:   {a}");
    }
    let gpu = cmd::ranks::gpu_for_rank(comm.rank())?;
    let l = gpu.limits();
    println!("chosen:  {}", gpu.adapter());
    println!(
        "limits:  storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB, {} invocations per workgroup",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup
    );
    println!("gemm:    {} ({})", gpu.gemm(), gpu.gemm_source());
    let used = |on: bool, var: &str| {
        if on {
            "used".to_string()
        } else {
            format!("not offered or turned off ({var}=0)")
        }
    };
    println!("subgroups: {}", used(gpu.subgroups(), "WGPU_RNN_SUBGROUPS"));
    println!(
        "immediates: {}",
        used(gpu.immediates(), "WGPU_RNN_IMMEDIATES")
    );
    println!(
        "stepwise recurrence: {} batch rows per workgroup",
        gpu.stepwise_rows()
    );
    println!(
        "forward recurrence: {} kernel (WGPU_RNN_SUBGROUP_RECURRENCE=1 or 0 sets it)",
        if gpu.subgroup_recurrence() {
            "subgroup"
        } else {
            "plain"
        }
    );
    Ok(())
}

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

fn tune(a: TuneArgs) -> Result<()> {
    use wgpu_rnn::bench::{self, BenchOptions, Shape};
    use wgpu_rnn::gpu::cache_dir;
    let cell: wgpu_rnn::CellKind = a.cell.into();
    let shapes: Vec<Shape> = Shape::parse_list(&a.shapes)?
        .into_iter()
        .map(|s| s.with_cell(cell))
        .collect();
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

fn bench(a: BenchArgs) -> Result<()> {
    use wgpu_rnn::bench::{self, BenchOptions, BenchRow, Shape};
    let cell: wgpu_rnn::CellKind = a.cell.into();
    let shapes: Vec<Shape> = Shape::parse_list(&a.shapes)?
        .into_iter()
        .map(|s| s.with_cell(cell))
        .collect::<Vec<_>>();
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
    // Nothing typed is dropped: the GPU-only and CPU-only flags need their device.
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
    let cpu_max_gflop = a.cpu_max_gflop.unwrap_or(2.0);
    let gpu = match a.devices {
        BenchDevices::Cpu => None,
        _ => Some(Gpu::new()?),
    };
    if !a.json {
        if let Some(gpu) = &gpu {
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
    let print = |r: &BenchRow| {
        if a.json {
            println!("{}", r.to_json());
        } else {
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
    };
    for shape in shapes {
        if let Some(gpu) = &gpu {
            print(&bench::bench_gpu(gpu, shape, &opts)?);
            if a.profile {
                let parts = bench::profile_gpu(gpu, shape)?;
                let total: f64 = parts.iter().map(|p| p.1).sum();
                if a.json {
                    let parts: Vec<(&str, f64)> = parts.iter().map(|(k, ms)| (*k, *ms)).collect();
                    println!("{}", bench::profile_json(shape, &parts));
                } else {
                    let parts: Vec<String> = parts
                        .iter()
                        .map(|(k, ms)| format!("{k} {ms:.2} ({:.0}%)", 100.0 * ms / total))
                        .collect();
                    println!(
                        "  GPU ms per part ({total:.2} in all): {}",
                        parts.join(", ")
                    );
                }
            }
        }
        if a.devices != BenchDevices::Gpu {
            let gflop = shape.train_flops() / 1e9;
            if cpu_max_gflop > 0.0 && gflop > cpu_max_gflop {
                if !a.json {
                    println!(
                        "{:<20} cpu  skipped: a training step is {gflop:.1} GFLOP \
                         (> --cpu-max-gflop {})",
                        shape.to_string(),
                        cpu_max_gflop
                    );
                }
            } else {
                print(&bench::bench_cpu(shape, &opts)?);
            }
        }
    }
    if let Some(gpu) = &gpu {
        for n in matmul {
            let r = bench::bench_matmul(gpu, n, &opts)?;
            if a.json {
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

fn eval(a: EvalArgs) -> Result<()> {
    use wgpu_rnn::interop;
    let model = interop::load_torch(&a.model, a.nonlinearity.map(Into::into))?;
    let cfg = &model.config;
    let bytes = std::fs::read(&a.input).map_err(|source| Error::Io {
        path: a.input.display().to_string(),
        source,
    })?;
    let bad = |why: String| Error::Model {
        path: a.input.display().to_string(),
        why,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let read = |name: &str| interop::read_f32(&st, name).map_err(bad);
    let (x_shape, x) = read("x")?.ok_or_else(|| bad("no tensor named x (T, B, I)".into()))?;
    let (t, b) = cfg.check_input(&x_shape)?;
    let state = cfg.state_shape(b);
    let read_state = |name: &str| -> Result<Option<Vec<f32>>> {
        match read(name)? {
            Some((s, v)) if s == state => Ok(Some(v)),
            Some((s, _)) => Err(bad(format!(
                "{name} has shape {s:?}, expected {state:?} (layers × directions, batch, hidden)"
            ))),
            None => Ok(None),
        }
    };
    let h0 = read_state("h0")?;
    let c0 = read_state("c0")?;
    if c0.is_some() && !cfg.cell.has_c() {
        return Err(bad(format!(
            "it holds c0, but the model is a {} (only LSTM has a cell state)",
            cfg.cell.name()
        )));
    }
    // An LSTM given h0 alone starts from c0 = 0, and the other way round.
    let init = match (h0, c0) {
        (None, None) => None,
        (h, c) => {
            let zeros = || vec![0.0f32; state.iter().product()];
            Some(State {
                h: h.unwrap_or_else(zeros),
                c: cfg.cell.has_c().then(|| c.unwrap_or_else(zeros)),
            })
        }
    };
    let lengths = match read("lengths")? {
        Some((s, v)) if s == [b] => {
            let l: Vec<usize> = v.iter().map(|&f| f as usize).collect();
            if v.iter().zip(&l).any(|(&f, &u)| f != u as f32) {
                return Err(bad("lengths must be whole numbers".into()));
            }
            wgpu_rnn::shapes::check_lengths(&l, t, b)?;
            Some(l)
        }
        Some((s, _)) => return Err(bad(format!("lengths has shape {s:?}, expected [{b}]"))),
        None => None,
    };
    let (y, last) = match a.device {
        DeviceArg::Gpu => {
            let gpu = Gpu::new()?;
            let mut rnn = Rnn::from_params(&gpu, cfg.clone(), &model.params)?;
            let xg = gpu.tensor(&x_shape, &x)?;
            let init = init
                .as_ref()
                .map(|s| s.try_map(|v| gpu.tensor(&state, v)))
                .transpose()?;
            let out = match &lengths {
                Some(l) => rnn.forward_with_lengths(&xg, init.as_ref(), l)?,
                None => rnn.forward(&xg, init.as_ref())?,
            };
            (out.y.download()?, out.state.try_map(|t| t.download())?)
        }
        DeviceArg::Cpu => {
            let wide = |v: &Vec<f32>| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let init64 = init.as_ref().map(|s| s.map(wide));
            let f = wgpu_rnn::cpu::forward(
                cfg,
                &model.params.to_f64(),
                &wide(&x),
                &x_shape,
                init64.as_ref(),
                lengths.as_deref(),
            )?;
            let narrow = |v: &Vec<f64>| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            (narrow(&f.y), f.state.map(narrow))
        }
    };
    let mut tensors = vec![
        ("y".to_string(), vec![t, b, cfg.output_size], &y[..]),
        ("h_n".to_string(), state.to_vec(), &last.h[..]),
    ];
    if let Some(c) = &last.c {
        tensors.push(("c_n".to_string(), state.to_vec(), &c[..]));
    }
    let meta = interop::config_metadata(cfg).into_iter().collect();
    interop::write_safetensors_file(&a.output, &tensors, meta)?;
    eprintln!(
        "eval: {} L={} D={} I={} H={} O={} {:?}, T={t} B={b}{} -> {}",
        cfg.cell.name(),
        cfg.num_layers,
        cfg.directions(),
        cfg.input_size,
        cfg.hidden_size,
        cfg.output_size,
        cfg.activation,
        if lengths.is_some() {
            " (with lengths)"
        } else {
            ""
        },
        a.output.display()
    );
    Ok(())
}

fn sample(a: SampleArgs) -> Result<()> {
    let ck = Checkpoint::load(&a.model)?;
    let vocab = ck.vocab.clone().ok_or_else(|| Error::Checkpoint {
        path: a.model.display().to_string(),
        why: format!(
            "it is a {:?} model; only text models can be sampled",
            ck.task
        ),
    })?;
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(Error::BadHyperparameter {
            what: "--temperature",
            value: a.temperature,
            expected: "finite and >= 0 (0: always the most likely character)",
        });
    }
    let text = Text::from_vocab(vocab);
    let gpu = Gpu::new()?;
    let out = generate(
        Some(&gpu),
        &ck.config,
        &ck.params,
        &text,
        &a.prime,
        a.len,
        a.temperature,
        a.seed,
    )?;
    println!("{out}");
    Ok(())
}

/// Feeds `prime`, then samples `len` characters one step at a time from
/// softmax(y / temperature), seeded; temperature 0 takes the most likely character (the
/// first of equals). On the GPU when one is given, else on the CPU reference.
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate(
    gpu: Option<&Gpu>,
    config: &RnnConfig,
    params: &wgpu_rnn::Params<Vec<f32>>,
    text: &Text,
    prime: &str,
    len: usize,
    temperature: f32,
    seed: u64,
) -> Result<String> {
    let v = text.vocab.len();
    let h = config.hidden_size;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rnn = gpu
        .map(|g| Rnn::from_params(g, config.clone(), params))
        .transpose()?;
    let p64 = params.to_f64();
    let mut state = State::filled(config.cell, vec![0.0f32; config.cells() * h]);
    let shape = config.state_shape(1);
    let mut step = |id: u32, state: &mut State<Vec<f32>>| -> Result<Vec<f32>> {
        let mut x = vec![0.0f32; v];
        x[id as usize] = 1.0;
        match (&mut rnn, gpu) {
            (Some(rnn), Some(g)) => {
                let init = state.try_map(|s| g.tensor(&shape, s))?;
                let out = rnn.forward(&g.tensor(&[1, 1, v], &x)?, Some(&init))?;
                *state = out.state.try_map(|t| t.download())?;
                out.y.download()
            }
            _ => {
                let x64: Vec<f64> = x.iter().map(|&a| a as f64).collect();
                let s64 = state.map(|s| s.iter().map(|&a| a as f64).collect());
                let f = wgpu_rnn::cpu::forward(config, &p64, &x64, &[1, 1, v], Some(&s64), None)?;
                *state = f.state.map(|s| s.iter().map(|&a| a as f32).collect());
                Ok(f.y.iter().map(|&a| a as f32).collect())
            }
        }
    };
    let mut out = String::new();
    let mut current = text.index('\n').unwrap_or(0);
    for c in prime.chars() {
        match text.index(c) {
            Some(id) => {
                step(current, &mut state)?;
                current = id;
                out.push(c);
            }
            None => {
                return Err(Error::BadText(format!(
                    "the prime contains {c:?}, which is not in the model's vocabulary"
                )))
            }
        }
    }
    for _ in 0..len {
        let logits = step(current, &mut state)?;
        let next = if temperature == 0.0 {
            greedy(&logits)
        } else {
            let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f32> = logits
                .iter()
                .map(|l| ((l - m) / temperature).exp())
                .collect();
            let total: f32 = w.iter().sum();
            let mut u = rng.random_range(0.0..total.max(f32::MIN_POSITIVE));
            let mut next = w.len() - 1;
            for (k, wk) in w.iter().enumerate() {
                if u < *wk {
                    next = k;
                    break;
                }
                u -= wk;
            }
            next
        };
        current = next as u32;
        out.push(text.vocab[next]);
    }
    Ok(out)
}

/// The index of the largest logit (the first of equals; NaN never wins).
fn greedy(logits: &[f32]) -> usize {
    let mut best = 0;
    for (k, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = k;
        }
    }
    best
}
