//! Throughput measurement shared by `wgpu-rnn bench` and the criterion benches: forward
//! passes and full training steps (forward, MSE, backward, SGD update) at a shape
//! (B, T, I, H, O), on the GPU and on the CPU reference, and a matrix-product micro-bench.
//!
//! Times are wall-clock medians of whole calls that end with the results ready (a GPU call
//! waits for the device), so they include submit and synchronisation costs.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{
    GemmSpec, GemmTuning, Gpu, GpuOptions, GpuTensor, Operand, PlanBuilder, Recorder, TuningFile,
};
use crate::model::{CellKind, Rnn, RnnConfig};
use crate::train::{
    Batch, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Targets, Train, TrainConfig,
    Trainer,
};

/// The shapes `wgpu-rnn bench` measures by default: small, mid and large batch.
pub const DEFAULT_SHAPES: &str =
    "1,256,32,64,32;16,128,64,128,64;64,64,64,256,64;256,64,128,512,128";

/// A benchmark shape: batch B, sequence length T, input I, hidden H, output O, the cell
/// (one layer, one direction), and optionally a vocabulary: token ids embedded into I
/// features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub b: usize,
    pub t: usize,
    pub i: usize,
    pub h: usize,
    pub o: usize,
    pub cell: CellKind,
    /// `Some(V)`: the inputs are token ids below V, through an embedding (V, I).
    pub vocab: Option<usize>,
}

impl Shape {
    /// The model measured at this shape.
    pub fn config(&self) -> RnnConfig {
        let c = RnnConfig::new(self.i, self.h, self.o).with_cell(self.cell);
        match self.vocab {
            Some(v) => c.with_embedding(v),
            None => c,
        }
    }

    /// The same shape with another cell.
    pub fn with_cell(mut self, cell: CellKind) -> Self {
        self.cell = cell;
        self
    }

    /// The same shape with token ids of a `vocab`-token vocabulary as its inputs.
    pub fn with_vocab(mut self, vocab: Option<usize>) -> Self {
        self.vocab = vocab;
        self
    }

    /// Tokens (T·B) one forward or training step processes.
    pub fn tokens(&self) -> usize {
        self.t.saturating_mul(self.b)
    }

    /// Floating-point operations of one forward: 2·T·B·(G·H·(I + H) + H·O), G the
    /// cell's gates (the pointwise cell math is not counted).
    pub fn forward_flops(&self) -> f64 {
        2.0 * self.tokens() as f64 * self.config().forward_macs_per_token() as f64
    }

    /// Of one training step: the forward plus a backward of twice its products.
    pub fn train_flops(&self) -> f64 {
        3.0 * self.forward_flops()
    }

    /// Checks that the model is valid and that no buffer the bench draws on the host
    /// (x, targets, hidden states) holds more than 2^27 values.
    pub fn check(&self) -> Result<()> {
        self.config().validate()?;
        let too_big = [self.i, self.cell.gates() * self.h + 1, self.o]
            .iter()
            .any(|&w| {
                self.t
                    .checked_mul(self.b)
                    .and_then(|tb| tb.checked_mul(w))
                    .is_none_or(|n| n > 1 << 27)
            });
        if self.t == 0 || self.b == 0 || too_big {
            return Err(Error::BadShapeList(format!(
                "{self} (T·B·max(I, G·H+1, O) must be at most 2^27 values)"
            )));
        }
        Ok(())
    }

    /// Parses "B,T,I,H,O;B,T,I,H,O".
    pub fn parse_list(s: &str) -> Result<Vec<Shape>> {
        let shapes = s
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Shape::from_str)
            .collect::<Result<Vec<_>>>()?;
        if shapes.is_empty() {
            return Err(Error::BadShapeList(s.to_string()));
        }
        Ok(shapes)
    }
}

impl FromStr for Shape {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let v: Vec<usize> = s
            .split(',')
            .map(|x| x.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::BadShapeList(s.to_string()))?;
        let shape = match v[..] {
            [b, t, i, h, o] if v.iter().all(|&x| x > 0) => Shape {
                b,
                t,
                i,
                h,
                o,
                cell: CellKind::Rnn,
                vocab: None,
            },
            _ => return Err(Error::BadShapeList(s.to_string())),
        };
        shape.check()?;
        Ok(shape)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{},{}", self.b, self.t, self.i, self.h, self.o)
    }
}

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Untimed calls first.
    pub warmup: usize,
    /// At most this many timed calls ...
    pub max_reps: usize,
    /// ... and no more once this much time is spent (after at least `min_reps`).
    pub budget: Duration,
    pub min_reps: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 2,
            max_reps: 50,
            budget: Duration::from_secs(3),
            min_reps: 3,
        }
    }
}

