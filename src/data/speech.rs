//! Speech corpora for CTC training: manifests, the character vocabulary, the held-out
//! split, length-bucketed batches, and character and word error rates.
//!
//! A manifest is a CSV file with the header `path,transcript` and one utterance per line;
//! paths are relative to the manifest's folder (absolute ones are kept). Transcripts are
//! trimmed and runs of whitespace become one space; case is kept.
//!
//! Held-out data: a separate validation manifest when one is given, otherwise every
//! [`UTTERANCES_PER_HELD_OUT`]-th utterance of the manifest (lines 10, 20, … of the data, counting
//! from 1), a rule that does not depend on a seed and keeps the split stable as a manifest
//! grows at its end.
//!
//! The vocabulary holds the characters of every transcript, training and held-out, sorted
//! by code point, as labels 1..; label [`BLANK`] = 0 is CTC's blank. It travels with a
//! model as JSON under [`VOCABULARY_KEY`] in its checkpoint's `extra`, next to the
//! feature settings and statistics ([`SpeechCorpus::extra`], [`FrontEnd::from_extra`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::audio::{
    self, FeatureStats, Features, LogMel, MelConfig, Normalization, FEATURE_STATS_KEY,
    MEL_CONFIG_KEY,
};
use crate::error::{Error, Result};
use crate::train::Batch;

/// CTC's blank label.
pub const BLANK: u32 = 0;

/// Without a validation manifest, every this-many-th utterance is held out.
pub const UTTERANCES_PER_HELD_OUT: usize = 10;

/// The checkpoint `extra` key under which a speech model keeps its [`Vocabulary`].
pub const VOCABULARY_KEY: &str = "speech.vocabulary";

/// The checkpoint `extra` key under which a speech model keeps its [`Normalization`].
pub const FEATURE_NORMALIZATION_KEY: &str = "speech.normalization";

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The audio file, resolved against the manifest's folder.
    pub path: PathBuf,
    /// Trimmed, whitespace runs made single spaces.
    pub transcript: String,
    /// The manifest and the 1-based line the utterance was read from, for messages.
    pub manifest: PathBuf,
    pub line: u64,
}

impl Utterance {
    fn error(&self, why: impl Into<String>) -> Error {
        Error::Manifest {
            path: self.manifest.display().to_string(),
            line: self.line,
            why: why.into(),
        }
    }
}

/// Reads a manifest: header `path,transcript`, then one utterance per line. Errors name
/// the line: a wrong header, a line without exactly two fields, an empty path or
/// transcript, an audio file that does not exist; and a manifest with no utterances.
pub fn read_manifest(path: &Path) -> Result<Vec<Utterance>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    let at_line = |line: u64, why: String| Error::Manifest {
        path: name.clone(),
        line,
        why,
    };
    let folder = path.parent().unwrap_or(Path::new(""));
    let lines = super::csv_lines::Lines::new(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut records = reader.records();
    let header = match records.next() {
        None => return Err(at_line(
            1,
            "the file is empty; expected the header `path,transcript` and one line per utterance"
                .into(),
        )),
        Some(r) => r.map_err(|e| at_line(1, format!("unreadable header ({e})")))?,
    };
    let names: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    if names != ["path", "transcript"] {
        return Err(at_line(
            1,
            format!(
                "the header is {:?}; it must be `path,transcript` (add that line at the top)",
                header.iter().collect::<Vec<_>>()
            ),
        ));
    }
    let mut utterances = Vec::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| lines.line_of(p.byte()));
            at_line(
                line,
                format!("unreadable CSV ({e}); quote transcripts that hold commas or quotes"),
            )
        })?;
        let line = record.position().map_or(0, |p| lines.line_of(p.byte()));
        if record.len() != 2 {
            return Err(at_line(
                line,
                format!(
                    "{} fields, expected 2 (path,transcript); quote a transcript that holds \
                     a comma, e.g. a.wav,\"one, two\"",
                    record.len()
                ),
            ));
        }
        let file = record[0].trim();
        if file.is_empty() {
            return Err(at_line(line, "the path is empty".into()));
        }
        let transcript = record[1].split_whitespace().collect::<Vec<_>>().join(" ");
        if transcript.is_empty() {
            return Err(at_line(
                line,
                format!("the transcript of {file} is empty; CTC needs at least one label"),
            ));
        }
        let audio = folder.join(file);
        if !audio.is_file() {
            return Err(at_line(
                line,
                format!(
                    "audio file {} does not exist (paths are relative to the manifest's folder)",
                    audio.display()
                ),
            ));
        }
        utterances.push(Utterance {
            path: audio,
            transcript,
            manifest: path.to_path_buf(),
            line,
        });
    }
    if utterances.is_empty() {
        return Err(at_line(2, "no utterances after the header".into()));
    }
    Ok(utterances)
}

