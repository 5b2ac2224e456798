//! A run's metrics log: one JSON object per training step, one per line (JSON Lines), next
//! to the checkpoint (`run.safetensors` → `run.metrics.jsonl`, see [`log_path`]).
//!
//! ```text
//! {"step":1,"loss":4.17,"tokens_per_s":51200.0,"learning_rate":0.002,"grad_norm":1.9,"skipped":false}
//! {"step":2,"loss":null,"tokens_per_s":50950.0,"learning_rate":0.002,"grad_norm":null,"skipped":true}
//! {"step":100,"loss":2.31,"validation":2.40,"tokens_per_s":51010.0,"learning_rate":0.002,"grad_norm":0.8,"skipped":false}
//! ```
//!
//! Non-finite numbers: JSON has no NaN or infinity, so a NaN or infinite `loss`,
//! `validation`, `tokens_per_s`, `learning_rate` or `grad_norm` is written as `null` and
//! read back as NaN (an infinity therefore comes back as NaN). `validation` is left out of
//! the line on steps without a validation pass and read back as `None`. Unknown fields
//! are ignored, so logs from later versions with more fields still read.
//!
//! Durability: [`MetricsLog::append`] hands each record to the operating system in one
//! write before it returns, so a run that is killed keeps every completed step; it does
//! not sync to the disk per step (that would cost a disk flush per step), so a power loss
//! may lose the last records: call [`MetricsLog::sync`] where it matters, e.g. when a
//! checkpoint is saved.
//!
//! Damaged files: a last line without its newline that is not a record is what a run
//! killed in the middle of a write leaves; it is dropped without an error. Any other line
//! that is not a record is an [`Error::MetricsLog`] naming the line, since skipping it
//! would silently leave a hole in the history. Blank lines are ignored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::interop::write_atomic;

/// What one training step measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// The step (1 for the first; skipped steps count).
    pub step: u64,
    /// Mean loss of the step's batch before the update; NaN when it was not finite.
    #[serde(with = "nullable")]
    pub loss: f32,
    /// Mean validation loss, on steps that ran a validation pass.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "nullable_option"
    )]
    pub validation: Option<f32>,
    /// Training throughput over this step, in tokens (time steps × batch rows) per second.
    #[serde(with = "nullable")]
    pub tokens_per_s: f64,
    /// The learning rate the update used.
    #[serde(with = "nullable")]
    pub learning_rate: f32,
    /// Global L2 norm of the gradients before clipping; NaN when it was not finite.
    #[serde(with = "nullable")]
    pub grad_norm: f32,
    /// The loss or the gradient norm was not finite and the update was not applied.
    pub skipped: bool,
    /// A series model's validation: its errors in the target's units beside the naive and
    /// seasonal naive forecasts of the same rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ValidationErrors>,
}

/// A series validation's one-step errors in the target's units: the model's, and the
/// naive (last value) and seasonal naive (one season back) forecasts' of the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationErrors {
    #[serde(with = "nullable")]
    pub mae: f64,
    #[serde(with = "nullable")]
    pub rmse: f64,
    #[serde(with = "nullable")]
    pub naive_mae: f64,
    #[serde(with = "nullable")]
    pub naive_rmse: f64,
    #[serde(with = "nullable")]
    pub seasonal_naive_mae: f64,
    #[serde(with = "nullable")]
    pub seasonal_naive_rmse: f64,
}

/// Where the metrics log of a checkpoint goes: `run.safetensors` → `run.metrics.jsonl`.
pub fn log_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("metrics.jsonl")
}

/// A loss at each of some steps: (step, loss).
pub type LossCurve = Vec<(u64, f32)>;

/// The training loss of every record and the validation loss of those that have one, as
/// series for [`crate::app::plot::loss_plot`].
pub fn loss_curves(records: &[MetricsRecord]) -> (LossCurve, LossCurve) {
    let train = records.iter().map(|r| (r.step, r.loss)).collect();
    let validation = records
        .iter()
        .filter_map(|r| r.validation.map(|v| (r.step, v)))
        .collect();
    (train, validation)
}

/// Reads every record of a metrics log, in file order.
pub fn read(path: &Path) -> Result<Vec<MetricsRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| io_err(path, source))?;
    Ok(parse(path, &text)?.into_iter().map(|(_, r)| r).collect())
}