/// Median seconds of `f` over repetitions as `opts` says; returns (median, reps).
pub fn median_secs(opts: &BenchOptions, mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    for _ in 0..opts.warmup {
        f()?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < opts.max_reps.max(1)
        && (times.len() < opts.min_reps.max(1) || start.elapsed() < opts.budget)
    {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok((median(&mut times), times.len()))
}

/// The median of `values` (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One line of the bench table.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub shape: Shape,
    /// "gpu" or "cpu" (the f64 CPU reference).
    pub device: &'static str,
    pub adapter: String,
    /// Which implementation ran: the recurrence path and gemm kernel, or the reference.
    pub path: String,
    pub forward_ms: f64,
    pub train_ms: f64,
    pub dispatches_per_step: usize,
    pub submits_per_step: usize,
    /// Median host microseconds to record and submit one training step (GPU only).
    pub host_record_us: Option<f64>,
    /// Peak bytes of device buffers while training (GPU only).
    pub peak_device_bytes: Option<u64>,
    pub reps: usize,
}

impl BenchRow {
    pub fn forward_tokens_per_s(&self) -> f64 {
        self.shape.tokens() as f64 / (self.forward_ms / 1e3)
    }

    pub fn train_tokens_per_s(&self) -> f64 {
        self.shape.tokens() as f64 / (self.train_ms / 1e3)
    }

    pub fn train_gflops(&self) -> f64 {
        self.shape.train_flops() / (self.train_ms / 1e3) / 1e9
    }

    pub fn forward_gflops(&self) -> f64 {
        self.shape.forward_flops() / (self.forward_ms / 1e3) / 1e9
    }

    /// One JSON object (the keys `benches/pytorch_baseline.py --json` also prints),
    /// rates to 0.1, milliseconds to 1e-4, GFLOP/s to 1e-3; None as null.
    pub fn to_json(&self) -> String {
        let s = self.shape;
        to_json_line(&BenchJson {
            shape: [s.b, s.t, s.i, s.h, s.o],
            cell: s.cell.name(),
            vocab: s.vocab,
            device: self.device,
            adapter: &self.adapter,
            path: &self.path,
            forward_tokens_per_s: round(self.forward_tokens_per_s(), 1),
            train_tokens_per_s: round(self.train_tokens_per_s(), 1),
            forward_ms: round(self.forward_ms, 4),
            train_ms: round(self.train_ms, 4),
            forward_gflops: round(self.forward_gflops(), 3),
            train_gflops: round(self.train_gflops(), 3),
            dispatches_per_step: self.dispatches_per_step,
            submits_per_step: self.submits_per_step,
            host_record_us: self.host_record_us.map(|us| round(us, 1)),
            peak_device_bytes: self.peak_device_bytes,
            reps: self.reps,
        })
    }
}

/// The fields of [`BenchRow::to_json`], in its order.
#[derive(Serialize)]
struct BenchJson<'a> {
    shape: [usize; 5],
    cell: &'a str,
    /// The inputs' vocabulary (token ids through an embedding); null for features.
    vocab: Option<usize>,
    device: &'a str,
    adapter: &'a str,
    path: &'a str,
    forward_tokens_per_s: f64,
    train_tokens_per_s: f64,
    forward_ms: f64,
    train_ms: f64,
    forward_gflops: f64,
    train_gflops: f64,
    dispatches_per_step: usize,
    submits_per_step: usize,
    host_record_us: Option<f64>,
    peak_device_bytes: Option<u64>,
    reps: usize,
}

/// `x` rounded to `digits` decimals (the precision the JSON lines print).
fn round(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

/// serde_json's output with the separators of Python's `json.dumps` (", " and ": "), so
/// the bench's lines read like the PyTorch baseline's.
struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `value` as one line of JSON, with Python's `json.dumps` separators. Non-finite
/// floats become null.
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    // Writing plain data into a Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    to_json_line(s)
}

