//! The speech data path from files: WAV input and its refusals, manifests and their
//! errors, corpus loading with both held-out rules, the front end saved in a checkpoint's
//! `extra`, and the espeak-ng digits corpus of `examples/speech-digits.sh` (ignored by
//! default: it needs espeak-ng; CI runs it with `--ignored`).

use std::path::{Path, PathBuf};
use std::process::Command;

use wgpu_rnn::data::audio::{self, frame_count, MelConfig, SAMPLE_RATE};
use wgpu_rnn::data::speech::{self, collate, Buckets, FrontEnd, SpeechConfig, SpeechCorpus};
use wgpu_rnn::Error;

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-speech-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tone(hz: f32, samples: usize, rate: u32) -> Vec<f32> {
    (0..samples)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
        .collect()
}

fn write_spec(path: &Path, spec: hound::WavSpec, frames: usize, sample: impl Fn(usize) -> f64) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames * usize::from(spec.channels) {
        let v = sample(i);
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
            (_, 8) => w.write_sample((v * 127.0) as i8).unwrap(),
            (_, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
            (_, bits) => w
                .write_sample((v * ((1i64 << (bits - 1)) - 1) as f64) as i32)
                .unwrap(),
        }
    }
    w.finalize().unwrap();
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

fn audio_error(path: &Path) -> String {
    match audio::read_wav(path) {
        Err(e @ Error::Audio { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            message
        }
        other => panic!("{}: expected an audio error, got {other:?}", path.display()),
    }
}

#[test]
fn wav_reader_accepts_16_bit_and_float_mono_at_16khz() {
    let dir = scratch("accept");
    let samples = tone(440.0, 1600, SAMPLE_RATE);
    let int = dir.join("int.wav");
    audio::write_wav(&int, &samples, SAMPLE_RATE).unwrap();
    let read = audio::read_wav(&int).unwrap();
    assert_eq!(read.len(), 1600);
    let worst = read
        .iter()
        .zip(&samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1.0 / 16000.0, "16-bit round trip off by {worst}");

    let float = dir.join("float.wav");
    write_spec(&float, spec(1, SAMPLE_RATE, 32, true), 800, |i| {
        0.25 + i as f64 * 1e-4
    });
    let read = audio::read_wav(&float).unwrap();
    assert_eq!(read.len(), 800);
    assert_eq!(read[10], (0.25 + 10.0 * 1e-4) as f32);
}

#[test]
fn stereo_is_averaged_to_mono() {
    let dir = scratch("stereo");
    let path = dir.join("stereo.wav");
    // Left 0.5, right -0.25 → mono 0.125.
    write_spec(&path, spec(2, SAMPLE_RATE, 16, false), 500, |i| {
        if i % 2 == 0 {
            0.5
        } else {
            -0.25
        }
    });
    let read = audio::read_wav(&path).unwrap();
    assert_eq!(read.len(), 500);
    assert!(
        read.iter().all(|&x| (x - 0.125).abs() < 1e-3),
        "{:?}",
        &read[..4]
    );
}

#[test]
fn other_sample_rates_are_resampled_to_16khz() {
    let dir = scratch("rate");
    for rate in [22_050, 44_100, 8_000] {
        let path = dir.join(format!("{rate}.wav"));
        let seconds = 0.5;
        let n = (rate as f32 * seconds) as usize;
        let samples = tone(1000.0, n, rate);
        audio::write_wav(&path, &samples, rate).unwrap();
        let read = audio::read_wav(&path).unwrap();
        let want = (n as f64 * 16_000.0 / rate as f64).ceil() as usize;
        assert_eq!(read.len(), want, "{rate} Hz");
        // Still a 1 kHz tone: count zero crossings in the middle (2 per period).
        let mid = &read[1000..7000];
        let crossings = mid
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let hz = crossings as f32 / 2.0 / (mid.len() as f32 / 16_000.0);
        assert!((hz - 1000.0).abs() < 10.0, "{rate} Hz → {hz} Hz");
    }
}

#[test]
fn wav_reader_refuses_bad_files_naming_them() {
    let dir = scratch("refuse");

    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert!(audio_error(&empty).contains("empty"));

    let text = dir.join("notes.wav");
    std::fs::write(&text, "path,transcript\nthis is not audio\n").unwrap();
    let m = audio_error(&text);
    assert!(m.contains("not a readable WAV") && m.contains("sox"), "{m}");

    let truncated = dir.join("truncated.wav");
    audio::write_wav(&truncated, &tone(300.0, 4000, SAMPLE_RATE), SAMPLE_RATE).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 3001]).unwrap();
    let m = audio_error(&truncated);
    assert!(m.contains("truncated") && m.contains("4000"), "{m}");

    let header_only = dir.join("header-only.wav");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    audio_error(&header_only);

    let no_samples = dir.join("no-samples.wav");
    audio::write_wav(&no_samples, &[], SAMPLE_RATE).unwrap();
    assert!(audio_error(&no_samples).contains("no samples"));

    for (bits, float, name) in [
        (24, false, "24-bit integer"),
        (8, false, "8-bit integer"),
        (32, false, "32-bit integer"),
    ] {
        let path = dir.join(format!("{bits}.wav"));
        write_spec(&path, spec(1, SAMPLE_RATE, bits, float), 100, |_| 0.1);
        let m = audio_error(&path);
        assert!(
            m.contains(name) && m.contains("16-bit integer and 32-bit float"),
            "{m}"
        );
    }

    let missing = dir.join("missing.wav");
    let e = audio::read_wav(&missing).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("missing.wav"),
        "{e}"
    );
}