/// A metrics log open for appending.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Starts a new, empty log at `path`, replacing any file there.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|source| io_err(path, source))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Continues the log of a run resumed from a checkpoint taken after `step`: keeps the
    /// records with `step <= step` (those past it belong to steps that will run again) and
    /// appends after them. The file is rewritten atomically (a temporary file renamed over
    /// it), so a crash during the rewrite leaves the old history whole. The kept lines are
    /// kept as they were written. A missing file starts an empty log.
    pub fn resume(path: &Path, step: u64) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(io_err(path, source)),
        };
        let mut kept = String::with_capacity(text.len());
        for (line, _) in parse(path, &text)?
            .into_iter()
            .filter(|(_, r)| r.step <= step)
        {
            kept.push_str(line);
            kept.push('\n');
        }
        write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| io_err(path, source))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record as one line, handed to the operating system before this returns.
    pub fn append(&mut self, record: &MetricsRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("a record always serializes");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| io_err(&self.path, source))
    }

    /// Syncs the log to the disk, so that it survives a power loss too.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|source| io_err(&self.path, source))
    }

    /// Every record in the log, including those kept by [`MetricsLog::resume`].
    pub fn records(&self) -> Result<Vec<MetricsRecord>> {
        read(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Each record with the line it came from, by the rules in the module documentation.
fn parse<'a>(path: &Path, text: &'a str) -> Result<Vec<(&'a str, MetricsRecord)>> {
    let mut records = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => records.push((*line, r)),
            // The last piece has no newline after it: a write cut short.
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(Error::MetricsLog {
                    path: path.display().to_string(),
                    line: i + 1,
                    why: format!("not a metrics record ({e})"),
                })
            }
        }
    }
    Ok(records)
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Floats written as `null` when they are NaN or infinite, and `null` read back as NaN.
mod nullable {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub trait Float: Copy + Serialize + DeserializeOwned {
        const NAN: Self;
        fn finite(self) -> bool;
    }

    impl Float for f32 {
        const NAN: Self = f32::NAN;
        fn finite(self) -> bool {
            self.is_finite()
        }
    }

    impl Float for f64 {
        const NAN: Self = f64::NAN;
        fn finite(self) -> bool {
            self.is_finite()
        }
    }

    pub fn serialize<T: Float, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        if v.finite() {
            v.serialize(s)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, T: Float, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        Ok(Option::<T>::deserialize(d)?.unwrap_or(T::NAN))
    }
}

/// An optional float: absent is `None` (the field is skipped when writing), `null` is
/// `Some(NaN)` as in [`nullable`].
mod nullable_option {
    use serde::{Deserializer, Serializer};

    use super::nullable::{self, Float};

