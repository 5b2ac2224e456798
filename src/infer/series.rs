//! Forecasting a series model's next steps: warm the state up on a history, then feed
//! each prediction back as the next input.

use super::Predictor;
use crate::data::series::{quoted, Normalization, SeriesData};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Params, RnnConfig};

/// Rows the model runs at once while warming the state up on a long history.
const WARMUP_ROWS: usize = 256;

fn bad(why: impl Into<String>) -> Error {
    Error::BadSeries(why.into())
}

/// Forecasts `horizon` steps past the end of `history`: warms the state up from h_0 = 0 on
/// every row of `history` (normalized with `norm`), then feeds each prediction back as the
/// next input. Returns the forecasts in the target's original units. On the GPU when
/// `gpu` is given, else on the CPU reference.
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
    if config.input_size != 1 || config.output_size != 1 {
        return Err(bad(format!(
            "the model has {} inputs and {} outputs; a series forecast needs 1 and 1",
            config.input_size, config.output_size
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
    norm.check_columns(history)?;
    let mut model = Predictor::new(gpu, config, params)?;
    let mut stream = model.stream();
    let z: Vec<f64> = history
        .target_values()
        .iter()
        .map(|&v| norm.target.normalize(v))
        .collect();
    let mut next = 0.0;
    for chunk in z.chunks(WARMUP_ROWS) {
        next = *stream
            .feed(chunk, chunk.len(), 1)?
            .last()
            .expect("chunks are not empty");
    }
    let mut out = Vec::with_capacity(horizon);
    out.push(next);
    while out.len() < horizon {
        next = stream.feed(&[next], 1, 1)?[0];
        out.push(next);
    }
    Ok(out
        .into_iter()
        .map(|z| norm.target.denormalize(z))
        .collect())
}