/// Writes `n` tone utterances and a manifest `name` listing them with transcripts
/// "a", "ab", "abc", … (cycling), returning the manifest's path.
fn tone_corpus(dir: &Path, name: &str, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("audio")).unwrap();
    let mut manifest = String::from("path,transcript\n");
    for i in 0..n {
        let file = format!("audio/{name}-{i}.wav");
        // 0.2 to 0.2 + n·0.02 s: lengths differ, so bucketing has something to sort.
        let samples = 3200 + 320 * ((i * 7) % n);
        audio::write_wav(
            &dir.join(&file),
            &tone(200.0 + 50.0 * i as f32, samples, SAMPLE_RATE),
            SAMPLE_RATE,
        )
        .unwrap();
        let transcript: String = "abcd".chars().take(1 + i % 4).collect();
        manifest += &format!("{file},{transcript}\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, manifest).unwrap();
    path
}

fn manifest_error(dir: &Path, text: &str) -> (u64, String) {
    let path = dir.join("bad.csv");
    std::fs::write(&path, text).unwrap();
    match speech::read_manifest(&path) {
        Err(e @ Error::Manifest { line, .. }) => {
            let m = e.to_string();
            assert!(m.contains("bad.csv"), "{m}");
            (line, m)
        }
        other => panic!("{text:?}: expected a manifest error, got {other:?}"),
    }
}

#[test]
fn manifest_errors_name_the_line() {
    let dir = scratch("manifest");
    audio::write_wav(
        &dir.join("a.wav"),
        &tone(300.0, 4000, SAMPLE_RATE),
        SAMPLE_RATE,
    )
    .unwrap();
    let (line, m) = manifest_error(&dir, "");
    assert!(line == 1 && m.contains("empty"), "{m}");
    let (line, m) = manifest_error(&dir, "file,text\na.wav,one\n");
    assert!(line == 1 && m.contains("path,transcript"), "{m}");
    let (line, m) = manifest_error(&dir, "path,transcript\na.wav,one\na.wav,one,two\n");
    assert!(line == 3 && m.contains("3 fields"), "{m}");
    let (line, m) = manifest_error(&dir, "path,transcript\na.wav,one\n\n\na.wav,  \n");
    assert!(
        line == 5 && m.contains("transcript of a.wav is empty"),
        "{m}"
    );
    let (line, m) = manifest_error(&dir, "path,transcript\na.wav,one\nb.wav,two\n");
    assert!(
        line == 3 && m.contains("b.wav") && m.contains("does not exist"),
        "{m}"
    );
    let (line, m) = manifest_error(&dir, "path,transcript\n,one\n");
    assert!(line == 2 && m.contains("path is empty"), "{m}");
    let (_, m) = manifest_error(&dir, "path,transcript\n");
    assert!(m.contains("no utterances"), "{m}");

    // Quoted commas, whitespace runs, and paths from the manifest's folder.
    let sub = dir.join("lists");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        sub.join("m.csv"),
        "Path,Transcript\n../a.wav,\"  one,  two \"\n",
    )
    .unwrap();
    let u = speech::read_manifest(&sub.join("m.csv")).unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].transcript, "one, two");
    assert_eq!(u[0].path, sub.join("../a.wav"));
    assert_eq!(u[0].line, 2);
}