    pub fn serialize<T: Float, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => nullable::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Float, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        nullable::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgpu-rnn-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::remove_file(&path).ok();
        path
    }

    fn record(step: u64) -> MetricsRecord {
        MetricsRecord {
            step,
            loss: 4.0 / step as f32,
            validation: step.is_multiple_of(10).then_some(4.5 / step as f32),
            tokens_per_s: 51200.5,
            learning_rate: 2e-3,
            grad_norm: 1.5,
            skipped: false,
            errors: None,
        }
    }

    /// Debug output compares NaN equal to NaN, unlike `==`.
    fn same(a: &[MetricsRecord], b: &[MetricsRecord]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    fn write_log(path: &Path, records: &[MetricsRecord]) {
        let mut log = MetricsLog::create(path).unwrap();
        for r in records {
            log.append(r).unwrap();
        }
    }

    #[test]
    fn records_round_trip_with_non_finite_values_as_null() {
        let path = scratch("round.jsonl");
        let nan = MetricsRecord {
            loss: f32::NAN,
            grad_norm: f32::INFINITY,
            validation: Some(f32::NAN),
            skipped: true,
            ..record(2)
        };
        let written = [record(1), nan, record(10)];
        write_log(&path, &written);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        let second = text.lines().nth(1).unwrap();
        assert!(second.contains(r#""loss":null"#) && second.contains(r#""grad_norm":null"#));
        assert!(
            !text.lines().next().unwrap().contains("validation"),
            "absent, not null"
        );
        let back = read(&path).unwrap();
        // The infinite gradient norm comes back as NaN.
        let expected = [
            record(1),
            MetricsRecord {
                grad_norm: f32::NAN,
                ..nan
            },
            record(10),
        ];
        assert!(same(&back, &expected), "{back:?}");
        assert_eq!(back[0].validation, None);
        assert_eq!(back[2].validation, Some(0.45));
    }

    #[test]
    fn resume_drops_records_past_the_step_and_appends_after_the_rest() {
        let path = scratch("resume.jsonl");
        let all: Vec<_> = (1..=30).map(record).collect();
        write_log(&path, &all);
        let mut log = MetricsLog::resume(&path, 20).unwrap();
        assert!(same(&log.records().unwrap(), &all[..20]));
        let again = MetricsRecord {
            loss: 0.5,
            ..record(21)
        };
        log.append(&again).unwrap();
        let mut expected = all[..20].to_vec();
        expected.push(again);
        assert!(same(&read(&path).unwrap(), &expected));
        drop(log);
        // Resuming at a later step than any record keeps them all.
        MetricsLog::resume(&path, 1000).unwrap();
        assert!(same(&read(&path).unwrap(), &expected));
    }

    #[test]
    fn resume_without_a_log_starts_an_empty_one() {
        let path = scratch("fresh.jsonl");
        let mut log = MetricsLog::resume(&path, 50).unwrap();
        assert!(log.records().unwrap().is_empty());
        log.append(&record(51)).unwrap();
        assert!(same(&read(&path).unwrap(), &[record(51)]));
    }

    #[test]
    fn resume_rewrite_leaves_no_temporary_file() {
        let path = scratch("tidy.jsonl");
        write_log(&path, &(1..=5).map(record).collect::<Vec<_>>());
        MetricsLog::resume(&path, 3).unwrap();
        let dir = path.parent().unwrap();
        let stray: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tidy.jsonl") && n != "tidy.jsonl")
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn resume_keeps_fields_it_does_not_know() {
        let path = scratch("newer.jsonl");
        let line = r#"{"step":1,"loss":2.0,"tokens_per_s":1.0,"learning_rate":0.1,"grad_norm":1.0,"skipped":false,"perplexity":7.39}"#;
        std::fs::write(&path, format!("{line}\n")).unwrap();
        MetricsLog::resume(&path, 1).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{line}\n"));
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let path = scratch("torn.jsonl");
        write_log(&path, &[record(1), record(2)]);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"step":3,"loss":1.2,"tokens_"#);
        std::fs::write(&path, &text).unwrap();
        assert!(same(&read(&path).unwrap(), &[record(1), record(2)]));
        let mut log = MetricsLog::resume(&path, 10).unwrap();
        log.append(&record(3)).unwrap();
        assert!(same(
            &read(&path).unwrap(),
            &[record(1), record(2), record(3)]
        ));
    }

    #[test]
    fn a_corrupt_line_is_an_error_naming_it_and_resume_leaves_the_file() {
        let path = scratch("corrupt.jsonl");
        write_log(&path, &[record(1)]);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\nnot json\n");
        text.push_str(&serde_json::to_string(&record(2)).unwrap());
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        for result in [
            read(&path).map(|_| ()),
            MetricsLog::resume(&path, 5).map(|_| ()),
        ] {
            match result {
                Err(e @ Error::MetricsLog { line: 3, .. }) => {
                    assert!(e.to_string().contains("corrupt.jsonl, line 3"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn create_truncates_an_old_log() {
        let path = scratch("create.jsonl");
        write_log(&path, &[record(1), record(2)]);
        let log = MetricsLog::create(&path).unwrap();
        assert!(log.records().unwrap().is_empty());
    }

    #[test]
    fn log_path_sits_next_to_the_checkpoint() {
        assert_eq!(
            log_path(Path::new("out/run.safetensors")),
            Path::new("out/run.metrics.jsonl")
        );
        assert_eq!(log_path(Path::new("run")), Path::new("run.metrics.jsonl"));
    }

    #[test]
    fn loss_curves_split_training_and_validation() {
        let records: Vec<_> = (1..=20).map(record).collect();
        let (train, val) = loss_curves(&records);
        assert_eq!(train.len(), 20);
        assert_eq!(val, vec![(10, 0.45), (20, 0.225)]);
    }
}
