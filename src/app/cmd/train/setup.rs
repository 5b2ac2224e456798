//! What a training run starts from: the flags (after `--resume` adopted the checkpoint's)
//! mapped to the library's configs, the task's data, the initial parameters and where the
//! run saves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::resume::{adopt, check_columns_kept, Resumed};
use crate::app::cli::{OptArg, ScheduleArg, TaskArg, TrainArgs};
use crate::data::seasonal::Difference;
use crate::data::series::{Normalization, Series, SeriesOptions};
use crate::data::speech::{self, SpeechConfig, SpeechCorpus, SpeechTask};
use crate::data::{Adding, Sine, Task, Text, DEFAULT_CORPUS};
use crate::error::{Error, Result};
use crate::model::{Params, RnnConfig};
use crate::train::{LrSchedule, OptimizerConfig, OptimizerKind, TrainConfig};

/// Checkpoint metadata: the CSV file a series model was trained on.
pub const CSV_KEY: &str = "series.csv";
/// Checkpoint metadata: a speech model's manifests.
pub const MANIFEST_KEY: &str = "speech.manifest";
pub const VALIDATION_MANIFEST_KEY: &str = "speech.validation_manifest";

/// A run ready to train.
pub struct Setup {
    /// The flags, with what a resumed checkpoint supplies.
    pub args: TrainArgs,
    pub task: Task,
    pub config: RnnConfig,
    pub train: TrainConfig,
    /// Where to start: the checkpoint's parameters, or a new initialisation.
    pub params: Params<Vec<f32>>,
    /// The checkpoint path (the loss picture and metrics log go beside it).
    pub save: PathBuf,
    pub resumed: Option<Resumed>,
}

impl Setup {
    /// Validates the flags (after adopting a resumed checkpoint's), loads the task's data
    /// and builds the configs. `root`: this process writes the files (rank 0), so the save
    /// path is checked here, before any training.
    pub fn new(mut a: TrainArgs, root: bool) -> Result<Self> {
        // Flags are validated after `adopt`: a resumed run's task and hyperparameters come
        // from the checkpoint, and the defaults' task would judge them wrongly.
        let resumed = a.resume.as_deref().map(Resumed::load).transpose()?;
        let task_arg = match &resumed {
            Some(r) => adopt(&mut a, r)?,
            None => a.task,
        };
        a.check_flags(task_arg)?;
        a.validate()?;
        if let Some(r) = &resumed {
            check_columns_kept(&a, r)?;
        }
        let extra = resumed.as_ref().map(|r| &r.checkpoint.extra);
        let mut task = load_task(&a, task_arg, extra)?;
        let train = train_config(&a, &task)?;
        let config = model_config(&a, &task, resumed.as_ref())?;
        if let Task::Text(t) = task {
            task = Task::Text(t.with_token_inputs(config.embedding.is_some()));
        }
        let save = a
            .save
            .clone()
            .or_else(|| resumed.as_ref().map(|r| r.path.clone()))
            .unwrap_or_else(|| {
                PathBuf::from(format!("wgpu-rnn-{}.safetensors", task.kind().name()))
            });
        if root {
            check_writable(&save)?;
        }
        let params = match &resumed {
            Some(r) => r.checkpoint.params.clone(),
            None => config.init_params_with(a.init.parse()?, a.seed)?,
        };
        Ok(Setup {
            args: a,
            task,
            config,
            train,
            params,
            save,
            resumed,
        })
    }

    /// The resumed checkpoint's metadata (empty for a new run).
    pub fn resumed_extra(&self) -> BTreeMap<String, String> {
        self.resumed
            .as_ref()
            .map(|r| r.checkpoint.extra.clone())
            .unwrap_or_default()
    }
}

/// `--optimizer`, `--lr`, `--weight-decay` and (SGD only) `--momentum`.
pub fn optimizer(a: &TrainArgs) -> OptimizerConfig {
    let kind = match a.optimizer {
        OptArg::Sgd => OptimizerKind::Sgd,
        OptArg::Adam => OptimizerKind::Adam,
        OptArg::Adagrad => OptimizerKind::Adagrad,
    };
    let mut opt = OptimizerConfig::new(kind, a.lr).with_weight_decay(a.weight_decay);
    if kind == OptimizerKind::Sgd {
        opt.momentum = a.momentum;
    }
    opt
}