/// The default held-out split: utterance i (0-based) is held out when
/// `(i + 1) % UTTERANCES_PER_HELD_OUT == 0`; returns (training, held out).
pub fn split_validation(utterances: Vec<Utterance>) -> (Vec<Utterance>, Vec<Utterance>) {
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, u) in utterances.into_iter().enumerate() {
        if (i + 1) % UTTERANCES_PER_HELD_OUT == 0 {
            valid.push(u);
        } else {
            train.push(u);
        }
    }
    (train, valid)
}

/// Characters ↔ labels: label 0 is the blank, character `chars()[i]` is label i + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    chars: Vec<char>,
}

#[derive(Serialize, Deserialize)]
struct VocabularyJson {
    blank: u32,
    chars: String,
}

impl Vocabulary {
    /// Every character that occurs in `transcripts`, sorted by code point.
    pub fn from_transcripts<'a>(transcripts: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut chars: Vec<char> = transcripts.into_iter().flat_map(str::chars).collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_chars(chars)
    }

    /// The vocabulary whose label i + 1 is `chars[i]`; refuses duplicates and no characters.
    pub fn from_chars(chars: Vec<char>) -> Result<Self> {
        if chars.is_empty() {
            return Err(Error::BadSpeech(
                "the vocabulary has no characters; the transcripts are empty".into(),
            ));
        }
        let mut seen = chars.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::BadSpeech(format!(
                "the vocabulary lists {:?} twice; each character must have one label",
                w[0]
            )));
        }
        Ok(Vocabulary { chars })
    }

    /// The characters, in label order (label 1 first).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Output classes a CTC model needs: the characters plus the blank.
    pub fn classes(&self) -> usize {
        self.chars.len() + 1
    }

    /// The label of `c`, if it is in the vocabulary.
    pub fn label(&self, c: char) -> Option<u32> {
        self.chars
            .iter()
            .position(|&x| x == c)
            .map(|i| i as u32 + 1)
    }

    /// Labels (1..classes) of `text`'s characters; errors on a character outside the
    /// vocabulary, naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.label(c).ok_or_else(|| {
                    Error::BadSpeech(format!(
                        "character {c:?} (U+{:04X}) of {text:?} is not in the vocabulary \
                         {:?}; retrain with transcripts that contain it, or remove it",
                        c as u32,
                        self.chars.iter().collect::<String>()
                    ))
                })
            })
            .collect()
    }

    /// The text of `labels`; blanks are skipped, labels past the vocabulary become U+FFFD.
    pub fn decode(&self, labels: &[u32]) -> String {
        labels
            .iter()
            .filter(|&&l| l != BLANK)
            .map(|&l| {
                self.chars
                    .get(l as usize - 1)
                    .copied()
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect()
    }

    /// Greedy CTC decoding of per-frame best labels: repeats merged, then blanks dropped
    /// ("aa_ab" → "aab").
    pub fn decode_ctc(&self, frame_labels: &[u32]) -> String {
        let mut collapsed = frame_labels.to_vec();
        collapsed.dedup();
        self.decode(&collapsed)
    }

    /// JSON for a checkpoint's `extra` (under [`VOCABULARY_KEY`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&VocabularyJson {
            blank: BLANK,
            chars: self.chars.iter().collect(),
        })
        .expect("vocabulary serializes")
    }

    /// A vocabulary saved by [`Vocabulary::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        let v: VocabularyJson = serde_json::from_str(json).map_err(|e| {
            Error::BadSpeech(format!(
                "the saved vocabulary is not valid JSON for one ({e}); the checkpoint is \
                 damaged or from another program"
            ))
        })?;
        if v.blank != BLANK {
            return Err(Error::BadSpeech(format!(
                "the saved vocabulary puts the blank at {}; this version needs it at {BLANK}",
                v.blank
            )));
        }
        Self::from_chars(v.chars.chars().collect())
    }
}