/// The `bench --profile --json` line: `{"profile": true, "shape": [B, T, I, H, O],
/// "gpu_ms": {part: ms, ...}}`, parts in the order given, milliseconds to 1e-4.
pub fn profile_json(shape: Shape, parts: &[(&str, f64)]) -> String {
    struct Parts<'a>(&'a [(&'a str, f64)]);
    impl Serialize for Parts<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, ms) in self.0 {
                map.serialize_entry(k, &round(*ms, 4))?;
            }
            map.end()
        }
    }
    #[derive(Serialize)]
    struct Profile<'a> {
        profile: bool,
        shape: [usize; 5],
        gpu_ms: Parts<'a>,
    }
    to_json_line(&Profile {
        profile: true,
        shape: [shape.b, shape.t, shape.i, shape.h, shape.o],
        gpu_ms: Parts(parts),
    })
}

/// The `bench --matmul --json` line: `{"matmul": n, "adapter": ..., "gemm": ..., "ms": ...,
/// "gflops": ...}`, milliseconds to 1e-4 and GFLOP/s to 1e-3.
pub fn matmul_json(gpu: &Gpu, row: &MatmulRow) -> String {
    #[derive(Serialize)]
    struct Matmul {
        matmul: usize,
        adapter: String,
        gemm: String,
        ms: f64,
        gflops: f64,
    }
    to_json_line(&Matmul {
        matmul: row.n,
        adapter: gpu.adapter().to_string(),
        gemm: gpu.gemm().to_string(),
        ms: round(row.ms, 4),
        gflops: round(row.gflops(), 3),
    })
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The batch every measurement uses: uniform x and targets in [-1, 1), weights 1. With a
/// vocabulary, token ids instead of x, skewed as in text: id ⌊u³·V⌋ for u uniform in
/// [0, 1), so that a few ids fill much of the batch (the embedding backward's longest
/// sums) and many appear once or never.
pub fn batch(shape: Shape) -> Result<Batch> {
    shape.check()?;
    let Shape { b, t, i, o, .. } = shape;
    let targets = Targets::Values(uniform(t * b * o, 2));
    match shape.vocab {
        Some(v) => {
            let ids = uniform(t * b, 1)
                .iter()
                .map(|&u| {
                    let r = (u + 1.0) / 2.0;
                    ((r * r * r * v as f32) as u32).min(v as u32 - 1)
                })
                .collect();
            Batch::from_tokens(t, b, ids, targets)
        }
        None => Batch::new(t, b, uniform(t * b * i, 1), targets),
    }
}

/// The training setup every measurement uses, like the PyTorch baseline: MSE and plain
/// SGD (lr 1e-3, momentum 0), no clipping.
pub fn train_config() -> TrainConfig {
    let mut cfg = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Sgd, 1e-3),
        LossKind::Mse,
    );
    cfg.clip_norm = None;
    cfg
}

/// Forward and training-step throughput of the GPU model at `shape`.
pub fn bench_gpu(gpu: &Gpu, shape: Shape, opts: &BenchOptions) -> Result<BenchRow> {
    shape.check()?;
    let cfg = shape.config();
    let batch = batch(shape)?;
    let x = match &batch.tokens {
        Some(_) => None,
        None => Some(gpu.tensor(&[shape.t, shape.b, shape.i], &batch.x)?),
    };

    let mut rnn = Rnn::new(gpu, cfg.clone(), 0)?;
    let (forward_s, fwd_reps) = median_secs(opts, || {
        if let Some(ids) = &batch.tokens {
            rnn.forward_tokens(ids, [shape.t, shape.b], None, None)?;
        } else if let Some(x) = &x {
            rnn.forward(x, None)?;
        }
        gpu.wait()
    })?;
    let subgroup = if gpu.subgroup_recurrence() {
        ", subgroup forward"
    } else {
        ""
    };
    let path = match rnn.path(shape.t, shape.b)? {
        p @ crate::RecurrencePath::Stepwise => {
            format!(
                "{p} ({} rows/workgroup{subgroup}), gemm {}",
                gpu.stepwise_rows(),
                gpu.gemm()
            )
        }
        p => format!("{p}{subgroup}, gemm {}", gpu.gemm()),
    };
    drop(rnn);

    gpu.reset_peak_memory();
    let mut trainer = Trainer::new(Rnn::new(gpu, cfg, 0)?, train_config())?;
    let mut host_us = Vec::new();
    let (train_s, train_reps) = median_secs(opts, || {
        trainer.step(&batch)?;
        host_us.push(trainer.last_host_record_us());
        Ok(())
    })?;
    let stats = trainer.last_step_stats();
    let peak = gpu.memory().peak_bytes;
    Ok(BenchRow {
        shape,
        device: "gpu",
        adapter: gpu.adapter().to_string(),
        path,
        forward_ms: forward_s * 1e3,
        train_ms: train_s * 1e3,
        dispatches_per_step: stats.dispatches,
        submits_per_step: stats.submits,
        host_record_us: Some(median(&mut host_us)),
        peak_device_bytes: Some(peak),
        reps: fwd_reps.min(train_reps),
    })
}

