//! Audio for speech models: WAV input at 16 kHz mono, log-mel features, and their
//! normalization.
//!
//! [`read_wav`] accepts 16-bit integer or 32-bit float PCM. Stereo (or more channels) is
//! downmixed by averaging the channels, since a recognizer hears one voice either way;
//! any sample rate other than [`SAMPLE_RATE`] is resampled to it with rubato's
//! band-limited FFT resampler, so espeak-ng's 22 050 Hz or a 44.1 kHz recording can be
//! used as they are.
//!
//! [`LogMel`] turns samples into (frames, bands) features: 25 ms Hann windows every 10 ms,
//! zero-padded to a 512-point FFT, the power spectrum through a triangular mel filterbank
//! (40 bands over 0..8000 Hz, HTK mel scale), then `ln(energy + 1e-6)`. Frames are taken
//! only where a whole window fits ([`frame_count`]).
//!
//! Normalization: by default [`Normalization::Global`], a per-band mean and standard
//! deviation fitted on the training set ([`FeatureStats::fit`]) and saved with the model
//! (JSON under [`FEATURE_STATS_KEY`] in a checkpoint's `extra`), so that one utterance is
//! treated the same at training and at inference. [`Normalization::PerUtterance`] uses each
//! utterance's own statistics instead, needing nothing saved.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The sample rate features are computed at; other rates are resampled to it.
pub const SAMPLE_RATE: u32 = 16_000;

/// The checkpoint `extra` key under which a speech model keeps its [`FeatureStats`].
pub const FEATURE_STATS_KEY: &str = "speech.feature_stats";

/// The checkpoint `extra` key under which a speech model keeps its [`MelConfig`].
pub const MEL_CONFIG_KEY: &str = "speech.mel_config";

/// Standard deviations below this are treated as this, so a band that never varies (a
/// band above a recording's bandwidth, all at the log floor) normalizes to 0, not NaN.
const MIN_STD: f32 = 1e-5;

fn audio_error(path: &Path, why: impl Into<String>) -> Error {
    Error::Audio {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// The samples of a WAV file as mono f32 in [-1, 1] at [`SAMPLE_RATE`].
///
/// Refuses, naming the file: an empty or non-WAV file, one that ends before its header's
/// sample count, sample formats other than 16-bit integer and 32-bit float, and a file
/// with no samples. Channels are averaged; other rates are resampled.
pub fn read_wav(path: &Path) -> Result<Vec<f32>> {
    read_wav_at(path, SAMPLE_RATE)
}

/// [`read_wav`], resampled to `rate` Hz (a [`MelConfig::sample_rate`]) instead.
pub fn read_wav_at(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(audio_error(
            path,
            "the file is empty (0 bytes); re-create it, or remove its line from the manifest",
        ));
    }
    let bytes_len = bytes.len();
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| {
        audio_error(
            path,
            format!(
                "not a readable WAV file ({e}); convert it to 16 kHz mono 16-bit WAV, \
                 e.g. `sox IN -r 16000 -c 1 -b 16 OUT.wav` or \
                 `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
            ),
        )
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(audio_error(
            path,
            "the header says 0 channels; re-export the file",
        ));
    }
    let expected = reader.len() as usize;
    // A damaged header may claim any count: reserve no more than the file's bytes hold.
    let capacity = expected.min(bytes_len / usize::from(spec.bits_per_sample / 8).max(1));
    let truncated = |read: usize| {
        audio_error(
            path,
            format!(
                "truncated: the header promises {expected} samples but the file ends after \
                 {read}; re-export or re-download it"
            ),
        )
    };
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => {
            let mut out = Vec::with_capacity(capacity);
            for s in reader.samples::<i16>() {
                out.push(f32::from(s.map_err(|_| truncated(out.len()))?) / 32768.0);
            }
            out
        }
        (hound::SampleFormat::Float, 32) => {
            let mut out = Vec::with_capacity(capacity);
            for s in reader.samples::<f32>() {
                out.push(s.map_err(|_| truncated(out.len()))?);
            }
            out
        }
        (format, bits) => {
            let kind = match format {
                hound::SampleFormat::Int => "integer",
                hound::SampleFormat::Float => "float",
            };
            return Err(audio_error(
                path,
                format!(
                    "{bits}-bit {kind} samples are not supported; only 16-bit integer and \
                     32-bit float PCM are. Convert it, e.g. `sox IN -b 16 OUT.wav`"
                ),
            ));
        }
    };
    let frames = interleaved.len() / channels;
    if frames == 0 {
        return Err(audio_error(
            path,
            "the file holds no samples; re-create it, or remove its line from the manifest",
        ));
    }
    let mono: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|c| c.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    if spec.sample_rate == rate {
        Ok(mono)
    } else {
        resample(&mono, spec.sample_rate, rate).map_err(|e| audio_error(path, e))
    }
}

