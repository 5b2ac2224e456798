//! `wgpu-rnn transcribe`: the files' log-mel features as the model was trained on them,
//! one batch, decoded greedily or with a prefix beam search; a line per file, in order.

use super::{device, load_checkpoint};
use crate::app::cli::TranscribeArgs;
use crate::data::speech::{collate, Example, FrontEnd};
use crate::data::TaskKind;
use crate::error::{Error, Result};
use crate::infer::{speech, Predictor};

pub fn transcribe(a: TranscribeArgs) -> Result<()> {
    let ck = load_checkpoint(
        &a.model,
        TaskKind::Speech,
        "transcribe runs speech models (train --task speech)",
    )?;
    if a.beam == Some(0) {
        return Err(Error::ZeroSize { what: "--beam" });
    }
    let front = FrontEnd::from_extra(&ck.extra)?;
    let examples = a
        .files
        .iter()
        .map(|p| {
            let features = front.features(p)?;
            if features.frames() == 0 {
                return Err(Error::BadSpeech(format!(
                    "{} is shorter than one 25 ms window; nothing to transcribe",
                    p.display()
                )));
            }
            Ok(Example {
                path: p.clone(),
                transcript: String::new(),
                labels: Vec::new(),
                features,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<usize> = (0..examples.len()).collect();
    let batch = collate(&examples, &rows)?;
    let gpu = device(a.device)?;
    let mut model = Predictor::new(gpu.as_ref(), &ck.config, &ck.params)?;
    for line in speech::transcribe(&mut model, &front.vocabulary, &batch, a.beam)? {
        println!("{line}");
    }
    Ok(())
}
