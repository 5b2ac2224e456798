//! Character-level text: a vocabulary, interleaved held-out chunks, and B parallel
//! streams of training text (stateful truncated BPTT).

use crate::error::{Error, Result};
use crate::train::{Batch, Targets};

/// The default text corpus: a snapshot of this project's own README and sources taken on
/// 2026-12-06, frozen so that the default run's figures hold as the code grows.
pub const DEFAULT_CORPUS: &str = include_str!("default_corpus.txt");

/// The text task's default token embedding dimension (`wgpu-rnn train --embedding`, the
/// page's `embedding`); 0 would read one-hot characters. Chosen by measurement: README,
/// "Measured".
pub const DEFAULT_EMBEDDING: usize = 64;

/// Characters per chunk when a text is split into training and validation parts (fewer
/// for texts under 20 such chunks, so that every text has at least 20 chunks).
pub const TEXT_CHUNK: usize = 1024;

/// Every `CHUNKS_PER_HELD_OUT`-th chunk of a text (the 10th, 20th, ...) is held out.
pub const CHUNKS_PER_HELD_OUT: usize = 10;

/// Character-level language modelling on a UTF-8 text.
///
/// The text is cut into chunks of [`TEXT_CHUNK`] characters; every
/// [`CHUNKS_PER_HELD_OUT`]-th whole chunk is held out for validation (about 10 %, drawn from
/// all over the text rather than from its end), the other chunks, and a shorter last one,
/// are joined in order as the training text.
#[derive(Debug, Clone)]
pub struct Text {
    pub vocab: Vec<char>,
    train: Vec<u32>,
    /// The held-out chunks, one after another, each `chunk` characters long.
    val: Vec<u32>,
    chunk: usize,
    held_out: Vec<std::ops::Range<usize>>,
    /// Batches hold token ids (for a model with an embedding) rather than one-hot rows.
    tokens: bool,
}

impl Text {
    /// Vocabulary from the corpus; interleaved chunks held out for validation. Refuses an
    /// empty text, one that looks binary (a NUL, or more than 1 % control characters other
    /// than tab, newline, carriage return, vertical tab, form feed and escape) and one too
    /// short to split.
    pub fn new(corpus: &str) -> Result<Self> {
        if corpus.is_empty() {
            return Err(Error::BadText(
                "the text is empty; give at least 200 characters of UTF-8 text".into(),
            ));
        }
        let control = |c: &char| {
            c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1b')
        };
        let n = corpus.chars().filter(control).count();
        if corpus.contains('\0') || n > corpus.chars().count() / 100 {
            let (at, c) = corpus
                .chars()
                .enumerate()
                .find(|(_, c)| control(c))
                .unwrap_or((0, '\0'));
            return Err(Error::BadText(format!(
                "the text looks binary: it has {n} control character(s), the first \
                 U+{:04X} at character {at}; give plain UTF-8 text",
                c as u32
            )));
        }
        let mut vocab: Vec<char> = corpus.chars().collect();
        vocab.sort_unstable();
        vocab.dedup();
        let ids: Vec<u32> = corpus
            .chars()
            .map(|c| vocab.binary_search(&c).unwrap_or(0) as u32)
            .collect();
        if ids.len() < 200 || vocab.len() < 2 {
            return Err(Error::BadText(format!(
                "the text has {} characters and {} distinct ones; at least 200 and 2 are needed",
                ids.len(),
                vocab.len()
            )));
        }
        let chunk = (ids.len() / (2 * CHUNKS_PER_HELD_OUT)).min(TEXT_CHUNK);
        let held_out: Vec<_> = (0..ids.len() / chunk)
            .filter(|k| k % CHUNKS_PER_HELD_OUT == CHUNKS_PER_HELD_OUT - 1)
            .map(|k| k * chunk..(k + 1) * chunk)
            .collect();
        let mut train = Vec::with_capacity(ids.len());
        let mut val = Vec::with_capacity(held_out.len() * chunk);
        let mut at = 0;
        for r in &held_out {
            train.extend_from_slice(&ids[at..r.start]);
            val.extend_from_slice(&ids[r.clone()]);
            at = r.end;
        }
        train.extend_from_slice(&ids[at..]);
        Ok(Text {
            vocab,
            train,
            val,
            chunk,
            held_out,
            tokens: false,
        })
    }