/// Mono `samples` at `from_hz` resampled to `to_hz` (rubato's synchronous FFT resampler,
/// anti-aliased, delay removed): `ceil(len · to_hz / from_hz)` samples. The error is a
/// sentence for the caller to attach to a file name.
pub fn resample(
    samples: &[f32],
    from_hz: u32,
    to_hz: u32,
) -> std::result::Result<Vec<f32>, String> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::Resampler;
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let mut resampler = rubato::Fft::<f32>::new(
        from_hz as usize,
        to_hz as usize,
        1024,
        1,
        rubato::FixedSync::Input,
    )
    .map_err(|e| {
        format!(
            "cannot resample {from_hz} Hz to {to_hz} Hz ({e}); convert it first, \
                     e.g. `sox IN -r {to_hz} OUT.wav`"
        )
    })?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| format!("resampling input: {e}"))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| format!("resampling {from_hz} Hz to {to_hz} Hz failed: {e}"))?;
    Ok(out.take_data())
}

/// Writes mono `samples` (clipped to [-1, 1]) as a 16-bit integer PCM WAV file.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| match e {
        hound::Error::IoError(source) => Error::Io {
            path: path.display().to_string(),
            source,
        },
        other => audio_error(path, format!("writing failed: {other}")),
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    for &s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(io)?;
    }
    writer.finalize().map_err(io)
}

/// Log-mel feature settings. The defaults are the usual speech front end at 16 kHz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MelConfig {
    /// Samples per second of the input (WAV files are resampled to it by [`read_wav_at`]).
    pub sample_rate: u32,
    /// Window length in samples (400 = 25 ms).
    pub window: usize,
    /// Step between windows in samples (160 = 10 ms).
    pub hop: usize,
    /// FFT length; windows are zero-padded to it (512).
    pub fft_size: usize,
    /// Mel bands (40).
    pub bands: usize,
    /// Lowest and highest frequency the filterbank covers, in Hz (0 and 8000).
    pub f_min: f32,
    pub f_max: f32,
    /// Added to each band's energy before the logarithm, so silence stays finite.
    pub log_floor: f32,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig {
            sample_rate: SAMPLE_RATE,
            window: 400,
            hop: 160,
            fft_size: 512,
            bands: 40,
            f_min: 0.0,
            f_max: 8000.0,
            log_floor: 1e-6,
        }
    }
}

impl MelConfig {
    /// Checks that the settings make a filterbank: positive sizes, the window within the
    /// FFT, and 0 ≤ f_min < f_max ≤ sample_rate / 2.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::BadSpeech(format!("mel feature settings: {why}")));
        if self.sample_rate == 0 || self.window == 0 || self.hop == 0 || self.bands == 0 {
            return bad(format!(
                "sample_rate, window, hop and bands must be at least 1, got {}, {}, {}, {}",
                self.sample_rate, self.window, self.hop, self.bands
            ));
        }
        if self.fft_size < self.window {
            return bad(format!(
                "fft_size {} is shorter than the window {}; use an FFT at least as long",
                self.fft_size, self.window
            ));
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(self.f_min >= 0.0 && self.f_min < self.f_max && self.f_max <= nyquist) {
            return bad(format!(
                "the band range {}..{} Hz must satisfy 0 ≤ f_min < f_max ≤ {nyquist} \
                 (half the sample rate)",
                self.f_min, self.f_max
            ));
        }
        if !(self.log_floor > 0.0 && self.log_floor.is_finite()) {
            return bad(format!(
                "log_floor is {}, expected a positive number",
                self.log_floor
            ));
        }
        Ok(())
    }

