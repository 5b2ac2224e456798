//! `wgpu-rnn forecast`: warms a series model up on every row of a CSV file, then forecasts
//! `--horizon` steps, feeding each forecast back; writes the CSV and a picture.

use super::{device, load_checkpoint};
use crate::app::cli::ForecastArgs;
use crate::app::plot;
use crate::data::series::{save_forecast, Normalization, SeriesData};
use crate::data::TaskKind;
use crate::error::{Error, Result};
use crate::infer::series::forecast as run_forecast;

pub fn forecast(a: ForecastArgs) -> Result<()> {
    let ck = load_checkpoint(
        &a.model,
        TaskKind::Series,
        "forecast runs series models (train --task series --csv FILE)",
    )?;
    if a.horizon == 0 {
        return Err(Error::ZeroSize { what: "--horizon" });
    }
    let norm = Normalization::from_extra(&ck.extra)?;
    let data = SeriesData::from_csv(&a.csv, Some(&norm.target.name), Some(&norm.input_names()))?;
    let gpu = device(a.device)?;
    let f = run_forecast(
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
    save_forecast(&out, &f)?;
    let svg = out.with_extension("svg");
    plot::forecast_plot(
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