/// Labels CTC needs frames for: one per label plus one blank between each pair of equal
/// neighbours. An utterance with fewer frames cannot be aligned to its transcript.
pub fn min_frames(labels: &[u32]) -> usize {
    labels.len() + labels.windows(2).filter(|w| w[0] == w[1]).count()
}

/// Settings for loading a corpus.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct SpeechConfig {
    pub mel: MelConfig,
    pub normalization: Normalization,
}

/// What turns an audio file into a model's input: feature settings, normalization and
/// the vocabulary, as saved in a checkpoint's `extra`.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    pub mel: LogMel,
    pub normalization: Normalization,
    /// Present for [`Normalization::Global`].
    pub stats: Option<FeatureStats>,
    pub vocabulary: Vocabulary,
}

impl FrontEnd {
    /// Normalized features of one WAV file.
    pub fn features(&self, path: &Path) -> Result<Features> {
        let mut f = self
            .mel
            .compute(&audio::read_wav_at(path, self.mel.config().sample_rate)?);
        self.normalize(&mut f)?;
        Ok(f)
    }

    fn normalize(&self, f: &mut Features) -> Result<()> {
        match (self.normalization, &self.stats) {
            (Normalization::PerUtterance, _) => {
                audio::normalize_utterance(f);
                Ok(())
            }
            (Normalization::Global, Some(stats)) => stats.apply(f),
            (Normalization::Global, None) => Err(Error::BadSpeech(
                "global normalization needs feature statistics; fit them on the training \
                 set (FeatureStats::fit) or use per-utterance normalization"
                    .into(),
            )),
        }
    }

    /// The entries a checkpoint's `extra` keeps for a speech model.
    pub fn extra(&self) -> BTreeMap<String, String> {
        let mut extra = BTreeMap::new();
        extra.insert(VOCABULARY_KEY.to_string(), self.vocabulary.to_json());
        extra.insert(MEL_CONFIG_KEY.to_string(), self.mel.config().to_json());
        extra.insert(
            FEATURE_NORMALIZATION_KEY.to_string(),
            serde_json::to_string(&self.normalization).expect("enum serializes"),
        );
        if let Some(stats) = &self.stats {
            extra.insert(FEATURE_STATS_KEY.to_string(), stats.to_json());
        }
        extra
    }

    /// The front end saved by [`FrontEnd::extra`].
    pub fn from_extra(extra: &BTreeMap<String, String>) -> Result<Self> {
        let get = |key: &str| {
            extra.get(key).ok_or_else(|| {
                Error::BadSpeech(format!(
                    "the checkpoint has no {key:?} entry; it was not trained on speech, or \
                     was saved by an older version"
                ))
            })
        };
        let vocabulary = Vocabulary::from_json(get(VOCABULARY_KEY)?)?;
        let mel = LogMel::new(MelConfig::from_json(get(MEL_CONFIG_KEY)?)?)?;
        let normalization: Normalization = serde_json::from_str(get(FEATURE_NORMALIZATION_KEY)?)
            .map_err(|e| {
                Error::BadSpeech(format!(
                    "the saved normalization is not one this version knows ({e})"
                ))
            })?;
        let stats = match normalization {
            Normalization::Global => Some(FeatureStats::from_json(get(FEATURE_STATS_KEY)?)?),
            _ => None,
        };
        if let Some(s) = &stats {
            if s.mean.len() != mel.config().bands {
                return Err(Error::BadSpeech(format!(
                    "the saved statistics have {} bands, the mel settings {}; the checkpoint \
                     is inconsistent",
                    s.mean.len(),
                    mel.config().bands
                )));
            }
        }
        Ok(FrontEnd {
            mel,
            normalization,
            stats,
            vocabulary,
        })
    }
}

/// One utterance ready for training: normalized features and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub path: PathBuf,
    pub transcript: String,
    pub labels: Vec<u32>,
    pub features: Features,
}

/// A loaded corpus: training and held-out examples and the front end that made them.
#[derive(Debug, Clone)]
pub struct SpeechCorpus {
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub front_end: FrontEnd,
}