    /// The centre frequency of each mel band, in Hz, ascending.
    pub fn band_centers_hz(&self) -> Vec<f32> {
        let edges = self.band_edges_hz();
        edges[1..=self.bands].to_vec()
    }

    /// `bands + 2` frequencies equally spaced on the mel scale from f_min to f_max: band k
    /// rises from edge k to its peak at edge k + 1 and falls to zero at edge k + 2.
    fn band_edges_hz(&self) -> Vec<f32> {
        let (lo, hi) = (hz_to_mel(self.f_min), hz_to_mel(self.f_max));
        (0..self.bands + 2)
            .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (self.bands + 1) as f32))
            .collect()
    }

    /// JSON for a checkpoint's `extra` (under [`MEL_CONFIG_KEY`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("MelConfig serializes")
    }

    /// The settings saved by [`MelConfig::to_json`], checked.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: MelConfig = serde_json::from_str(json).map_err(|e| {
            Error::BadSpeech(format!(
                "saved mel feature settings are not valid JSON for them ({e}); the checkpoint \
                 is damaged or from another program"
            ))
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// HTK's mel scale: 2595 · log10(1 + f / 700).
pub fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

/// The inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// Frames [`LogMel`] makes from `samples` samples: one per whole window, windows starting
/// every `hop`: `1 + (samples − window) / hop`, or 0 when shorter than one window.
pub fn frame_count(samples: usize, config: &MelConfig) -> usize {
    if samples < config.window {
        0
    } else {
        1 + (samples - config.window) / config.hop
    }
}

/// Features of one utterance: (frames, bands) f32, row-major (one frame after another).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    frames: usize,
    bands: usize,
    data: Vec<f32>,
}

impl Features {
    /// `data` holds `frames · bands` values, frame after frame.
    pub fn new(frames: usize, bands: usize, data: Vec<f32>) -> Result<Self> {
        if frames.checked_mul(bands) != Some(data.len()) {
            return Err(Error::DataLength {
                what: "features",
                shape: vec![frames, bands],
                expected: frames.saturating_mul(bands),
                got: data.len(),
            });
        }
        Ok(Features {
            frames,
            bands,
            data,
        })
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn bands(&self) -> usize {
        self.bands
    }

    /// (frames, bands), row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The `bands` values of frame `t`.
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.bands..(t + 1) * self.bands]
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

/// A log-mel feature extractor: the FFT plan, window and filterbank made once.
#[derive(Clone)]
pub struct LogMel {
    config: MelConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    /// (bands, fft_size / 2 + 1), row-major: each band's weight on each power bin.
    filters: Vec<f32>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LogMel {
    pub fn new(config: MelConfig) -> Result<Self> {
        config.validate()?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(config.fft_size);
        // Periodic Hann (as torch.hann_window and Kaldi's "hanning" over N + 1 points).
        let n = config.window;
        let hann = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .map(|w| w as f32)
            .collect();
        let filters = mel_filters(&config);
        Ok(LogMel {
            config,
            fft,
            hann,
            filters,
        })
    }

    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// Log-mel features of mono `samples` at `config().sample_rate`: ([`frame_count`],
    /// bands). Fewer samples than one window give zero frames.
    pub fn compute(&self, samples: &[f32]) -> Features {
        let c = &self.config;
        let frames = frame_count(samples.len(), c);
        let bins = c.fft_size / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; bins];
        let mut data = Vec::with_capacity(frames * c.bands);
        for t in 0..frames {
            let window = &samples[t * c.hop..t * c.hop + c.window];
            input.fill(0.0);
            for ((x, &s), &w) in input.iter_mut().zip(window).zip(&self.hann) {
                *x = s * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            for (p, z) in power.iter_mut().zip(&spectrum) {
                *p = z.norm_sqr();
            }
            for band in self.filters.chunks_exact(bins) {
                let energy: f32 = band.iter().zip(&power).map(|(w, p)| w * p).sum();
                data.push((energy + c.log_floor).ln());
            }
        }
        Features {
            frames,
            bands: c.bands,
            data,
        }
    }
}

/// Triangular filters on the FFT's power bins (no area normalization, like HTK and
/// torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`): (bands, fft_size/2 + 1).
fn mel_filters(c: &MelConfig) -> Vec<f32> {
    let bins = c.fft_size / 2 + 1;
    let edges = c.band_edges_hz();
    let bin_hz = c.sample_rate as f32 / c.fft_size as f32;
    let mut filters = vec![0f32; c.bands * bins];
    for (band, row) in filters.chunks_exact_mut(bins).enumerate() {
        let (left, centre, right) = (edges[band], edges[band + 1], edges[band + 2]);
        for (k, w) in row.iter_mut().enumerate() {
            let f = k as f32 * bin_hz;
            let rise = (f - left) / (centre - left);
            let fall = (right - f) / (right - centre);
            *w = rise.min(fall).max(0.0);
        }
    }
    filters
}

/// How features are standardized per band before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Normalization {
    /// Mean and standard deviation per band over the whole training set
    /// ([`FeatureStats`]), saved with the model.
    #[default]
    Global,
    /// Each utterance by its own mean and standard deviation per band
    /// ([`normalize_utterance`]).
    PerUtterance,
}

/// Per-band mean and standard deviation of features, fitted on a training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    /// Never below 1e-5.
    pub std: Vec<f32>,
    /// Frames the statistics were computed over.
    pub frames: u64,
}