/// The same on the f64 CPU reference (single-threaded plain loops: the yardstick for
/// correctness, not a tuned CPU implementation).
pub fn bench_cpu(shape: Shape, opts: &BenchOptions) -> Result<BenchRow> {
    shape.check()?;
    let cfg = shape.config();
    let batch = batch(shape)?;
    let params = cfg.init_params(0);
    let p64 = params.to_f64();
    let x64: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
    let dims = [shape.t, shape.b, shape.i];
    let (forward_s, fwd_reps) = median_secs(opts, || match &batch.tokens {
        Some(ids) => {
            crate::cpu::forward_tokens(&cfg, &p64, ids, [shape.t, shape.b], None, None, None)
                .map(|_| ())
        }
        None => crate::cpu::forward(&cfg, &p64, &x64, &dims, None, None).map(|_| ()),
    })?;
    let mut trainer = CpuTrainer::new(cfg, &params, train_config())?;
    let (train_s, train_reps) = median_secs(opts, || trainer.step(&batch).map(|_| ()))?;
    Ok(BenchRow {
        shape,
        device: "cpu",
        adapter: "CPU reference (f64, one thread)".into(),
        path: "reference".into(),
        forward_ms: forward_s * 1e3,
        train_ms: train_s * 1e3,
        dispatches_per_step: 0,
        submits_per_step: 0,
        host_record_us: None,
        peak_device_bytes: None,
        reps: fwd_reps.min(train_reps),
    })
}

/// One matrix-product measurement.
#[derive(Debug, Clone)]
pub struct MatmulRow {
    pub n: usize,
    pub ms: f64,
    pub reps: usize,
}

impl MatmulRow {
    pub fn gflops(&self) -> f64 {
        2.0 * (self.n as f64).powi(3) / (self.ms / 1e3) / 1e9
    }
}

/// C = A·B for square n×n row-major matrices with the crate's gemm kernel, one dispatch
/// per submit, waiting for each.
pub fn bench_matmul(gpu: &Gpu, n: usize, opts: &BenchOptions) -> Result<MatmulRow> {
    let mut run = bench_matmul_plan(gpu, n)?;
    let (secs, reps) = median_secs(opts, &mut run)?;
    Ok(MatmulRow {
        n,
        ms: secs * 1e3,
        reps,
    })
}

/// Builds the n×n×n product once; each call of the returned closure runs it and waits.
pub fn bench_matmul_plan(gpu: &Gpu, n: usize) -> Result<impl FnMut() -> Result<()> + '_> {
    if n == 0 || n > 1 << 14 {
        return Err(Error::TooLarge {
            what: "matmul size n",
            value: n as u64,
            limit: 1 << 14,
            why: "square products from 1 to 16384",
        });
    }
    let a = gpu.tensor(&[n, n], &uniform(n * n, 3))?;
    let b = gpu.tensor(&[n, n], &uniform(n * n, 4))?;
    let c = GpuTensor::zeros(gpu, &[n, n])?;
    let mut plan = PlanBuilder::new(gpu);
    plan.gemm(GemmSpec::new(
        n,
        n,
        n,
        Operand::rows(a.buffer(), 0, n),
        Operand::rows(b.buffer(), 0, n),
        Operand::rows(c.buffer(), 0, n),
    ))?;
    let plan = plan.finish()?;
    let tensors = (a, b, c);
    Ok(move || {
        let _keep = &tensors;
        let mut rec = Recorder::new(gpu, "matmul bench");
        rec.plans(&[&plan])?;
        rec.submit()?;
        gpu.wait()
    })
}

/// GPU milliseconds of each part of one training step at `shape` (after one untimed
/// step), from timestamp queries: one compute pass per dispatch, so the parts add up to
/// more than a normal step, whose dispatches share a pass.
pub fn profile_gpu(gpu: &Gpu, shape: Shape) -> Result<Vec<(&'static str, f64)>> {
    shape.check()?;
    let cfg = shape.config();
    let batch = batch(shape)?;
    let mut trainer = Trainer::new(Rnn::new(gpu, cfg, 0)?, train_config())?;
    trainer.step(&batch)?;
    trainer.profile_step(&batch)
}

