//! Forecasts that beat the baselines: the default series task (differencing chosen by
//! the KPSS test, the season estimated) trained on synthetic series with a trend and with
//! two stationary cycles, scored by a rolling-origin backtest over the held-out rows at a
//! horizon of 2.5 seasons; gaps filled; bad options refused with the numbers.

mod common;

use wgpu_rnn::data::seasonal::Difference;
use wgpu_rnn::data::series::{Fill, Series, SeriesData, SeriesOptions};
use wgpu_rnn::data::synthetic::{series, series_csv, SeriesKind};
use wgpu_rnn::data::Task;
use wgpu_rnn::infer::series::{backtest, rolling_origins};
use wgpu_rnn::{
    CellKind, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Train, TrainConfig, Trainer,
};

const ROWS: usize = 600;

/// Trains the default series task on `kind` (GRU H 32, 600 Adam steps, seed 1) and returns
/// the backtest's mean scores over 10 origins and the task's choices.
fn default_model(
    kind: SeriesKind,
) -> (wgpu_rnn::data::seasonal::Scores, Difference, Option<usize>) {
    let values = series(kind, ROWS, 1);
    let data = SeriesData::from_csv_str(&series_csv(&values), kind.name(), None, None).unwrap();
    let task = Series::new(&data).unwrap();
    let norm = task.normalization().clone();
    let task = Task::Series(task);
    let cfg = RnnConfig::new(1, 32, 1).with_cell(CellKind::Gru);
    let tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        LossKind::Mse,
    );
    let gpu = common::gpu();
    let mut trainer = Trainer::new(Rnn::new(gpu, cfg.clone(), 1).unwrap(), tc).unwrap();
    for step in 0..600 {
        let (batch, _) = task.batch(1, step, 48, 32).unwrap();
        trainer.step(&batch).unwrap();
    }
    let p = norm.season.expect("a season");
    let horizon = p * 5 / 2;
    let origins = rolling_origins(ROWS, horizon, 10);
    let params = trainer.params().unwrap();
    let (_, s) = backtest(Some(gpu), &cfg, &params, &norm, &data, horizon, &origins).unwrap();
    eprintln!(
        "{}: {:?}, season {:?}: {}",
        kind.name(),
        norm.difference,
        norm.season,
        s.line()
    );
    (s, norm.difference, norm.season)
}

/// The trended series: the default differences it (KPSS) and beats seasonal naive and
/// naive by at least 30 % in MAE at 30 steps (2.5 seasons).
#[test]
fn a_trend_with_a_season_beats_both_baselines_by_default() {
    let (s, difference, season) = default_model(SeriesKind::TrendSeason);
    assert_eq!((difference, season), (Difference::First, Some(12)));
    assert!(s.model.mae < 0.7 * s.seasonal_naive.mae, "{}", s.line());
    assert!(s.model.mae < 0.7 * s.naive.mae, "{}", s.line());
}

/// Two stationary cycles (12 and 30 steps): the default learns levels, finds the 12-step
/// season, and beats seasonal naive by at least 30 % at 30 steps (2.5 seasons).
#[test]
fn two_stationary_cycles_beat_seasonal_naive_by_default() {
    let (s, difference, season) = default_model(SeriesKind::TwoCycles);
    assert_eq!((difference, season), (Difference::None, Some(12)));
    assert!(s.model.mae < 0.7 * s.seasonal_naive.mae, "{}", s.line());
}

/// A head of 5 steps at once on first differences: the GPU trainer steps like the CPU
/// reference (same losses, gradient norms and weights), and forecasts agree.
#[test]
fn a_multi_step_head_trains_on_the_gpu_like_the_reference() {
    use wgpu_rnn::CpuTrainer;
    let values = series(SeriesKind::TrendSeason, 300, 4);
    let data = SeriesData::from_csv_str(&series_csv(&values), "t.csv", None, None).unwrap();
    let options = SeriesOptions {
        difference: Some(Difference::First),
        season: None,
        ahead: 5,
    };
    let task = Series::with_options(&data, options).unwrap();
    let norm = task.normalization().clone();
    let task = Task::Series(task);
    assert_eq!(task.io(), (1, 5));
    let cfg = RnnConfig::new(1, 12, 5).with_cell(CellKind::Lstm);
    let mut tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        LossKind::Mse,
    );
    tc.clip_norm = Some(0.5);
    let gpu = common::gpu();
    let params = cfg.init_params(3);
    let mut g = Trainer::new(
        Rnn::from_params(gpu, cfg.clone(), &params).unwrap(),
        tc.clone(),
    )
    .unwrap();
    let mut c = CpuTrainer::new(cfg.clone(), &params, tc).unwrap();
    for step in 0..6 {
        let (batch, _) = task.batch(2, step, 20, 6).unwrap();
        let wgpu_rnn::train::Targets::Values(y) = &batch.targets else {
            panic!("values")
        };
        assert_eq!(y.len(), 20 * 6 * 5);
        let (a, b) = (g.step(&batch).unwrap(), c.step(&batch).unwrap());
        assert!(
            (a.loss - b.loss).abs() <= 1e-5 + 1e-4 * b.loss,
            "{a:?} {b:?}"
        );
        assert!((a.grad_norm - b.grad_norm).abs() <= 1e-5 + 1e-4 * b.grad_norm);
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    for (a, b) in gp.tensors().iter().zip(cp.tensors()) {
        common::assert_close("weights", a, &common::widen(b), 1e-5, 1e-3);
    }
    let f_gpu = wgpu_rnn::infer::series::forecast(Some(gpu), &cfg, &gp, &norm, &data, 12).unwrap();
    let f_cpu = wgpu_rnn::infer::series::forecast(None, &cfg, &gp, &norm, &data, 12).unwrap();
    common::assert_close(
        "forecast",
        &f_gpu.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &f_cpu,
        1e-3,
        1e-4,
    );
    // A one-output model cannot forecast with a five-step normalization.
    let one = RnnConfig::new(1, 12, 1).with_cell(CellKind::Lstm);
    let e = wgpu_rnn::infer::series::forecast(None, &one, &one.init_params(1), &norm, &data, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("one output per step its head predicts (5)"),
        "{e}"
    );
}

#[test]
fn bad_seasons_short_histories_and_empty_columns_name_the_numbers() {
    let values = series(SeriesKind::TrendSeason, 100, 2);
    let data = SeriesData::from_csv_str(&series_csv(&values), "s.csv", None, None).unwrap();
    let with = |season, difference| {
        Series::with_options(
            &data,
            SeriesOptions {
                difference,
                season,
                ahead: 1,
            },
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    // 90 training rows: a season is 2 to 45 rows.
    assert!(with(Some(1), None).contains("--season 1") && with(Some(1), None).contains("90 rows"));
    assert!(
        with(Some(46), None).contains("at most 45"),
        "{}",
        with(Some(46), None)
    );
    let m = with(None, Some(Difference::Seasonal));
    assert!(m.is_empty() || m.contains("--season"), "{m}");
    // A column with nothing in it, even with --fill.
    let e = SeriesData::from_reader_filled(
        "t,v\n0,\n1,\n".as_bytes(),
        "gaps.csv",
        Some("v"),
        None,
        Fill::Linear,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("all 2 of its cells are missing"), "{e}");
}