impl FeatureStats {
    /// Statistics over every frame of `features` (accumulated in f64). Errors when there
    /// are no frames or the utterances disagree on the number of bands.
    pub fn fit<'a>(features: impl IntoIterator<Item = &'a Features>) -> Result<Self> {
        let mut bands = None;
        let mut sum = Vec::new();
        let mut sum_sq = Vec::new();
        let mut frames = 0u64;
        for f in features {
            let b = *bands.get_or_insert(f.bands);
            if f.bands != b {
                return Err(Error::BadSpeech(format!(
                    "feature statistics: utterances have {b} and {} bands; compute every \
                     utterance's features with the same settings",
                    f.bands
                )));
            }
            sum.resize(b, 0f64);
            sum_sq.resize(b, 0f64);
            for frame in f.data.chunks_exact(b) {
                for ((s, q), &x) in sum.iter_mut().zip(&mut sum_sq).zip(frame) {
                    *s += f64::from(x);
                    *q += f64::from(x) * f64::from(x);
                }
            }
            frames += f.frames as u64;
        }
        if frames == 0 {
            return Err(Error::BadSpeech(
                "feature statistics need at least one frame; the training set has no audio \
                 longer than one window (25 ms)"
                    .into(),
            ));
        }
        let n = frames as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, q)| {
                let m = s / n;
                ((q / n - m * m).max(0.0).sqrt() as f32).max(MIN_STD)
            })
            .collect();
        Ok(FeatureStats { mean, std, frames })
    }

    /// Standardizes `features` in place: (x − mean) / std per band.
    pub fn apply(&self, features: &mut Features) -> Result<()> {
        if features.bands != self.mean.len() {
            return Err(Error::BadSpeech(format!(
                "features have {} bands but the saved statistics {}; compute features with \
                 the model's saved mel settings",
                features.bands,
                self.mean.len()
            )));
        }
        for frame in features.data.chunks_exact_mut(features.bands) {
            for ((x, m), s) in frame.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }

    /// JSON for a checkpoint's `extra` (under [`FEATURE_STATS_KEY`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("FeatureStats serializes")
    }

    /// Statistics saved by [`FeatureStats::to_json`], checked: as many means as standard
    /// deviations, all finite, deviations positive.
    pub fn from_json(json: &str) -> Result<Self> {
        let stats: FeatureStats = serde_json::from_str(json).map_err(|e| {
            Error::BadSpeech(format!(
                "saved feature statistics are not valid JSON for them ({e}); the checkpoint \
                 is damaged or from another program"
            ))
        })?;
        let ok = stats.mean.len() == stats.std.len()
            && !stats.mean.is_empty()
            && stats.mean.iter().all(|m| m.is_finite())
            && stats.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if !ok {
            return Err(Error::BadSpeech(format!(
                "saved feature statistics are inconsistent ({} means, {} deviations, each \
                 must be finite and deviations positive); retrain or restore the checkpoint",
                stats.mean.len(),
                stats.std.len()
            )));
        }
        Ok(stats)
    }
}