#[test]
fn corpus_holds_out_every_tenth_utterance_by_default() {
    let dir = scratch("split");
    let manifest = tone_corpus(&dir, "all.csv", 25);
    let corpus = SpeechCorpus::load(&manifest, None, &SpeechConfig::default()).unwrap();
    assert_eq!((corpus.train.len(), corpus.valid.len()), (23, 2));
    let held: Vec<String> = corpus
        .valid
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(held, ["all.csv-9.wav", "all.csv-19.wav"]);
    assert_eq!(corpus.front_end.vocabulary.chars(), &['a', 'b', 'c', 'd']);
    assert_eq!(corpus.front_end.vocabulary.classes(), 5);
    for e in corpus.train.iter().chain(&corpus.valid) {
        assert_eq!(e.features.bands(), 40);
        let samples = audio::read_wav(&e.path).unwrap().len();
        assert_eq!(
            e.features.frames(),
            frame_count(samples, &MelConfig::default())
        );
        assert!(e.features.data().iter().all(|x| x.is_finite()));
        assert_eq!(corpus.front_end.vocabulary.decode(&e.labels), e.transcript);
    }
    // Global normalization is fitted on the training part: its bands average to 0.
    let stats = corpus.front_end.stats.as_ref().unwrap();
    let frames: usize = corpus.train.iter().map(|e| e.features.frames()).sum();
    assert_eq!(stats.frames, frames as u64);
    for band in [0, 10, 39] {
        let sum: f64 = corpus
            .train
            .iter()
            .flat_map(|e| {
                (0..e.features.frames()).map(move |t| f64::from(e.features.frame(t)[band]))
            })
            .sum();
        assert!((sum / frames as f64).abs() < 1e-3, "band {band}");
    }

    let few = tone_corpus(&scratch("few"), "few.csv", 5);
    let e = SpeechCorpus::load(&few, None, &SpeechConfig::default()).unwrap_err();
    assert!(e.to_string().contains("validation manifest"), "{e}");
}

#[test]
fn a_validation_manifest_replaces_the_split_and_the_front_end_round_trips() {
    let dir = scratch("valid");
    let train = tone_corpus(&dir, "train.csv", 12);
    let valid = tone_corpus(&dir, "valid.csv", 3);
    let corpus = SpeechCorpus::load(&train, Some(&valid), &SpeechConfig::default()).unwrap();
    assert_eq!((corpus.train.len(), corpus.valid.len()), (12, 3));

    let extra = corpus.extra();
    for key in [
        speech::VOCABULARY_KEY,
        audio::MEL_CONFIG_KEY,
        audio::FEATURE_STATS_KEY,
        speech::FEATURE_NORMALIZATION_KEY,
    ] {
        assert!(extra.contains_key(key), "{key}");
    }
    let front_end = FrontEnd::from_extra(&extra).unwrap();
    assert_eq!(front_end.vocabulary, corpus.front_end.vocabulary);
    for e in &corpus.valid {
        assert_eq!(front_end.features(&e.path).unwrap(), e.features);
    }
    let mut damaged = extra.clone();
    damaged.remove(audio::FEATURE_STATS_KEY);
    let e = FrontEnd::from_extra(&damaged).unwrap_err();
    assert!(e.to_string().contains(audio::FEATURE_STATS_KEY), "{e}");
}

#[test]
fn an_utterance_too_short_for_its_transcript_is_refused_with_its_line() {
    let dir = scratch("short");
    let mut manifest = String::from("path,transcript\n");
    for i in 0..10 {
        audio::write_wav(
            &dir.join(format!("{i}.wav")),
            &tone(300.0, 8000, SAMPLE_RATE),
            SAMPLE_RATE,
        )
        .unwrap();
        manifest += &format!("{i}.wav,ab\n");
    }
    // 0.1 s → 8 frames; "aaaaa" needs 9 under CTC (5 labels, 4 blanks between repeats).
    audio::write_wav(
        &dir.join("short.wav"),
        &tone(300.0, 1600, SAMPLE_RATE),
        SAMPLE_RATE,
    )
    .unwrap();
    manifest += "short.wav,aaaaa\n";
    std::fs::write(dir.join("m.csv"), manifest).unwrap();
    let e = SpeechCorpus::load(&dir.join("m.csv"), None, &SpeechConfig::default()).unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(e, Error::Manifest { line: 12, .. }) && m.contains("needs at least 9"),
        "{m}"
    );

    // An unreadable audio file is reported with its manifest line too.
    std::fs::write(dir.join("3.wav"), b"").unwrap();
    let e = SpeechCorpus::load(&dir.join("m.csv"), None, &SpeechConfig::default()).unwrap_err();
    assert!(
        matches!(e, Error::Manifest { line: 5, .. }) && e.to_string().contains("empty"),
        "{e}"
    );
}

