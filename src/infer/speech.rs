//! Transcribing speech with a CTC model: log-mel frames in, characters out (greedy best
//! path or a prefix beam search), and the error rates of held-out utterances.

use super::Predictor;
use crate::data::speech::{
    character_error_rate, collate, word_error_rate, ErrorRate, Example, SpeechBatch, Vocabulary,
    BLANK,
};
use crate::error::Result;

/// The model's output y (T, B, C) for a collated batch.
pub fn logits(model: &mut Predictor, batch: &SpeechBatch) -> Result<Vec<f32>> {
    let x: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
    let out = model.run(&x, [batch.t, batch.b], None, Some(&batch.input_lengths))?;
    Ok(out.y.iter().map(|&v| v as f32).collect())
}

/// Transcripts of a collated batch: greedy best path, or a prefix beam search of `beam`
/// prefixes.
pub fn transcribe(
    model: &mut Predictor,
    vocabulary: &Vocabulary,
    batch: &SpeechBatch,
    beam: Option<usize>,
) -> Result<Vec<String>> {
    let y = logits(model, batch)?;
    let shape = [batch.t, batch.b, model.config().output_size];
    let lengths = Some(&batch.input_lengths[..]);
    let labels = match beam {
        Some(k) => crate::ctc::beam_search(&y, shape, lengths, BLANK, k)?,
        None => crate::ctc::greedy_decode(&y, shape, lengths, BLANK)?,
    };
    Ok(labels.iter().map(|l| vocabulary.decode(l)).collect())
}

/// Character and word error rates of greedy transcripts of `examples` against their
/// transcripts.
pub fn error_rates(
    model: &mut Predictor,
    vocabulary: &Vocabulary,
    examples: &[Example],
) -> Result<(ErrorRate, ErrorRate)> {
    let rows: Vec<usize> = (0..examples.len()).collect();
    let batch = collate(examples, &rows)?;
    let heard = transcribe(model, vocabulary, &batch, None)?;
    let pairs: Vec<(&str, &str)> = examples
        .iter()
        .map(|e| e.transcript.as_str())
        .zip(heard.iter().map(String::as_str))
        .collect();
    Ok((
        character_error_rate(pairs.iter().copied()),
        word_error_rate(pairs.iter().copied()),
    ))
}
