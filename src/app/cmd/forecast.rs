//! `wgpu-rnn forecast`: warms a series model up on every row of a CSV file, then forecasts
//! `--horizon` steps, feeding each forecast back; writes the CSV and a picture. With
//! `--holdout N` the last N rows are forecast from the rows before them and scored beside
//! the naive and seasonal naive baselines; `--backtest K` scores K successive origins.

use super::{device, load_checkpoint, read_series};
use crate::app::cli::ForecastArgs;
use crate::app::plot;
use crate::data::seasonal;
use crate::data::series::{save_columns, Normalization};
use crate::data::TaskKind;
use crate::error::{Error, Result};
use crate::infer::series::{backtest, forecast as run_forecast, rolling_origins};

pub fn forecast(a: ForecastArgs) -> Result<()> {
    let ck = load_checkpoint(
        &a.model,
        TaskKind::Series,
        "forecast runs series models (train --task series --csv FILE)",
    )?;
    let horizon = match (a.horizon, a.holdout) {
        (Some(0), _) => return Err(Error::ZeroSize { what: "--horizon" }),
        (_, Some(0)) => return Err(Error::ZeroSize { what: "--holdout" }),
        (Some(h), Some(n)) if h != n => {
            return Err(Error::IncompatibleArgs(format!(
                "--horizon {h} with --holdout {n}: a held-out forecast covers the {n} rows \
                 held out; give one of the two"
            )))
        }
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => {
            return Err(Error::IncompatibleArgs(
                "give --horizon N (steps after the file's last row), or --holdout N".into(),
            ))
        }
    };
    if a.backtest == Some(0) {
        return Err(Error::ZeroSize { what: "--backtest" });
    }
    let norm = Normalization::from_extra(&ck.extra)?;
    let inputs = norm.input_names();
    let data = read_series(
        &a.csv,
        Some(&norm.target.name),
        Some(&inputs),
        a.fill.as_deref(),
    )?;
    let gpu = device(a.device)?;
    if a.holdout.is_some() || a.backtest.is_some() {
        let rows = data.rows();
        let origins = rolling_origins(rows, horizon, a.backtest.unwrap_or(1));
        let (all, mean) = backtest(
            gpu.as_ref(),
            &ck.config,
            &ck.params,
            &norm,
            &data,
            horizon,
            &origins,
        )?;
        let season = norm
            .season
            .map_or("none found".to_string(), |p| format!("{p} rows"));
        match a.backtest {
            Some(k) => println!(
                "backtest: {k} forecasts of {horizon} rows from rows {}..={} of {rows} \
                 (season {season}); mean {}",
                origins[0],
                origins[origins.len() - 1],
                mean.line()
            ),
            None => println!(
                "held out the last {horizon} of {rows} rows (season {season}): {}",
                mean.line()
            ),
        }
        println!("{}", mean.verdict());
        let last = all.last().expect("at least one origin");
        let out = output(&a, "holdout");
        save_columns(
            &out,
            &[
                ("forecast", &last.forecast),
                ("actual", &last.actual),
                ("naive", &last.naive),
                ("seasonal_naive", &last.seasonal_naive),
            ],
        )?;
        eprintln!("wrote the last origin's forecast to {}", out.display());
        return Ok(());
    }
    let f = run_forecast(gpu.as_ref(), &ck.config, &ck.params, &norm, &data, horizon)?;
    // The baselines' forecasts of the same steps go beside the model's.
    let history = data.target_values();
    let naive = seasonal::naive(history, horizon);
    let snaive = seasonal::seasonal_naive(history, horizon, norm.season);
    let out = output(&a, "forecast");
    save_columns(
        &out,
        &[
            ("forecast", &f),
            ("naive", &naive),
            ("seasonal_naive", &snaive),
        ],
    )?;
    let svg = out.with_extension("svg");
    plot::forecast_plot_with(
        &svg,
        &format!("{} forecast, {horizon} steps", norm.target.name),
        &norm.target.name,
        history,
        &f,
        &[("naive", &naive), ("seasonal naive", &snaive)],
    )?;
    println!(
        "baselines beside it: naive repeats the last value ({:.4}); seasonal naive repeats \
         the last season ({}); score against known rows with --holdout N or --backtest K",
        naive[0],
        norm.season
            .map_or("none found: it is naive".to_string(), |p| format!(
                "{p} rows"
            ))
    );
    eprintln!(
        "forecast {horizon} steps of {} after {} rows: wrote {} and {}",
        norm.target.name,
        data.rows(),
        out.display(),
        svg.display()
    );
    Ok(())
}

/// `--output`, or `MODEL.<kind>.csv` beside the model.
fn output(a: &ForecastArgs, kind: &str) -> std::path::PathBuf {
    a.output.clone().unwrap_or_else(|| {
        let stem = a.model.file_stem().unwrap_or_default().to_string_lossy();
        a.model.with_file_name(format!("{stem}.{kind}.csv"))
    })
}
