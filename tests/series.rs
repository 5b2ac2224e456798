//! CSV series end to end: loading from a file, forecasts on hand-made models (the CPU
//! reference and the GPU), the forecast CSV, and a small trained model that beats
//! repeating the last value.

mod common;

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_rnn::data::series::{save_forecast, write_forecast, Normalization, Series, SeriesData};
use wgpu_rnn::data::Task;
use wgpu_rnn::infer::series::forecast;
use wgpu_rnn::{
    Activation, CellKind, CpuTrainer, LossKind, OptimizerConfig, OptimizerKind, Params, RnnConfig,
    Train, TrainConfig,
};

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-series-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `n` rows of hourly data: a timestamp, 10·sin(2π r/24) + 50 plus uniform noise of
/// ±`noise`, and a temperature column.
fn seasonal(n: usize, noise: f64, seed: u64) -> (String, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut csv = String::from("time,load,temperature\n");
    let mut load = Vec::new();
    for r in 0..n {
        let v = 50.0
            + 10.0 * (2.0 * std::f64::consts::PI * r as f64 / 24.0).sin()
            + noise * rng.random_range(-1.0..1.0);
        load.push(v);
        csv += &format!(
            "2024-01-{:02}T{:02}:00,{v:.4},{:.1}\n",
            r / 24 + 1,
            r % 24,
            15.0 + (r % 7) as f64
        );
    }
    (csv, load)
}

/// An Elman model of one unit: h = act(w_ih·x + w_hh·h + b), y = w_hy·h + b_y.
fn tiny(
    activation: Activation,
    w_ih: f32,
    w_hh: f32,
    b: f32,
    w_hy: f32,
    b_y: f32,
) -> (RnnConfig, Params<Vec<f32>>) {
    let cfg = RnnConfig::new(1, 1, 1).with_activation(activation);
    let mut p = cfg.init_params(0);
    let c = &mut p.cells[0];
    c.w_ih = vec![w_ih];
    c.w_hh = vec![w_hh];
    c.b_ih = Some(vec![b]);
    c.b_hh = Some(vec![0.0]);
    p.w_hy = vec![w_hy];
    p.b_y = vec![b_y];
    (cfg, p)
}

fn history(csv: &str) -> (SeriesData, Normalization) {
    let data = SeriesData::from_csv(&temp_file("history.csv", csv), None, None).unwrap();
    let norm = Normalization::fit(&data);
    (data, norm)
}

#[test]
fn a_file_loads_with_its_date_column_ignored_and_makes_a_series_task() {
    let (csv, load) = seasonal(100, 0.0, 1);
    let path = temp_file("load.csv", &csv);
    let data = SeriesData::from_csv(&path, Some("load"), None).unwrap();
    assert_eq!(
        (data.target(), data.inputs()),
        ("load", &["load".to_string()][..])
    );
    assert_eq!(data.rows(), 100);
    assert!((data.target_values()[7] - load[7]).abs() < 1e-4);
    let task = Task::Series(Series::new(&data).unwrap());
    assert_eq!((task.kind().name(), task.io()), ("series", (1, 1)));
    // Defaults: the last numeric column is the target.
    let d = SeriesData::from_csv(&path, None, None).unwrap();
    assert_eq!(d.target(), "temperature");
    let e = SeriesData::from_csv(&path.with_extension("missing"), None, None).unwrap_err();
    assert!(e.to_string().contains("load.missing"), "{e}");
}

/// A model whose output is the constant b_y forecasts mean + b_y·std of the training part
/// at every step.
#[test]
fn a_constant_model_forecasts_in_original_units() {
    let (csv, _) = seasonal(200, 0.5, 2);
    let (data, norm) = history(&csv);
    let (cfg, p) = tiny(Activation::Tanh, 0.3, 0.2, 0.1, 0.0, 1.5);
    let f = forecast(None, &cfg, &p, &norm, &data, 5).unwrap();
    let expected = norm.target.mean + 1.5 * norm.target.std;
    assert_eq!(f.len(), 5);
    for v in &f {
        assert!((v - expected).abs() < 1e-9, "{f:?} vs {expected}");
    }
}

/// With relu and unit weights the model echoes its (positive) input: the forecast repeats
/// the last row's value, which checks normalization, warm-up on the last row and
/// de-normalization together.
#[test]
fn an_echo_model_repeats_the_last_value_in_original_units() {
    let mut csv = String::from("v\n");
    for r in 0..60 {
        csv += &format!("{}\n", 1000.0 + (r % 5) as f64 * 3.0);
    }
    csv += "1020.5\n";
    let (data, norm) = history(&csv);
    let (cfg, p) = tiny(Activation::Relu, 1.0, 0.0, 0.0, 1.0, 0.0);
    let f = forecast(None, &cfg, &p, &norm, &data, 3).unwrap();
    for v in &f {
        assert!((v - 1020.5).abs() < 1e-9, "{f:?}");
    }
    // A model that halves its input decays geometrically towards the mean.
    let (cfg, p) = tiny(Activation::Relu, 1.0, 0.0, 0.0, 0.5, 0.0);
    let f = forecast(None, &cfg, &p, &norm, &data, 3).unwrap();
    let z = norm.target.normalize(1020.5);
    for (k, v) in f.iter().enumerate() {
        let want = norm.target.denormalize(z * 0.5f64.powi(k as i32 + 1));
        assert!((v - want).abs() < 1e-9, "step {}: {v} vs {want}", k + 1);
    }
}

