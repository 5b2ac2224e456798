//! Forecasting a series model's next steps: warm the state up on a history, then feed
//! each prediction back as the next input; and scoring forecasts against known rows
//! beside the naive and seasonal naive baselines, from one origin or several (a rolling
//! origin backtest).

use super::Predictor;
use crate::data::seasonal::{self, Errors, Scores};
use crate::data::series::{quoted, Normalization, SeriesData};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Params, RnnConfig};

/// Rows the model runs at once while warming the state up on a long history.
const WARMUP_ROWS: usize = 256;

/// Fewest rows of history a scored forecast starts from, beyond the differencing's lag
/// and one season.
pub const MIN_HISTORY: usize = 10;

fn bad(why: impl Into<String>) -> Error {
    Error::BadSeries(why.into())
}

/// Checks that the model can forecast: it reads the target alone, forwards in time, with
/// one output, and the horizon is at least 1.
fn check_model(config: &RnnConfig, norm: &Normalization, horizon: usize) -> Result<()> {
    if norm.input_names() != [norm.target.name.clone()] {
        return Err(bad(format!(
            "the model reads columns [{}] to predict {:?}; forecasting several steps ahead \
             feeds each prediction back as the next input, which needs the target as the \
             only input (the future values of the others are unknown); train with the target \
             alone as input",
            quoted(&norm.input_names()),
            norm.target.name
        )));
    }
    if config.input_size != 1 || config.output_size != norm.ahead {
        return Err(bad(format!(
            "the model has {} inputs and {} outputs; a series forecast needs 1 input and \
             one output per step its head predicts ({})",
            config.input_size, config.output_size, norm.ahead
        )));
    }
    if config.bidirectional {
        return Err(bad(
            "the model is bidirectional: its reverse direction reads the future, which a \
             forecast does not have; train a forward-only model",
        ));
    }
    if horizon == 0 {
        return Err(Error::ZeroSize {
            what: "forecast horizon",
        });
    }
    Ok(())
}

/// Forecasts `horizon` steps past the end of `history`: warms the state up from h_0 = 0 on
/// every row of `history` (differenced and normalized as `norm` says), then feeds each
/// prediction back as the next input. Returns the forecasts in the target's original
/// units (differences undone). On the GPU when `gpu` is given, else on the CPU reference.
///
/// The model must read the target column alone (its other inputs' future values are
/// unknown) and run forwards in time only; `history` must be loaded with the model's
/// columns (see [`Normalization::check_columns`]).
pub fn forecast(
    gpu: Option<&Gpu>,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    norm: &Normalization,
    history: &SeriesData,
    horizon: usize,
) -> Result<Vec<f64>> {
    check_model(config, norm, horizon)?;
    norm.check_columns(history)?;
    let mut model = Predictor::new(gpu, config, params)?;
    forecast_from(&mut model, norm, history.target_values(), horizon)
}

/// [`forecast`] from the levels `history` with a model built once.
fn forecast_from(
    model: &mut Predictor,
    norm: &Normalization,
    history: &[f64],
    horizon: usize,
) -> Result<Vec<f64>> {
    let lag = norm.lag();
    if history.len() <= lag {
        return Err(bad(format!(
            "{} rows of history, and {} differences need more than {lag}",
            history.len(),
            norm.difference.name()
        )));
    }
    let mut stream = model.stream();
    let z: Vec<f64> = norm
        .difference
        .apply(history, norm.season.unwrap_or(0))
        .into_iter()
        .map(|v| norm.target.normalize(v))
        .collect();
    // The last row's outputs: the next `ahead` values (normalized, differenced).
    let ahead = norm.ahead;
    let last = |y: Vec<f64>| y[y.len() - ahead..].to_vec();
    let mut next = Vec::new();
    for chunk in z.chunks(WARMUP_ROWS) {
        next = last(stream.feed(chunk, chunk.len(), 1)?);
    }
    let mut levels = history.to_vec();
    let mut out = Vec::with_capacity(horizon);
    loop {
        for &z in &next {
            let level = norm.level(&levels, z);
            levels.push(level);
            out.push(level);
            if out.len() == horizon {
                return Ok(out);
            }
        }
        // Past the head's reach: its own predictions go in as the next inputs (the input
        // is the target, scaled alike), and the last row's outputs continue.
        next = last(stream.feed(&next, next.len(), 1)?);
    }
}

/// One scored forecast: from the rows before `origin`, `horizon` steps, against rows
/// origin..origin + horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub origin: usize,
    pub forecast: Vec<f64>,
    pub actual: Vec<f64>,
    /// The baselines' forecasts from the same origin.
    pub naive: Vec<f64>,
    pub seasonal_naive: Vec<f64>,
    pub scores: Scores,
}

/// Forecasts `horizon` rows from each origin in `origins` (each forecast reads the rows
/// before its origin only) and scores them against the known rows beside the naive and
/// seasonal naive forecasts from the same origin; returns each and their mean scores.
/// Every origin must leave `horizon` known rows after it and [`MIN_HISTORY`] rows (plus
/// the differencing's lag and one season) before it.
pub fn backtest(
    gpu: Option<&Gpu>,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    norm: &Normalization,
    data: &SeriesData,
    horizon: usize,
    origins: &[usize],
) -> Result<(Vec<Scored>, Scores)> {
    check_model(config, norm, horizon)?;
    norm.check_columns(data)?;
    let y = data.target_values();
    let least = norm.lag() + norm.season.unwrap_or(0) + MIN_HISTORY;
    for &o in origins {
        if o < least || o + horizon > y.len() {
            return Err(bad(format!(
                "a forecast from row {o} of {} rows: it needs at least {least} rows before it \
                 ({MIN_HISTORY} plus the differencing's {} and a season's {}) and {horizon} \
                 known rows after it",
                y.len(),
                norm.lag(),
                norm.season.unwrap_or(0)
            )));
        }
    }
    let mut model = Predictor::new(gpu, config, params)?;
    let mut all = Vec::with_capacity(origins.len());
    for &o in origins {
        let history = &y[..o];
        let forecast = forecast_from(&mut model, norm, history, horizon)?;
        let actual = y[o..o + horizon].to_vec();
        let naive = seasonal::naive(history, horizon);
        let seasonal_naive = seasonal::seasonal_naive(history, horizon, norm.season);
        let scores = Scores {
            model: Errors::of(&forecast, &actual),
            naive: Errors::of(&naive, &actual),
            seasonal_naive: Errors::of(&seasonal_naive, &actual),
        };
        all.push(Scored {
            origin: o,
            forecast,
            actual,
            naive,
            seasonal_naive,
            scores,
        });
    }
    let mean = |f: fn(&Scores) -> Errors| {
        Errors::mean(&all.iter().map(|s| f(&s.scores)).collect::<Vec<_>>())
    };
    let scores = Scores {
        model: mean(|s| s.model),
        naive: mean(|s| s.naive),
        seasonal_naive: mean(|s| s.seasonal_naive),
    };
    Ok((all, scores))
}

/// The origins of a rolling-origin backtest: `k` successive rows, the last one leaving
/// `horizon` rows after it in a series of `rows` rows.
pub fn rolling_origins(rows: usize, horizon: usize, k: usize) -> Vec<usize> {
    let last = rows.saturating_sub(horizon);
    (0..k).map(|i| last.saturating_sub(k - 1 - i)).collect()
}