impl SpeechCorpus {
    /// Reads `manifest` (and `validation_manifest`, or holds out every
    /// [`UTTERANCES_PER_HELD_OUT`]-th utterance), computes features, fits the normalization on the
    /// training part, and encodes transcripts. Errors name the manifest line of an
    /// unreadable file or of an utterance too short for its transcript under CTC.
    pub fn load(
        manifest: &Path,
        validation_manifest: Option<&Path>,
        config: &SpeechConfig,
    ) -> Result<Self> {
        let all = read_manifest(manifest)?;
        let (train, valid) = match validation_manifest {
            Some(v) => (all, read_manifest(v)?),
            None => split_validation(all),
        };
        if train.is_empty() || valid.is_empty() {
            return Err(Error::BadSpeech(format!(
                "{} has {} utterances: too few to hold out every {UTTERANCES_PER_HELD_OUT}th; add \
                 utterances or give a separate validation manifest",
                manifest.display(),
                train.len() + valid.len()
            )));
        }
        let vocabulary = Vocabulary::from_transcripts(
            train.iter().chain(&valid).map(|u| u.transcript.as_str()),
        )?;
        let mel = LogMel::new(config.mel.clone())?;
        let raw = |set: &[Utterance]| -> Result<Vec<Features>> {
            set.iter()
                .map(|u| {
                    audio::read_wav_at(&u.path, mel.config().sample_rate)
                        .map(|s| mel.compute(&s))
                        .map_err(|e| u.error(e.to_string()))
                })
                .collect()
        };
        let (train_features, valid_features) = (raw(&train)?, raw(&valid)?);
        let stats = match config.normalization {
            Normalization::Global => Some(FeatureStats::fit(&train_features)?),
            _ => None,
        };
        let front_end = FrontEnd {
            mel,
            normalization: config.normalization,
            stats,
            vocabulary,
        };
        let examples = |set: Vec<Utterance>, features: Vec<Features>| -> Result<Vec<Example>> {
            set.into_iter()
                .zip(features)
                .map(|(u, mut features)| {
                    let labels = front_end.vocabulary.encode(&u.transcript)?;
                    let need = min_frames(&labels);
                    if features.frames() < need {
                        return Err(u.error(format!(
                            "{} gives {} feature frames but its transcript ({} labels) needs \
                             at least {need} for CTC; check the transcript, or remove the line",
                            u.path.display(),
                            features.frames(),
                            labels.len()
                        )));
                    }
                    front_end.normalize(&mut features)?;
                    Ok(Example {
                        path: u.path,
                        transcript: u.transcript,
                        labels,
                        features,
                    })
                })
                .collect()
        };
        let train = examples(train, train_features)?;
        let valid = examples(valid, valid_features)?;
        Ok(SpeechCorpus {
            train,
            valid,
            front_end,
        })
    }

    /// The checkpoint `extra` entries of this corpus's front end.
    pub fn extra(&self) -> BTreeMap<String, String> {
        self.front_end.extra()
    }
}

/// Batches of utterances of similar length: examples sorted by frame count, cut into
/// groups of `batch_size` (the last may be smaller), each group longest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    batches: Vec<Vec<usize>>,
}

impl Buckets {
    /// Buckets for examples with `frames[i]` frames.
    pub fn new(frames: &[usize], batch_size: usize) -> Result<Self> {
        crate::shapes::nonzero("batch size", batch_size)?;
        let mut order: Vec<usize> = (0..frames.len()).collect();
        order.sort_by_key(|&i| frames[i]);
        let batches = order
            .chunks(batch_size)
            .map(|c| c.iter().rev().copied().collect())
            .collect();
        Ok(Buckets { batches })
    }

    /// Buckets for `examples` by their feature frames.
    pub fn for_examples(examples: &[Example], batch_size: usize) -> Result<Self> {
        let frames: Vec<usize> = examples.iter().map(|e| e.features.frames()).collect();
        Self::new(&frames, batch_size)
    }

    /// The batches, each a list of example indices, longest first.
    pub fn batches(&self) -> &[Vec<usize>] {
        &self.batches
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The batches in epoch `epoch`'s order: a shuffle that depends only on (seed, epoch).
    pub fn epoch(&self, seed: u64, epoch: u64) -> Vec<&[usize]> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        let mut order: Vec<usize> = (0..self.batches.len()).collect();
        order.shuffle(&mut rng);
        order
            .into_iter()
            .map(|i| self.batches[i].as_slice())
            .collect()
    }
}