/// `--lr-schedule` with its settings.
pub fn schedule(a: &TrainArgs) -> LrSchedule {
    match a.lr_schedule {
        ScheduleArg::Constant => LrSchedule::Constant,
        ScheduleArg::Cosine => LrSchedule::Cosine {
            warmup_steps: a.warmup,
            total_steps: a.steps,
            min_lr: a.min_lr,
        },
        ScheduleArg::Step => LrSchedule::Step {
            step_size: a.lr_step_size,
            gamma: a.lr_gamma,
        },
    }
}

/// How the task trains under these flags.
pub fn train_config(a: &TrainArgs, task: &Task) -> Result<TrainConfig> {
    let mut tc = TrainConfig::new(optimizer(a), task.loss()).with_schedule(schedule(a));
    // 0 turns clipping off; NaN or negative values reach validate, which names them.
    tc.clip_norm = (a.clip != 0.0).then_some(a.clip);
    tc.stateful = task.stateful();
    tc.dropout_seed = a.seed;
    tc.validate()?;
    Ok(tc)
}

/// The model: the resumed checkpoint's (which must fit the task's data), or a new one from
/// the flags.
pub fn model_config(a: &TrainArgs, task: &Task, resumed: Option<&Resumed>) -> Result<RnnConfig> {
    let (i, o) = task.io();
    let Some(r) = resumed else {
        // A text model embeds its characters (V of them) into --embedding features.
        let embedding = match task {
            Task::Text(_) if a.embedding > 0 => Some(i),
            _ => None,
        };
        let c = RnnConfig::new(
            if embedding.is_some() { a.embedding } else { i },
            a.hidden,
            o,
        )
        .with_cell(a.cell)
        .with_layers(a.layers)
        .with_bidirectional(a.bidirectional)
        .with_bias(!a.no_bias)
        .with_activation(a.nonlinearity.map(Into::into).unwrap_or_default())
        .with_dropout(a.dropout)
        .with_head_dropout(a.head_dropout);
        let c = match embedding {
            Some(v) => c.with_embedding(v),
            None => c,
        };
        c.validate()?;
        return Ok(c);
    };
    let ck = &r.checkpoint;
    let bad = |why: &str| Error::Checkpoint {
        path: r.path.display().to_string(),
        why: why.into(),
    };
    if let (Task::Text(t), Some(v)) = (task, &ck.vocab) {
        t.check_vocab(v).map_err(|e| match e {
            Error::BadText(why) => bad(&format!("{why}; resume with the --text it was trained on")),
            e => e,
        })?;
    }
    // What the model reads: its vocabulary where it embeds token ids, else its features.
    let reads = ck.config.embedding.unwrap_or(ck.config.input_size);
    if (reads, ck.config.output_size) != (i, o) {
        return Err(bad("its input/output sizes do not fit this task's data"));
    }
    Ok(ck.config.clone())
}

/// The task's data; `resumed` is the resumed checkpoint's metadata.
pub fn load_task(
    a: &TrainArgs,
    task: TaskArg,
    resumed: Option<&BTreeMap<String, String>>,
) -> Result<Task> {
    Ok(match task {
        TaskArg::Text => Task::Text(text_task(a.text.as_deref())?),
        TaskArg::Sine => Task::Sine(Sine::default()),
        TaskArg::Adding => Task::Adding(Adding),
        TaskArg::Speech => Task::Speech(Box::new(speech_task(a, resumed)?)),
        TaskArg::Series => Task::Series(series_task(a, resumed)?),
    })
}

