//! What differs between the tasks in a training run: how a loss reads, what the
//! checkpoint records besides the model, what a validation adds (speech: error rates) and
//! what ends a run (text: a sample).

use std::collections::BTreeMap;

use super::setup::{Setup, CSV_KEY, MANIFEST_KEY, VALIDATION_MANIFEST_KEY};
use crate::data::Task;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::infer::text::{generate, Sampling};
use crate::infer::{speech, Predictor};
use crate::model::{Params, RnnConfig};
use crate::train::Train;

/// A loss as the task reads it: nats and bits per character, CTC, or MSE.
pub fn describe(task: &Task, loss: f32) -> String {
    match task {
        Task::Text(_) => format!(
            "{loss:.4} nats/char ({:.3} bits/char)",
            loss / std::f32::consts::LN_2
        ),
        Task::Speech(_) => format!("CTC {loss:.4}"),
        _ => format!("MSE {loss:.5}"),
    }
}

/// The loss picture's title and loss axis.
pub fn plot_labels(task: &Task) -> (&'static str, &'static str) {
    match task {
        Task::Text(_) => ("character-level text", "loss (nats/char)"),
        Task::Series(_) => ("series forecasting", "MSE (normalized units)"),
        Task::Speech(_) => ("speech recognition", "CTC loss (nats per character)"),
        Task::Sine(_) => ("sine forecasting", "MSE"),
        Task::Adding(_) => ("adding problem", "MSE"),
    }
}

/// The vocabulary a text model's checkpoint keeps.
pub fn vocabulary(task: &Task) -> Option<Vec<char>> {
    match task {
        Task::Text(t) => Some(t.vocab.clone()),
        _ => None,
    }
}

/// Checkpoint metadata a task needs to run or resume its model: a speech model's front
/// end and manifests, a series model's columns, their scaling and its CSV file.
pub fn checkpoint_extra(s: &Setup) -> BTreeMap<String, String> {
    let mut extra = BTreeMap::new();
    let resumed = s.resumed_extra();
    match &s.task {
        Task::Speech(speech) => {
            extra.extend(speech.corpus.extra());
            for (key, path) in [
                (MANIFEST_KEY, &s.args.manifest),
                (VALIDATION_MANIFEST_KEY, &s.args.validation_manifest),
            ] {
                match (path, resumed.get(key)) {
                    (Some(p), _) => extra.insert(key.into(), p.display().to_string()),
                    (None, Some(v)) => extra.insert(key.into(), v.clone()),
                    (None, None) => None,
                };
            }
        }
        Task::Series(series) => {
            series.normalization().store(&mut extra);
            let csv = s.args.csv.as_ref().map(|p| p.display().to_string());
            if let Some(csv) = csv.or_else(|| resumed.get(CSV_KEY).cloned()) {
                extra.insert(CSV_KEY.into(), csv);
            }
        }
        _ => {}
    }
    extra
}

/// What a validation line adds for the task: a series model's one-step errors in the
/// target's units beside the naive and seasonal naive forecasts of the same rows; the
/// speech model's held-out character and word error rates of greedy decoding.
pub fn validation_extra(
    task: &Task,
    gpu: Option<&Gpu>,
    trainer: &dyn Train,
    val: &crate::train::Batch,
) -> Result<Option<(String, Option<crate::data::seasonal::Scores>)>> {
    if let Task::Series(series) = task {
        let mut model = Predictor::new(gpu, trainer.rnn_config(), &trainer.params()?)?;
        let x: Vec<f64> = val.x.iter().map(|&v| v as f64).collect();
        let y = model.run(&x, [val.t, val.b], None, None)?.y;
        let scores = series.validation_scores(val.t, &y)?;
        return Ok(Some((format!("  {}", scores.line()), Some(scores))));
    }
    let Task::Speech(sp) = task else {
        return Ok(None);
    };
    let mut model = Predictor::new(gpu, trainer.rnn_config(), &trainer.params()?)?;
    let (cer, wer) = speech::error_rates(
        &mut model,
        &sp.corpus.front_end.vocabulary,
        &sp.corpus.valid,
    )?;
    let line = format!(
        "  CER {:.1} %  WER {:.1} %",
        100.0 * cer.rate(),
        100.0 * wer.rate()
    );
    Ok(Some((line, None)))
}

/// A text model's sample after training: `len` characters at temperature 0.8.
pub fn final_sample(
    task: &Task,
    gpu: Option<&Gpu>,
    config: &RnnConfig,
    params: &Params<Vec<f32>>,
    len: usize,
    seed: u64,
) -> Result<Option<String>> {
    let Task::Text(text) = task else {
        return Ok(None);
    };
    if len == 0 {
        return Ok(None);
    }
    let mut model = Predictor::new(gpu, config, params)?;
    let sampling = Sampling {
        prime: "",
        len,
        temperature: 0.8,
        seed,
    };
    generate(&mut model, text, &sampling).map(Some)
}