/// Standardizes one utterance by its own per-band mean and standard deviation.
pub fn normalize_utterance(features: &mut Features) {
    if features.frames == 0 {
        return;
    }
    let stats = FeatureStats::fit([&*features]).expect("one utterance with frames");
    stats.apply(features).expect("same bands");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, seconds: f32, rate: u32) -> Vec<f32> {
        let n = (seconds * rate as f32) as usize;
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    fn loudest_band(f: &Features) -> usize {
        let mut mean = vec![0f32; f.bands()];
        for t in 0..f.frames() {
            for (m, x) in mean.iter_mut().zip(f.frame(t)) {
                *m += x;
            }
        }
        (0..mean.len())
            .max_by(|&a, &b| mean[a].total_cmp(&mean[b]))
            .unwrap()
    }

    fn nearest_band(config: &MelConfig, hz: f32) -> usize {
        let centres = config.band_centers_hz();
        (0..centres.len())
            .min_by(|&a, &b| (centres[a] - hz).abs().total_cmp(&(centres[b] - hz).abs()))
            .unwrap()
    }

    #[test]
    fn a_1khz_tone_is_loudest_in_the_band_centred_nearest_1khz() {
        let mel = LogMel::new(MelConfig::default()).unwrap();
        let f = mel.compute(&sine(1000.0, 0.5, SAMPLE_RATE));
        let want = nearest_band(mel.config(), 1000.0);
        assert_eq!(
            loudest_band(&f),
            want,
            "centres {:?}",
            mel.config().band_centers_hz()
        );
        // The band is not the edge of the bank, so this is not a trivially passing argmax.
        assert!(want > 5 && want < 30, "band {want}");
    }

    #[test]
    fn tones_of_other_frequencies_move_to_their_own_bands() {
        let mel = LogMel::new(MelConfig::default()).unwrap();
        for hz in [300.0, 2500.0, 6000.0] {
            let f = mel.compute(&sine(hz, 0.3, SAMPLE_RATE));
            assert_eq!(loudest_band(&f), nearest_band(mel.config(), hz), "{hz} Hz");
        }
    }

    #[test]
    fn frame_count_follows_the_formula_and_matches_the_features() {
        let c = MelConfig::default();
        let mel = LogMel::new(c.clone()).unwrap();
        for (samples, frames) in [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16_000, 98)] {
            assert_eq!(frame_count(samples, &c), frames, "{samples} samples");
            let f = mel.compute(&vec![0.1; samples]);
            assert_eq!((f.frames(), f.bands()), (frames, 40));
            assert_eq!(f.data().len(), frames * 40);
        }
    }

    #[test]
    fn silence_gives_finite_features_at_the_log_floor() {
        let mel = LogMel::new(MelConfig::default()).unwrap();
        let f = mel.compute(&vec![0.0; 4000]);
        assert!(f.frames() > 0);
        for &x in f.data() {
            assert!(x.is_finite());
            assert!((x - 1e-6f32.ln()).abs() < 1e-3, "{x}");
        }
        let mut g = f.clone();
        normalize_utterance(&mut g);
        assert!(g.data().iter().all(|x| x.is_finite() && x.abs() < 1e-3));
    }

    #[test]
    fn mel_scale_round_trips_and_is_htk() {
        assert!((hz_to_mel(700.0) - 2595.0 * 2f32.log10()).abs() < 1e-3);
        for hz in [0.0, 100.0, 1000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 0.05, "{hz}");
        }
        let centres = MelConfig::default().band_centers_hz();
        assert_eq!(centres.len(), 40);
        assert!(centres.windows(2).all(|w| w[0] < w[1]));
        assert!(centres[0] > 0.0 && centres[39] < 8000.0);
    }

    #[test]
    fn bad_mel_settings_are_refused() {
        for change in [
            (|c: &mut MelConfig| c.fft_size = 256) as fn(&mut MelConfig),
            |c| c.f_max = 9000.0,
            |c| c.bands = 0,
            |c| c.hop = 0,
            |c| c.log_floor = 0.0,
        ] {
            let mut c = MelConfig::default();
            change(&mut c);
            let e = LogMel::new(c).unwrap_err();
            assert!(matches!(e, Error::BadSpeech(_)), "{e}");
        }
    }

    fn ramp_features(frames: usize, offset: f32) -> Features {
        let data = (0..frames * 3)
            .map(|i| offset + (i % 3) as f32 * 10.0 + (i / 3) as f32 * 0.5)
            .collect();
        Features::new(frames, 3, data).unwrap()
    }

    #[test]
    fn global_stats_standardize_the_training_set_and_survive_json() {
        let train = [ramp_features(7, 0.0), ramp_features(11, 3.0)];
        let stats = FeatureStats::fit(&train).unwrap();
        assert_eq!(stats.frames, 18);
        let restored = FeatureStats::from_json(&stats.to_json()).unwrap();
        assert_eq!(restored, stats);
        let mut normalized = train.clone();
        for f in &mut normalized {
            restored.apply(f).unwrap();
        }
        for band in 0..3 {
            let xs: Vec<f64> = normalized
                .iter()
                .flat_map(|f| (0..f.frames()).map(move |t| f64::from(f.frame(t)[band])))
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "band {band}: {mean} {var}"
            );
        }
    }

    #[test]
    fn per_utterance_normalization_gives_zero_mean_unit_variance() {
        let mut f = ramp_features(9, 5.0);
        normalize_utterance(&mut f);
        for band in 0..3 {
            let xs: Vec<f32> = (0..9).map(|t| f.frame(t)[band]).collect();
            let mean = xs.iter().sum::<f32>() / 9.0;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 9.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn stats_refuse_mismatched_bands_and_damaged_json() {
        let stats = FeatureStats::fit([&ramp_features(4, 0.0)]).unwrap();
        let mut other = Features::new(2, 4, vec![0.0; 8]).unwrap();
        assert!(matches!(stats.apply(&mut other), Err(Error::BadSpeech(_))));
        assert!(FeatureStats::fit(std::iter::empty()).is_err());
        assert!(FeatureStats::from_json("{").is_err());
        assert!(FeatureStats::from_json(r#"{"mean":[0,1],"std":[1],"frames":3}"#).is_err());
        assert!(FeatureStats::from_json(r#"{"mean":[0],"std":[0],"frames":3}"#).is_err());
        let config = MelConfig::default();
        assert_eq!(MelConfig::from_json(&config.to_json()).unwrap(), config);
    }

    #[test]
    fn resampling_keeps_a_tone_and_sets_the_length() {
        let tone = sine(1000.0, 0.5, 22_050);
        let out = resample(&tone, 22_050, SAMPLE_RATE).unwrap();
        assert_eq!(
            out.len(),
            (tone.len() as f64 * 16_000.0 / 22_050.0).ceil() as usize
        );
        let mel = LogMel::new(MelConfig::default()).unwrap();
        let f = mel.compute(&out);
        assert_eq!(loudest_band(&f), nearest_band(mel.config(), 1000.0));
        // Amplitude is kept (0.5 peak → RMS ≈ 0.354) away from the edges.
        let mid = &out[2000..6000];
        let rms = (mid.iter().map(|x| x * x).sum::<f32>() / mid.len() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "{rms}");
    }
}