/// A padded batch for a CTC model.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechBatch {
    /// Steps: the longest row's frames.
    pub t: usize,
    /// Rows.
    pub b: usize,
    /// Feature bands per step.
    pub bands: usize,
    /// (T, B, bands), time-major; row b is zero past `input_lengths[b]`.
    pub x: Vec<f32>,
    /// Frames of each row.
    pub input_lengths: Vec<usize>,
    /// Every row's labels, one row after another.
    pub labels: Vec<u32>,
    /// Labels of each row.
    pub label_lengths: Vec<usize>,
    /// The example index of each row.
    pub rows: Vec<usize>,
}

/// The batch of `examples[rows[0]]`, `examples[rows[1]]`, …, right-padded with zeros.
pub fn collate(examples: &[Example], rows: &[usize]) -> Result<SpeechBatch> {
    crate::shapes::nonzero("batch rows", rows.len())?;
    let picked: Vec<&Example> = rows.iter().map(|&r| &examples[r]).collect();
    let bands = picked[0].features.bands();
    if let Some(e) = picked.iter().find(|e| e.features.bands() != bands) {
        return Err(Error::BadSpeech(format!(
            "{} has {} feature bands, other rows {bands}; compute all features alike",
            e.path.display(),
            e.features.bands()
        )));
    }
    let b = picked.len();
    let t = picked
        .iter()
        .map(|e| e.features.frames())
        .max()
        .unwrap_or(0);
    crate::shapes::nonzero("batch frames", t)?;
    let mut x = vec![0f32; t * b * bands];
    for (row, e) in picked.iter().enumerate() {
        for step in 0..e.features.frames() {
            let at = (step * b + row) * bands;
            x[at..at + bands].copy_from_slice(e.features.frame(step));
        }
    }
    Ok(SpeechBatch {
        t,
        b,
        bands,
        x,
        input_lengths: picked.iter().map(|e| e.features.frames()).collect(),
        labels: picked
            .iter()
            .flat_map(|e| e.labels.iter().copied())
            .collect(),
        label_lengths: picked.iter().map(|e| e.labels.len()).collect(),
        rows: rows.to_vec(),
    })
}

/// Levenshtein distance: fewest insertions, deletions and substitutions turning `a` into `b`.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Edits summed over utterances and the references' summed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorRate {
    pub edits: usize,
    pub reference_length: usize,
}

impl ErrorRate {
    /// edits / reference length; 0 when both are 0, infinite for edits against empty
    /// references.
    pub fn rate(&self) -> f64 {
        match (self.edits, self.reference_length) {
            (0, _) => 0.0,
            (_, 0) => f64::INFINITY,
            (e, n) => e as f64 / n as f64,
        }
    }
}

/// Character error rate over (reference, hypothesis) pairs; spaces count as characters.
pub fn character_error_rate<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ErrorRate {
    error_rate(pairs, |s| s.chars().map(|c| c.to_string()).collect())
}

/// Word error rate over (reference, hypothesis) pairs; words are split at whitespace.
pub fn word_error_rate<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ErrorRate {
    error_rate(pairs, |s| {
        s.split_whitespace().map(str::to_string).collect()
    })
}

