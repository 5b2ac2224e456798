//! `wgpu-rnn sample`: text from a trained text model.

use crate::app::cli::SampleArgs;
use crate::data::Text;
use crate::error::{Error, Result};
use crate::files::checkpoint::Checkpoint;
use crate::gpu::Gpu;
use crate::infer::text::{generate, Sampling};
use crate::infer::Predictor;

pub fn sample(a: SampleArgs) -> Result<()> {
    let ck = Checkpoint::load(&a.model)?;
    let vocab = ck.vocab.clone().ok_or_else(|| Error::Checkpoint {
        path: a.model.display().to_string(),
        why: format!(
            "it is a {:?} model; only text models can be sampled",
            ck.task
        ),
    })?;
    let sampling = Sampling {
        prime: &a.prime,
        len: a.len,
        temperature: a.temperature,
        seed: a.seed,
    };
    sampling.check()?;
    let gpu = Gpu::new()?;
    let mut model = Predictor::new(Some(&gpu), &ck.config, &ck.params)?;
    println!(
        "{}",
        generate(&mut model, &Text::from_vocab(vocab), &sampling)?
    );
    Ok(())
}
