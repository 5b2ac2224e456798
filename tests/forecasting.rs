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

#[test]
fn bad_seasons_short_histories_and_empty_columns_name_the_numbers() {
    let values = series(SeriesKind::TrendSeason, 100, 2);
    let data = SeriesData::from_csv_str(&series_csv(&values), "s.csv", None, None).unwrap();
    let with = |season, difference| {
        Series::with_options(&data, SeriesOptions { difference, season })
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
