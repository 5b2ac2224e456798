//! The forecasting table of README ("Your own time series"): three synthetic series (a
//! trend plus a season, a random walk, two stationary cycles; `data::synthetic::series`),
//! each trained with every `--difference` option as `wgpu-rnn train --task series` would
//! (GRU, H 32, T 48, B 32, Adam 0.01, clip 5), and with `auto`'s choice again with a head
//! that predicts the whole horizon at once (`--ahead`), then scored by a rolling-origin
//! backtest over the held-out rows at a horizon of about 2.5 seasons, beside naive and
//! seasonal naive forecasts from the same origins. Prints a Markdown table.
//!
//!   cargo run --release --example forecast_table [-- STEPS [SEED]]

use wgpu_rnn::data::seasonal::{self, Difference};
use wgpu_rnn::data::series::{Series, SeriesData, SeriesOptions};
use wgpu_rnn::data::synthetic::{series, series_csv, SeriesKind};
use wgpu_rnn::data::Task;
use wgpu_rnn::infer::series::{backtest, rolling_origins};
use wgpu_rnn::{
    CellKind, Gpu, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Train, TrainConfig,
    Trainer,
};

/// Rows of each series; the last 10 % are held out.
const ROWS: usize = 600;
/// Backtest origins, one row apart, the last `horizon` rows before the end.
const ORIGINS: usize = 10;

fn main() -> wgpu_rnn::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let steps: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(800);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let gpu = Gpu::new()?;
    println!("# {} steps, seed {seed}, {}", steps, gpu.adapter());
    println!("| series | horizon | difference | model MAE | naive MAE | seasonal naive MAE |");
    println!("|---|---:|---|---:|---:|---:|");
    for kind in SeriesKind::ALL {
        let values = series(kind, ROWS, seed);
        let data = SeriesData::from_csv_str(&series_csv(&values), kind.name(), None, None)?;
        let train = &values[..wgpu_rnn::data::series::training_rows(ROWS)];
        let season = seasonal::estimate_season(train);
        let horizon = season.map_or(30, |p| (p * 5 / 2).min(ROWS / 10 - ORIGINS));
        let auto = seasonal::auto_difference(train);
        let runs = Difference::ALL
            .into_iter()
            .filter(|d| !d.seasonal() || season.is_some())
            .map(|d| (d, 1))
            .chain([(auto, horizon)]);
        for (difference, ahead) in runs {
            let options = SeriesOptions {
                difference: Some(difference),
                season,
                ahead,
            };
            let task = Series::with_options(&data, options)?;
            let norm = task.normalization().clone();
            let task = Task::Series(task);
            let cfg = RnnConfig::new(1, 32, ahead).with_cell(CellKind::Gru);
            let mut tc = TrainConfig::new(
                OptimizerConfig::new(OptimizerKind::Adam, 0.01),
                LossKind::Mse,
            );
            tc.stateful = task.stateful();
            let mut trainer = Trainer::new(Rnn::new(&gpu, cfg.clone(), seed)?, tc)?;
            for step in 0..steps {
                let (batch, _) = task.batch(seed, step, 48, 32)?;
                trainer.step(&batch)?;
            }
            let origins = rolling_origins(ROWS, horizon, ORIGINS);
            let params = trainer.params()?;
            let (_, s) = backtest(Some(&gpu), &cfg, &params, &norm, &data, horizon, &origins)?;
            let mark = match (difference == auto, ahead) {
                (true, 1) => " (auto)".to_string(),
                (true, n) => format!(" (auto), {n} steps at once"),
                _ => String::new(),
            };
            println!(
                "| {} (season {}) | {horizon} | {}{mark} | {:.3} | {:.3} | {:.3} |",
                kind.name(),
                season.map_or("none".into(), |p| p.to_string()),
                difference.name(),
                s.model.mae,
                s.naive.mae,
                s.seasonal_naive.mae
            );
        }
    }
    Ok(())
}