#[test]
fn forecasts_refuse_other_inputs_bidirectional_models_and_other_columns() {
    let (csv, _) = seasonal(60, 0.1, 3);
    let path = temp_file("two.csv", &csv);
    let inputs = ["load".to_string(), "temperature".to_string()];
    let two = SeriesData::from_csv(&path, Some("load"), Some(&inputs)).unwrap();
    let norm2 = Normalization::fit(&two);
    let cfg2 = RnnConfig::new(2, 4, 1);
    let e = forecast(None, &cfg2, &cfg2.init_params(1), &norm2, &two, 4).unwrap_err();
    assert!(
        e.to_string().contains("\"temperature\"") && e.to_string().contains("future"),
        "{e}"
    );
    let one = SeriesData::from_csv(&path, Some("load"), None).unwrap();
    let norm = Normalization::fit(&one);
    let bi = RnnConfig::new(1, 4, 1).with_bidirectional(true);
    let e = forecast(None, &bi, &bi.init_params(1), &norm, &one, 4).unwrap_err();
    assert!(e.to_string().contains("bidirectional"), "{e}");
    let cfg = RnnConfig::new(1, 4, 1);
    let other = SeriesData::from_csv(&path, Some("temperature"), None).unwrap();
    let e = forecast(None, &cfg, &cfg.init_params(1), &norm, &other, 4).unwrap_err();
    assert!(e.to_string().contains("model's columns"), "{e}");
    let e = forecast(None, &cfg, &cfg.init_params(1), &norm, &one, 0).unwrap_err();
    assert!(e.to_string().contains("horizon"), "{e}");
}

#[test]
fn the_forecast_csv_has_a_step_forecast_header_and_steps_from_1() {
    let mut out = Vec::new();
    write_forecast(&mut out, &[1.5, -2.25, 1e-7]).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "step,forecast\n1,1.5\n2,-2.25\n3,0.0000001\n"
    );
    let path = temp_file("forecast.csv", "");
    let values = [50.123456789, 49.0];
    save_forecast(&path, &values).unwrap();
    let mut r = csv::Reader::from_path(&path).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["step", "forecast"]);
    let rows: Vec<(usize, f64)> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].parse().unwrap(), rec[1].parse().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [(1, values[0]), (2, values[1])],
        "values round-trip exactly"
    );
    // Named columns side by side; a shorter one leaves its cells empty.
    let mut out = Vec::new();
    wgpu_rnn::data::series::write_columns(
        &mut out,
        &[("forecast", &[1.0, 2.0]), ("naive", &[3.0])],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "step,forecast,naive\n1,1,3\n2,2,\n"
    );
}

/// The GPU forecast of a random GRU (warm-up over more than one GPU chunk of rows, then
/// 30 fed-back steps) agrees with the CPU reference's.
#[test]
fn gpu_forecast_agrees_with_the_cpu_reference() {
    let (csv, _) = seasonal(600, 0.5, 4);
    let (data, norm) = history(&csv);
    for cell in [CellKind::Rnn, CellKind::Gru, CellKind::Lstm] {
        let cfg = RnnConfig::new(1, 12, 1).with_cell(cell).with_layers(2);
        let p = cfg.init_params(7);
        let cpu = forecast(None, &cfg, &p, &norm, &data, 30).unwrap();
        let gpu = forecast(Some(common::gpu()), &cfg, &p, &norm, &data, 30).unwrap();
        let gpu32: Vec<f32> = gpu.iter().map(|&v| v as f32).collect();
        // f32 rounding over 600 warm-up steps and 30 fed-back ones, in units of ~10.
        common::assert_close(&format!("{cell:?} forecast"), &gpu32, &cpu, 1e-3, 1e-4);
    }
}

/// Trains a small GRU on the CPU reference on a noisy daily cycle and forecasts the next
/// 24 hours: it must beat repeating the last value by a wide margin.
#[test]
fn a_trained_model_forecasts_a_seasonal_series_better_than_the_last_value() {
    let (csv, load) = seasonal(504, 0.5, 5);
    let cut = csv.lines().take(481).collect::<Vec<_>>().join("\n") + "\n";
    let data = SeriesData::from_csv(&temp_file("train.csv", &cut), None, None).unwrap();
    let data = {
        // The last numeric column is temperature; the target is load.
        assert_eq!(data.target(), "temperature");
        SeriesData::from_csv(&temp_file("train.csv", &cut), Some("load"), None).unwrap()
    };
    assert_eq!(data.rows(), 480);
    let series = Series::new(&data).unwrap();
    let norm = series.normalization().clone();
    let task = Task::Series(series);
    let cfg = RnnConfig::new(1, 16, 1).with_cell(CellKind::Gru);
    let mut tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.02),
        LossKind::Mse,
    );
    tc.stateful = task.stateful();
    let mut trainer = CpuTrainer::new(cfg.clone(), &cfg.init_params(11), tc).unwrap();
    let (t, b) = (36, 16);
    let val = task.validation(11, t, b).unwrap();
    let before = trainer.evaluate(&val).unwrap();
    for step in 0..250 {
        let (batch, _) = task.batch(11, step, t, b).unwrap();
        trainer.step(&batch).unwrap();
    }
    let after = trainer.evaluate(&val).unwrap();
    assert!(after < 0.1 * before, "validation MSE {before} -> {after}");
    let f = forecast(None, &cfg, &trainer.params().unwrap(), &norm, &data, 24).unwrap();
    let truth = &load[480..504];
    let mae = |pred: &dyn Fn(usize) -> f64| {
        (0..24).map(|k| (pred(k) - truth[k]).abs()).sum::<f64>() / 24.0
    };
    let model = mae(&|k| f[k]);
    let naive = mae(&|_| load[479]);
    eprintln!("validation MSE {before:.4} -> {after:.4}; 24-step MAE model {model:.3}, last value {naive:.3}");
    assert!(
        model < 0.5 * naive,
        "model MAE {model} vs last-value MAE {naive}"
    );
}