fn error_rate<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    tokens: impl Fn(&str) -> Vec<String>,
) -> ErrorRate {
    let mut total = ErrorRate::default();
    for (reference, hypothesis) in pairs {
        let (r, h) = (tokens(reference), tokens(hypothesis));
        total.edits += edit_distance(&r, &h);
        total.reference_length += r.len();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_hand_cases() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("", "ab"), 2);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("flaw", "lawn"), 2);
        assert_eq!(d("abc", "abc"), 0);
        assert_eq!(d("ab", "ba"), 2);
    }

    #[test]
    fn cer_and_wer_sum_edits_over_utterances_before_dividing() {
        // "one two three" vs "one too three": 1 word of 3; chars "two"→"too" is 1 edit of 13.
        // "four" vs "": 1 word deleted of 1; 4 chars of 4.
        let pairs = [("one two three", "one too three"), ("four", "")];
        let w = word_error_rate(pairs);
        assert_eq!((w.edits, w.reference_length), (2, 4));
        assert_eq!(w.rate(), 0.5);
        let c = character_error_rate(pairs);
        assert_eq!((c.edits, c.reference_length), (5, 17));
        assert!((c.rate() - 5.0 / 17.0).abs() < 1e-12);
        // Not the mean of per-utterance rates (1/3 and 1 → 2/3).
        assert!((w.rate() - 2.0 / 3.0).abs() > 0.1);
        // Insertions can push a rate past 1.
        assert_eq!(word_error_rate([("a", "a b c")]).rate(), 2.0);
        assert_eq!(word_error_rate([("  one   two ", "one two")]).rate(), 0.0);
        assert_eq!(ErrorRate::default().rate(), 0.0);
        assert_eq!(character_error_rate([("", "x")]).rate(), f64::INFINITY);
    }

    #[test]
    fn vocabulary_puts_blank_at_zero_and_characters_in_order() {
        let v = Vocabulary::from_transcripts(["two one", "one"]).unwrap();
        assert_eq!(v.chars(), &[' ', 'e', 'n', 'o', 't', 'w']);
        assert_eq!(v.classes(), 7);
        assert_eq!(v.label(' '), Some(1));
        let labels = v.encode("one two").unwrap();
        assert!(labels.iter().all(|&l| l != BLANK));
        assert_eq!(labels, [4, 3, 2, 1, 5, 6, 4]);
        assert_eq!(v.decode(&labels), "one two");
        assert_eq!(v.decode(&[0, 4, 0, 3]), "on");
        assert_eq!(v.decode_ctc(&[0, 4, 4, 0, 3, 3, 2, 0, 2]), "onee");
        let e = v.encode("one3").unwrap_err().to_string();
        assert!(
            e.contains("'3'") && e.contains("not in the vocabulary"),
            "{e}"
        );
        let saved = v.to_json();
        assert_eq!(Vocabulary::from_json(&saved).unwrap(), v);
        assert!(Vocabulary::from_json(r#"{"blank":1,"chars":"ab"}"#).is_err());
        assert!(Vocabulary::from_json(r#"{"blank":0,"chars":"aba"}"#).is_err());
        assert!(Vocabulary::from_json(r#"{"blank":0,"chars":""}"#).is_err());
        assert!(Vocabulary::from_json("[").is_err());
    }

    #[test]
    fn ctc_needs_a_frame_between_repeated_labels() {
        assert_eq!(min_frames(&[1, 2, 3]), 3);
        assert_eq!(min_frames(&[1, 1, 2, 2, 2]), 8);
        assert_eq!(min_frames(&[]), 0);
    }

    fn example(frames: usize, labels: Vec<u32>, value: f32) -> Example {
        Example {
            path: PathBuf::from(format!("{frames}.wav")),
            transcript: String::new(),
            labels,
            features: Features::new(frames, 2, vec![value; frames * 2]).unwrap(),
        }
    }

    #[test]
    fn buckets_group_similar_lengths_longest_first() {
        let frames = [5, 1, 9, 3, 7, 2, 8];
        let buckets = Buckets::new(&frames, 3).unwrap();
        // Sorted: 1(1) 2(5) 3(3) | 5(0) 7(4) 8(6) | 9(2).
        assert_eq!(buckets.batches(), &[vec![3, 5, 1], vec![6, 4, 0], vec![2]]);
        for batch in buckets.batches() {
            assert!(batch.windows(2).all(|w| frames[w[0]] >= frames[w[1]]));
        }
        assert!(Buckets::new(&frames, 0).is_err());
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let frames: Vec<usize> = (0..40).collect();
        let buckets = Buckets::new(&frames, 4).unwrap();
        let a = buckets.epoch(7, 0);
        assert_eq!(a, buckets.epoch(7, 0));
        assert_ne!(a, buckets.epoch(7, 1));
        assert_ne!(a, buckets.epoch(8, 0));
        let mut seen: Vec<usize> = a.iter().flat_map(|b| b.iter().copied()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn collate_pads_time_major_and_reports_lengths() {
        let examples = [
            example(2, vec![1], 1.0),
            example(4, vec![2, 3], 2.0),
            example(3, vec![4, 5, 6], 3.0),
        ];
        let batch = collate(&examples, &[1, 2, 0]).unwrap();
        assert_eq!((batch.t, batch.b, batch.bands), (4, 3, 2));
        assert_eq!(batch.input_lengths, [4, 3, 2]);
        assert_eq!(batch.labels, [2, 3, 4, 5, 6, 1]);
        assert_eq!(batch.label_lengths, [2, 3, 1]);
        assert_eq!(batch.rows, [1, 2, 0]);
        // x[t][b][k]: row 0 holds 2.0 for 4 steps, row 1 3.0 for 3, row 2 1.0 for 2, else 0.
        let at = |t: usize, b: usize| batch.x[(t * 3 + b) * 2];
        let want = [
            [2.0, 3.0, 1.0],
            [2.0, 3.0, 1.0],
            [2.0, 3.0, 0.0],
            [2.0, 0.0, 0.0],
        ];
        for (t, row) in want.iter().enumerate() {
            for (b, &v) in row.iter().enumerate() {
                assert_eq!(at(t, b), v, "t {t} b {b}");
                assert_eq!(batch.x[(t * 3 + b) * 2 + 1], v);
            }
        }
        assert!(collate(&examples, &[]).is_err());
    }
}

/// Frames of a training batch are rounded up to a multiple of this (zero rows past each
/// row's length), so that bucketed batches come in few shapes and the GPU trainer keeps
/// reusing its buffers instead of building new ones for every length.
pub const FRAME_QUANTUM: usize = 64;

/// Speech recognition as a training task: CTC over characters (blank 0) from log-mel
/// frames, length-bucketed batches of a fixed size, a new shuffle of the buckets each
/// epoch, and the held-out utterances as one validation batch.
#[derive(Debug, Clone)]
pub struct SpeechTask {
    pub corpus: SpeechCorpus,
    buckets: Buckets,
}

impl SpeechTask {
    /// Training uses PyTorch's `nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)`:
    /// an utterance too short for its transcript adds nothing instead of an infinite loss
    /// (loading already refuses those, so this is a safety net).
    pub const LOSS: crate::train::LossKind = crate::train::LossKind::Ctc {
        blank: BLANK,
        zero_infinity: true,
    };

    /// Batches of `batch_size` utterances of similar length from `corpus.train`.
    pub fn new(corpus: SpeechCorpus, batch_size: usize) -> Result<Self> {
        let buckets = Buckets::for_examples(&corpus.train, batch_size)?;
        Ok(SpeechTask { corpus, buckets })
    }

    /// (feature bands, classes including the blank).
    pub fn io(&self) -> (usize, usize) {
        (
            self.corpus.front_end.mel.config().bands,
            self.corpus.front_end.vocabulary.classes(),
        )
    }

    /// Training batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.buckets.len()
    }

    /// The training batch of `step` (0-based): epoch step / batches, in that epoch's order.
    pub fn batch(&self, seed: u64, step: u64) -> Result<Batch> {
        let n = self.buckets.len().max(1) as u64;
        let order = self.buckets.epoch(seed, step / n);
        let rows = order[(step % n) as usize];
        to_batch(collate(&self.corpus.train, rows)?, FRAME_QUANTUM)
    }

    /// Every held-out utterance, in one batch (padded to the longest).
    pub fn validation(&self) -> Result<Batch> {
        to_batch(self.validation_batch()?, 1)
    }

    /// The held-out utterances collated (for decoding them: CER and WER).
    pub fn validation_batch(&self) -> Result<SpeechBatch> {
        let rows: Vec<usize> = (0..self.corpus.valid.len()).collect();
        collate(&self.corpus.valid, &rows)
    }
}

/// A collated batch as a CTC training batch, its frames padded to a multiple of `quantum`.
pub fn to_batch(s: SpeechBatch, quantum: usize) -> Result<Batch> {
    let t = s.t.div_ceil(quantum.max(1)) * quantum.max(1);
    let mut x = s.x;
    x.resize(t * s.b * s.bands, 0.0);
    let labels = crate::ctc::Labels {
        labels: s.labels,
        lengths: s.label_lengths,
    };
    Batch::new(t, s.b, x, crate::train::Targets::Labels(labels))?.with_lengths(s.input_lengths)
}