    /// Batches of token ids (T, B), for a model with an embedding (`true`), or of one-hot
    /// rows (T, B, V) (`false`, the default).
    pub fn with_token_inputs(mut self, tokens: bool) -> Self {
        self.tokens = tokens;
        self
    }

    /// The batch of `inputs` (T, B) and next-character `targets`, as ids or one-hot rows.
    fn make_batch(&self, t: usize, b: usize, inputs: Vec<u32>, targets: Vec<u32>) -> Batch {
        let (x, tokens) = match self.tokens {
            true => (Vec::new(), Some(inputs)),
            false => (self.one_hot(&inputs), None),
        };
        Batch {
            t,
            b,
            x,
            tokens,
            targets: Targets::Classes(targets),
            weights: vec![1.0; t * b],
            lengths: None,
        }
    }

    /// The corpus's held-out character ranges (character indices, not bytes).
    pub fn held_out(&self) -> &[std::ops::Range<usize>] {
        &self.held_out
    }

    /// Characters in the training text.
    pub fn training_len(&self) -> usize {
        self.train.len()
    }

    /// Rebuilds a task from a saved vocabulary (for sampling).
    pub fn from_vocab(vocab: Vec<char>) -> Self {
        Text {
            vocab,
            train: Vec::new(),
            val: Vec::new(),
            chunk: 0,
            held_out: Vec::new(),
            tokens: false,
        }
    }

    /// Checks that a model saved with vocabulary `saved` (a checkpoint's) reads this text.
    pub fn check_vocab(&self, saved: &[char]) -> Result<()> {
        if self.vocab == saved {
            return Ok(());
        }
        let missing = self.vocab.iter().filter(|c| !saved.contains(c)).count();
        Err(Error::BadText(format!(
            "the checkpoint's vocabulary has {} characters and this text's has {}{}; \
             use the text the model was trained on",
            saved.len(),
            self.vocab.len(),
            if missing > 0 {
                format!(" ({missing} of them not in the checkpoint's)")
            } else {
                String::new()
            }
        )))
    }

    /// Checks that the training text feeds one batch of `b` streams of `t` + 1
    /// characters: at least b·(t + 2) training characters (about a tenth of a text is
    /// held out, so the whole text needs about a ninth more).
    pub fn check_batch(&self, t: usize, b: usize) -> Result<()> {
        let needed = b * (t + 2);
        if self.train.len() >= needed {
            return Ok(());
        }
        Err(Error::BadText(format!(
            "the text has {} training characters, and one batch of {b} streams of {t}+1 \
             characters needs at least {needed} (about {} characters of text with the \
             held-out part); use a longer text or a smaller batch or sequence length",
            self.train.len(),
            needed + needed / (CHUNKS_PER_HELD_OUT - 1) + 1
        )))
    }

    pub fn index(&self, c: char) -> Option<u32> {
        self.vocab.binary_search(&c).ok().map(|i| i as u32)
    }

    fn one_hot(&self, ids: &[u32]) -> Vec<f32> {
        let v = self.vocab.len();
        let mut x = vec![0.0; ids.len() * v];
        for (k, &id) in ids.iter().enumerate() {
            x[k * v + id as usize] = 1.0;
        }
        x
    }