/// The text of `--text`, or the built-in corpus.
fn text_task(path: Option<&Path>) -> Result<Text> {
    let Some(p) = path else {
        return Text::new(DEFAULT_CORPUS);
    };
    let bytes = std::fs::read(p).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })?;
    let corpus = String::from_utf8(bytes).map_err(|e| {
        Error::BadText(format!(
            "{} is not UTF-8 (invalid byte at {})",
            p.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Text::new(&corpus)
}

/// The manifests' utterances as log-mel features (a resumed run: the checkpoint's
/// manifests unless given, and the same characters).
fn speech_task(a: &TrainArgs, resumed: Option<&BTreeMap<String, String>>) -> Result<SpeechTask> {
    let saved = |key: &str| resumed.and_then(|e| e.get(key)).map(PathBuf::from);
    let manifest = a
        .manifest
        .clone()
        .or_else(|| saved(MANIFEST_KEY))
        .ok_or_else(|| {
            Error::IncompatibleArgs("give --manifest: the checkpoint names no file".into())
        })?;
    let valid = a
        .validation_manifest
        .clone()
        .or_else(|| saved(VALIDATION_MANIFEST_KEY));
    eprintln!("loading {} (log-mel features)...", manifest.display());
    let corpus = SpeechCorpus::load(&manifest, valid.as_deref(), &SpeechConfig::default())?;
    if let Some(extra) = resumed {
        let saved = extra.get(speech::VOCABULARY_KEY);
        let now = corpus.front_end.vocabulary.to_json();
        if saved != Some(&now) {
            return Err(Error::IncompatibleArgs(format!(
                "the resumed model's characters ({}) differ from this manifest's ({now}); \
                 resume with the manifest it was trained on",
                saved.map_or("none", String::as_str)
            )));
        }
    }
    eprintln!(
        "speech: {} training and {} held-out utterances, {} characters + blank",
        corpus.train.len(),
        corpus.valid.len(),
        corpus.front_end.vocabulary.chars().len()
    );
    SpeechTask::new(corpus, a.batch)
}

/// The CSV file's columns: a resumed run keeps its columns and scaling, and its file
/// unless `--csv` names another.
fn series_task(a: &TrainArgs, resumed: Option<&BTreeMap<String, String>>) -> Result<Series> {
    let difference = match a.difference.as_str() {
        "auto" => None,
        d => Some(d.parse::<Difference>()?),
    };
    let read = |csv: &Path, target: Option<&str>, inputs: Option<&[String]>| {
        crate::app::cmd::read_series(csv, target, inputs, a.fill.as_deref())
    };
    let Some(extra) = resumed else {
        let csv = a
            .csv
            .as_ref()
            .ok_or_else(|| Error::IncompatibleArgs("--task series needs --csv FILE".into()))?;
        let inputs: Option<Vec<String>> = a
            .inputs
            .as_ref()
            .map(|s| s.split(',').map(|c| c.trim().to_string()).collect());
        let data = read(csv, a.target.as_deref(), inputs.as_deref())?;
        let series = Series::with_options(
            &data,
            SeriesOptions {
                difference,
                season: a.season,
                ahead: a.ahead,
            },
        )?;
        let n = series.normalization();
        eprintln!(
            "series: {} differences ({}), season {}",
            n.difference.name(),
            if difference.is_some() {
                "given"
            } else {
                "chosen by a KPSS test of the training part"
            },
            match (n.season, a.season) {
                (Some(p), Some(_)) => format!("{p} rows (given)"),
                (Some(p), None) => format!("{p} rows (estimated from the training part)"),
                (None, _) => "none found (seasonal naive is naive)".into(),
            }
        );
        return Ok(series);
    };
    let norm = Normalization::from_extra(extra)?;
    // The resumed model learned one kind of target: typed flags must agree with it.
    if let Some(d) = difference.filter(|&d| d != norm.difference) {
        return Err(Error::IncompatibleArgs(format!(
            "--difference {} with --resume: the model learned {} differences",
            d.name(),
            norm.difference.name()
        )));
    }
    if a.typed("ahead") && a.ahead != norm.ahead {
        return Err(Error::IncompatibleArgs(format!(
            "--ahead {} with --resume: the model's head predicts {} step(s) at once",
            a.ahead, norm.ahead
        )));
    }
    if let Some(p) = a.season.filter(|&p| Some(p) != norm.season) {
        return Err(Error::IncompatibleArgs(format!(
            "--season {p} with --resume: the model's season is {}",
            norm.season.map_or("none".into(), |p| p.to_string())
        )));
    }
    let csv = match (&a.csv, extra.get(CSV_KEY)) {
        (Some(p), _) => p.clone(),
        (None, Some(saved)) => PathBuf::from(saved),
        (None, None) => {
            return Err(Error::IncompatibleArgs(
                "give --csv: the checkpoint names no file".into(),
            ))
        }
    };
    let data = read(&csv, Some(&norm.target.name), Some(&norm.input_names()))?;
    Series::with_normalization(&data, norm)
}

/// Refuses a save path whose folder is missing or not writable, before any training.
pub fn check_writable(save: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: save.display().to_string(),
        source,
    };
    if save.is_dir() {
        return Err(Error::IncompatibleArgs(format!(
            "--save {} is a folder; give a file name such as {}",
            save.display(),
            save.join("model.safetensors").display()
        )));
    }
    let dir = match save.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::IncompatibleArgs(format!(
            "the folder of --save {} does not exist; create it first (mkdir -p {})",
            save.display(),
            dir.display()
        )));
    }
    let probe = dir.join(format!(".wgpu-rnn-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)?;
    Ok(())
}

/// `run.safetensors` → `run.best.safetensors`.
pub fn best_path(save: &Path) -> PathBuf {
    let stem = save.file_stem().unwrap_or_default().to_string_lossy();
    let ext = save
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    save.with_file_name(format!("{stem}.best{ext}"))
}