/// The gemm kernels `wgpu-rnn tune` tries: the register kernel in two workgroup shapes and
/// the tiled one in several tiles, with and without split-K. Those a device cannot run
/// are skipped.
pub const TUNE_CANDIDATES: [&str; 8] = [
    "register:8x8",
    "register:16x16",
    "tiled:64x64x16/split8",
    "tiled:64x64x16",
    "tiled:64x64x8/split8",
    "tiled:32x32x16/split8",
    "tiled:32x64x16/split8",
    "tiled:128x64x8/split8",
];

/// One candidate's result in [`tune`]: median training-step milliseconds summed over the
/// shapes, or why it could not run.
#[derive(Debug, Clone)]
pub struct TuneRow {
    pub gemm: GemmTuning,
    /// Batch rows of a stepwise-recurrence workgroup.
    pub stepwise_rows: usize,
    pub result: std::result::Result<f64, String>,
}

impl TuneRow {
    /// The candidate as `tune` prints it and the tuning file records it.
    pub fn label(&self) -> String {
        format!("{}, stepwise {} rows", self.gemm, self.stepwise_rows)
    }
}

/// Times a training step at each of `shapes` with every candidate gemm kernel on the
/// adapter `options` picks (one device per candidate), then the fastest with the other
/// stepwise-recurrence block, and returns the tuning file for the fastest of all, with
/// every row.
pub fn tune(
    options: &GpuOptions,
    shapes: &[Shape],
    opts: &BenchOptions,
    mut report: impl FnMut(&TuneRow),
) -> Result<(TuningFile, Vec<TuneRow>)> {
    for s in shapes {
        s.check()?;
    }
    let mut rows: Vec<TuneRow> = Vec::new();
    let mut adapter = None;
    let mut time = |options: GpuOptions, gemm: GemmTuning| {
        // What the device would use; 0 (reported with the error) if none was made.
        let mut stepwise_rows = options.stepwise_rows.unwrap_or(0);
        let result = Gpu::with_options(&options).and_then(|gpu| {
            adapter.get_or_insert_with(|| gpu.adapter().clone());
            stepwise_rows = gpu.stepwise_rows();
            shapes.iter().try_fold(0.0, |sum, &shape| {
                let mut trainer = Trainer::new(Rnn::new(&gpu, shape.config(), 0)?, train_config())?;
                let batch = batch(shape)?;
                let (s, _) = median_secs(opts, || trainer.step(&batch).map(|_| ()))?;
                Ok(sum + s * 1e3)
            })
        });
        let row = TuneRow {
            gemm,
            stepwise_rows,
            result: result.map_err(|e| e.to_string()),
        };
        report(&row);
        row
    };
    for text in TUNE_CANDIDATES {
        let gemm: GemmTuning = text.parse()?;
        rows.push(time(options.clone().with_gemm(gemm), gemm));
    }
    let fastest = |rows: &[TuneRow]| {
        rows.iter()
            .filter_map(|r| {
                r.result
                    .as_ref()
                    .ok()
                    .map(|ms| (r.gemm, r.stepwise_rows, *ms))
            })
            .min_by(|a, b| a.2.total_cmp(&b.2))
    };
    if let Some((gemm, used, _)) = fastest(&rows) {
        let other = if used == 4 { 16 } else { 4 };
        let options = options.clone().with_gemm(gemm).with_stepwise_rows(other);
        rows.push(time(options, gemm));
    }
    let (Some(adapter), Some((gemm, stepwise_rows, _))) = (adapter, fastest(&rows)) else {
        return Err(Error::BadKernel(format!(
            "no gemm kernel could run here: {}",
            rows.iter()
                .map(|r| format!("{}: {}", r.gemm, r.result.as_ref().err().map_or("", |e| e)))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    };
    let mut file = TuningFile::new(&adapter, gemm);
    file.stepwise_rows = Some(stepwise_rows);
    file.measured = rows
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|ms| (r.label(), *ms)))
        .collect();
    file.shapes = shapes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(";");
    file.cell = shapes.first().map_or("rnn", |s| s.cell.name()).into();
    Ok((file, rows))
}