#[test]
fn batches_from_a_corpus_cover_it_once_per_epoch() {
    let dir = scratch("batches");
    let manifest = tone_corpus(&dir, "all.csv", 20);
    let corpus = SpeechCorpus::load(&manifest, None, &SpeechConfig::default()).unwrap();
    let buckets = Buckets::for_examples(&corpus.train, 4).unwrap();
    assert_eq!(buckets.len(), 5); // 18 training utterances: 4 + 4 + 4 + 4 + 2
    let mut seen = Vec::new();
    for rows in buckets.epoch(3, 0) {
        let batch = collate(&corpus.train, rows).unwrap();
        assert_eq!(batch.t, batch.input_lengths[0]);
        assert!(batch.input_lengths.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(batch.x.len(), batch.t * batch.b * 40);
        assert_eq!(
            batch.labels.len(),
            batch.label_lengths.iter().sum::<usize>()
        );
        seen.extend_from_slice(&batch.rows);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..18).collect::<Vec<_>>());
}

/// The demo script's corpus, through the manifest and features path. Ignored by default,
/// since it needs espeak-ng; CI installs it and runs this with `--ignored`, and run without
/// espeak-ng it fails, saying how to install it.
#[test]
#[ignore = "needs espeak-ng; .ci/run runs it with --ignored"]
fn espeak_digits_corpus_loads() {
    let installed = Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "espeak-ng is not installed; this test synthesizes speech with it. Install it \
         (Debian/Ubuntu: `apt-get install espeak-ng`) and run the test again"
    );
    let dir = scratch("digits");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/speech-digits.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg("12")
        .arg("4")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wgpu-rnn train --task speech --manifest"),
        "{stdout}"
    );

    let corpus = SpeechCorpus::load(
        &dir.join("train.csv"),
        Some(&dir.join("valid.csv")),
        &SpeechConfig::default(),
    )
    .unwrap();
    assert_eq!((corpus.train.len(), corpus.valid.len()), (11, 1));
    let train_texts: Vec<&str> = corpus.train.iter().map(|e| e.transcript.as_str()).collect();
    for e in &corpus.valid {
        assert!(
            !train_texts.contains(&e.transcript.as_str()),
            "{} is also in training",
            e.transcript
        );
    }
    let digits = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    for e in corpus.train.iter().chain(&corpus.valid) {
        let words: Vec<&str> = e.transcript.split(' ').collect();
        assert!(
            (3..=7).contains(&words.len()) && words.iter().all(|w| digits.contains(w)),
            "{}",
            e.transcript
        );
        // espeak-ng speaks 3-7 digits in roughly 0.7-5 s: 70-500 frames of 10 ms.
        assert!(
            (70..500).contains(&e.features.frames()),
            "{}: {} frames",
            e.transcript,
            e.features.frames()
        );
        assert!(e.features.data().iter().all(|x| x.is_finite()));
    }
    let vocabulary = &corpus.front_end.vocabulary;
    assert!(
        vocabulary.classes() <= 1 + 1 + 16,
        "{:?}",
        vocabulary.chars()
    ); // blank, space, letters of the digit words
    assert_eq!(vocabulary.chars()[0], ' ');
}

/// `read_wav_at` resamples to the rate asked for (a front end's `MelConfig::sample_rate`),
/// not always to 16 kHz.
#[test]
fn wav_reader_resamples_to_the_rate_asked_for() {
    let dir = scratch("rate");
    let path = dir.join("tone.wav");
    audio::write_wav(&path, &tone(440.0, 16_000, SAMPLE_RATE), SAMPLE_RATE).unwrap();
    let at_8k = audio::read_wav_at(&path, 8_000).unwrap();
    assert!(at_8k.len().abs_diff(8_000) <= 1, "{} samples", at_8k.len());
    assert_eq!(
        audio::read_wav_at(&path, SAMPLE_RATE).unwrap().len(),
        16_000
    );
}