    /// B parallel streams over the training text, each advancing T characters a step.
    pub(super) fn batch(&self, step: u64, t: usize, b: usize) -> Result<(Batch, bool)> {
        self.check_batch(t, b)?;
        let stream = self.train.len() / b;
        let chunks = ((stream - 1) / t) as u64;
        let chunk = step % chunks;
        let mut inputs = Vec::with_capacity(t * b);
        let mut targets = Vec::with_capacity(t * b);
        for s in 0..t {
            for r in 0..b {
                let at = r * stream + chunk as usize * t + s;
                inputs.push(self.train[at]);
                targets.push(self.train[at + 1]);
            }
        }
        Ok((self.make_batch(t, b, inputs, targets), chunk == 0))
    }

    /// The whole validation part as one stream per held-out chunk, from h_0 = 0, so that
    /// no stream runs from one chunk into an unrelated one: B = chunks, T = chunk − 1.
    pub(super) fn validation(&self) -> Result<Batch> {
        if self.val.is_empty() {
            return Err(Error::BadText(
                "this task holds no validation text (it was built from a vocabulary alone)".into(),
            ));
        }
        let b = self.held_out.len();
        let t = self.chunk - 1;
        let mut inputs = Vec::with_capacity(t * b);
        let mut targets = Vec::with_capacity(t * b);
        for s in 0..t {
            for r in 0..b {
                inputs.push(self.val[r * self.chunk + s]);
                targets.push(self.val[r * self.chunk + s + 1]);
            }
        }
        Ok(self.make_batch(t, b, inputs, targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_texts_say_why_and_what_is_needed() {
        let msg = |r: Result<Text>| r.unwrap_err().to_string();
        assert!(msg(Text::new("")).contains("empty"));
        let binary: String = "abc\u{0}\u{1}".repeat(100);
        let m = msg(Text::new(&binary));
        assert!(
            m.contains("binary")
                && m.contains("200 control")
                && m.contains("U+0000 at character 3"),
            "{m}"
        );
        // Tabs, newlines, carriage returns, form feeds and escapes are text, and so is a
        // stray control character in a long text; a NUL is not.
        Text::new(&"a\tb\r\n\x0c\x1b[0m".repeat(60)).unwrap();
        Text::new(&format!("{}\x07", "abcdefghij".repeat(30))).unwrap();
        assert!(msg(Text::new(&format!("{}\0", "abcdefghij".repeat(30)))).contains("binary"));
        let t = Text::new(&"abcdefghij".repeat(30)).unwrap();
        t.check_batch(10, 2).unwrap();
        let m = t.check_batch(48, 32).unwrap_err().to_string();
        assert!(
            m.contains(&format!("has {} training characters", t.training_len())),
            "{m}"
        );
        assert!(m.contains("at least 1600"), "{m}");
        assert!(matches!(t.batch(0, 48, 32), Err(Error::BadText(_))));
    }

    #[test]
    fn token_batches_hold_the_ids_the_one_hot_rows_encode() {
        let one_hot = Text::new(DEFAULT_CORPUS).unwrap();
        let ids = one_hot.clone().with_token_inputs(true);
        let v = one_hot.vocab.len();
        for (a, b) in [
            (
                one_hot.batch(3, 8, 4).unwrap().0,
                ids.batch(3, 8, 4).unwrap().0,
            ),
            (one_hot.validation().unwrap(), ids.validation().unwrap()),
        ] {
            assert!(a.tokens.is_none() && b.x.is_empty());
            assert_eq!((a.targets, a.t, a.b), (b.targets, b.t, b.b));
            let tokens = b.tokens.unwrap();
            for (k, &id) in tokens.iter().enumerate() {
                let row = &a.x[k * v..(k + 1) * v];
                assert_eq!(row.iter().position(|&x| x == 1.0), Some(id as usize));
            }
        }
    }

    #[test]
    fn a_vocabulary_mismatch_names_both_sizes() {
        let t = Text::new(&"abcdefghij".repeat(30)).unwrap();
        t.check_vocab(&t.vocab.clone()).unwrap();
        let m = t.check_vocab(&['a', 'b', 'c']).unwrap_err().to_string();
        assert!(m.contains("has 3 characters and this text's has 10"), "{m}");
        assert!(m.contains("7 of them not in the checkpoint's"), "{m}");
    }

    fn decode(t: &Text, ids: &[u32]) -> String {
        ids.iter().map(|&i| t.vocab[i as usize]).collect()
    }

    #[test]
    fn text_validation_is_every_tenth_chunk_about_a_tenth_of_the_corpus() {
        let corpus: Vec<char> = DEFAULT_CORPUS.chars().collect();
        let t = Text::new(DEFAULT_CORPUS).unwrap();
        let held: usize = t.held_out().iter().map(|r| r.len()).sum();
        assert_eq!(held + t.training_len(), corpus.len());
        let share = held as f64 / corpus.len() as f64;
        assert!((0.08..=0.11).contains(&share), "held out {share}");
        // Interleaved: chunks 9, 19, ... of TEXT_CHUNK characters, spread over the corpus.
        for (k, r) in t.held_out().iter().enumerate() {
            let c = (CHUNKS_PER_HELD_OUT * (k + 1) - 1) * TEXT_CHUNK;
            assert_eq!(*r, c..c + TEXT_CHUNK);
        }
        assert!(t.held_out().last().unwrap().end > corpus.len() * 3 / 4);
        assert!(t.held_out()[0].start < corpus.len() / 4);
        // The training text is the rest, in order.
        let mut rest = String::new();
        let mut at = 0;
        for r in t.held_out() {
            rest.extend(&corpus[at..r.start]);
            at = r.end;
        }
        rest.extend(&corpus[at..]);
        assert_eq!(decode(&t, &t.train), rest);
    }

    #[test]
    fn text_validation_streams_each_stay_inside_one_held_out_chunk() {
        let corpus: Vec<char> = DEFAULT_CORPUS.chars().collect();
        let t = Text::new(DEFAULT_CORPUS).unwrap();
        let v = t.validation().unwrap();
        assert_eq!((v.t, v.b), (TEXT_CHUNK - 1, t.held_out().len()));
        let Targets::Classes(y) = &v.targets else {
            panic!("text targets are classes")
        };
        let vocab = t.vocab.len();
        for (r, range) in t.held_out().iter().enumerate() {
            let chunk: String = corpus[range.clone()].iter().collect();
            let inputs: Vec<u32> = (0..v.t)
                .map(|s| {
                    let k = s * v.b + r;
                    v.x[k * vocab..(k + 1) * vocab]
                        .iter()
                        .position(|&x| x == 1.0)
                        .unwrap() as u32
                })
                .collect();
            let targets: Vec<u32> = (0..v.t).map(|s| y[s * v.b + r]).collect();
            let chunk_chars: Vec<char> = chunk.chars().collect();
            assert_eq!(
                decode(&t, &inputs),
                chunk_chars[..v.t].iter().collect::<String>()
            );
            assert_eq!(
                decode(&t, &targets),
                chunk_chars[1..].iter().collect::<String>()
            );
        }
    }

    #[test]
    fn text_split_is_deterministic_and_short_texts_still_hold_out_a_tenth() {
        let a = Text::new(DEFAULT_CORPUS).unwrap();
        let b = Text::new(DEFAULT_CORPUS).unwrap();
        assert_eq!(
            (&a.train, &a.val, a.held_out()),
            (&b.train, &b.val, b.held_out())
        );
        // 200 characters (the least accepted): 20 chunks of 10.
        let short: String = "0123456789".repeat(20);
        let t = Text::new(&short).unwrap();
        assert_eq!(t.held_out(), [90..100, 190..200]);
        let v = t.validation().unwrap();
        assert_eq!((v.t, v.b), (9, 2));
        assert!(Text::from_vocab(a.vocab.clone()).validation().is_err());
    }
}
