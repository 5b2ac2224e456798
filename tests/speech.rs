//! Speech recognition through the CLI, on a small spoken-digits corpus synthesized with
//! espeak-ng (examples/speech-digits.sh): `train --task speech` lowers the held-out
//! character error rate, `transcribe` prints a line per file, and misuse is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    common::run_cli(args)
}

/// A corpus of `n` utterances in a fresh folder (fails, with the fix, without espeak-ng).
fn corpus(name: &str, n: usize) -> PathBuf {
    let have = Command::new("espeak-ng").arg("--version").output().is_ok();
    assert!(
        have,
        "the speech tests synthesize their corpus with espeak-ng, which is not installed: \
         `sudo apt-get install espeak-ng` (Debian/Ubuntu), then run them again"
    );
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-speech-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/speech-digits.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .arg(n.to_string())
        .arg("3")
        .output()
        .expect("run examples/speech-digits.sh");
    assert!(
        out.status.success(),
        "speech-digits.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The CER figures of the validation lines, in order.
fn cers(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("CER ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn a_small_spoken_digits_corpus_trains_and_transcribes() {
    let dir = corpus("train", 120);
    let s = |p: &Path| p.display().to_string();
    let model = dir.join("digits.safetensors");
    let (code, _, err) = run(&[
        "train",
        "--task",
        "speech",
        "--manifest",
        &s(&dir.join("train.csv")),
        "--cell",
        "gru",
        "--bidirectional",
        "--hidden",
        "48",
        "--batch",
        "8",
        "--steps",
        "200",
        "--eval-every",
        "50",
        "--save",
        &s(&model),
    ]);
    assert_eq!(code, 0, "{err}");
    let c = cers(&err);
    assert_eq!(c.len(), 4, "a CER per validation: {err}");
    assert!(
        c[3] < c[0] - 3.0 && c[3] < 95.0,
        "the held-out CER should fall: {c:?}\n{err}"
    );

    // transcribe: a line per file, in order; greedy and beam both.
    let wavs: Vec<String> = ["wav/00000.wav", "wav/00001.wav"]
        .iter()
        .map(|w| s(&dir.join(w)))
        .collect();
    for extra in [vec![], vec!["--beam", "4"]] {
        let mut args = vec!["transcribe", "--model", model.to_str().unwrap()];
        args.extend(extra);
        args.extend(wavs.iter().map(String::as_str));
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.chars()
                .all(|ch| ch == '\n' || ch == ' ' || ch.is_ascii_lowercase()),
            "only the corpus's characters: {out:?}"
        );
    }

    // Misuse: a flag speech does not use, a missing manifest, a non-speech model.
    let (code, _, err) = run(&[
        "train",
        "--task",
        "speech",
        "--manifest",
        &s(&dir.join("train.csv")),
        "--seq",
        "9",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--seq"), "{err}");
    let (code, _, err) = run(&["train", "--task", "speech"]);
    assert_ne!(code, 0);
    assert!(err.contains("--manifest"), "{err}");
    let (code, _, err) = run(&["transcribe", "--model", &s(&model), "/no/such.wav"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such.wav"), "{err}");
    let (code, _, err) = run(&["transcribe", "--model", &s(&model), "--beam", "0", &wavs[0]]);
    assert_ne!(code, 0);
    assert!(err.contains("--beam"), "{err}");
}
