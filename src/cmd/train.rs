//! `wgpu-rnn train`: a run you cannot lose. The save path is checked before the first
//! step; checkpoints are written atomically at the end, every `--save-every` steps, at
//! each new best validation (`<name>.best.safetensors`), and when SIGINT or SIGTERM
//! stops the run at the end of its current step; every step is appended to the metrics
//! log as it finishes; `--resume` continues the run, its log and its picture.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;
use wgpu_rnn::checkpoint::Checkpoint;
use wgpu_rnn::cli::{flag, DeviceArg, OptArg, ScheduleArg, TaskArg, TrainArgs};
use wgpu_rnn::dist::Communicator;
use wgpu_rnn::metrics::{self, MetricsLog, MetricsRecord};
use wgpu_rnn::series::{Normalization, Series, SeriesData, NORMALIZATION_KEY};
use wgpu_rnn::speech::{self, SpeechConfig, SpeechCorpus, SpeechTask};
use wgpu_rnn::tasks::{Adding, Sine, Task, Text, DEFAULT_CORPUS};
use wgpu_rnn::{
    plot, CpuTrainer, Error, LrSchedule, OptimizerConfig, OptimizerKind, Result, Rnn, RnnConfig,
    Train, TrainConfig, Trainer,
};

use super::ranks::{communicator, gpu_for_rank};

/// The hyperparameters a checkpoint records (metadata `train.<id>`) and a resumed run
/// takes unless the flag is typed again.
const INHERITED: [&str; 15] = [
    "lr",
    "lr_schedule",
    "warmup",
    "min_lr",
    "lr_step_size",
    "lr_gamma",
    "optimizer",
    "momentum",
    "weight_decay",
    "clip",
    "batch",
    "seq",
    "eval_every",
    "seed",
    "steps",
];

fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// The train flag `id`'s value as text (the form `INHERITED` values are saved in).
fn arg_text(a: &TrainArgs, id: &str) -> String {
    match id {
        "lr" => a.lr.to_string(),
        "lr_schedule" => value_name(&a.lr_schedule),
        "warmup" => a.warmup.to_string(),
        "min_lr" => a.min_lr.to_string(),
        "lr_step_size" => a.lr_step_size.to_string(),
        "lr_gamma" => a.lr_gamma.to_string(),
        "optimizer" => value_name(&a.optimizer),
        "momentum" => a.momentum.to_string(),
        "weight_decay" => a.weight_decay.to_string(),
        "clip" => a.clip.to_string(),
        "batch" => a.batch.to_string(),
        "seq" => a.seq.to_string(),
        "eval_every" => a.eval_every.to_string(),
        "seed" => a.seed.to_string(),
        "steps" => a.steps.to_string(),
        _ => String::new(),
    }
}

/// Sets flag `id` from its saved text.
fn set_arg(a: &mut TrainArgs, id: &str, v: &str) -> std::result::Result<(), String> {
    fn num<T: std::str::FromStr>(v: &str) -> std::result::Result<T, String> {
        v.parse().map_err(|_| format!("{v:?} is not a number"))
    }
    fn choice<T: ValueEnum>(v: &str) -> std::result::Result<T, String> {
        T::from_str(v, true)
    }
    match id {
        "lr" => a.lr = num(v)?,
        "lr_schedule" => a.lr_schedule = choice(v)?,
        "warmup" => a.warmup = num(v)?,
        "min_lr" => a.min_lr = num(v)?,
        "lr_step_size" => a.lr_step_size = num(v)?,
        "lr_gamma" => a.lr_gamma = num(v)?,
        "optimizer" => a.optimizer = choice(v)?,
        "momentum" => a.momentum = num(v)?,
        "weight_decay" => a.weight_decay = num(v)?,
        "clip" => a.clip = num(v)?,
        "batch" => a.batch = num(v)?,
        "seq" => a.seq = num(v)?,
        "eval_every" => a.eval_every = num(v)?,
        "seed" => a.seed = num(v)?,
        "steps" => a.steps = num(v)?,
        _ => {}
    }
    Ok(())
}

fn conflict(what: &str, typed: impl std::fmt::Display, saved: impl std::fmt::Display) -> Error {
    Error::IncompatibleArgs(format!(
        "{what} {typed} conflicts with the resumed checkpoint's {saved}; leave it out (a \
         resumed run keeps its task, sizes and cell) or start a new run with --save"
    ))
}

/// Takes task, sizes, cell and (unless typed) hyperparameters from the checkpoint, and
/// refuses typed flags that contradict it.
fn adopt(a: &mut TrainArgs, ck: &Checkpoint, path: &Path) -> Result<TaskArg> {
    let bad = |why: String| Error::Checkpoint {
        path: path.display().to_string(),
        why,
    };
    let task = TaskArg::from_str(&ck.task, true)
        .map_err(|_| bad(format!("its task {:?} is not one this CLI trains", ck.task)))?;
    if a.typed("task") && a.task != task {
        return Err(conflict(
            "--task",
            a.task.name(),
            format!("task {}", ck.task),
        ));
    }
    a.task = task;
    let c = &ck.config;
    let cell: wgpu_rnn::CellKind = a.cell.into();
    for (id, typed, saved, differs) in [
        (
            "hidden",
            a.hidden.to_string(),
            c.hidden_size.to_string(),
            a.hidden != c.hidden_size,
        ),
        (
            "layers",
            a.layers.to_string(),
            c.num_layers.to_string(),
            a.layers != c.num_layers,
        ),
        (
            "cell",
            cell.name().to_string(),
            c.cell.name().to_string(),
            cell != c.cell,
        ),
        (
            "nonlinearity",
            a.nonlinearity
                .map(|n| wgpu_rnn::Activation::from(n).name())
                .unwrap_or("")
                .to_string(),
            c.activation.name().to_string(),
            a.nonlinearity.map(wgpu_rnn::Activation::from) != Some(c.activation),
        ),
        ("no_bias", "".into(), format!("bias={}", c.bias), c.bias),
        (
            "bidirectional",
            "".into(),
            format!("directions={}", c.directions()),
            !c.bidirectional,
        ),
    ] {
        if a.typed(id) && differs {
            return Err(conflict(&flag(id), typed, format!("{} {saved}", flag(id))));
        }
    }
    if a.typed("init") {
        return Err(Error::IncompatibleArgs(
            "--init with --resume: the resumed run's weights come from the checkpoint".into(),
        ));
    }
    for id in INHERITED {
        // A checkpoint the library saved (Checkpoint::from_trainer) has the optimizer's
        // settings under their own names, without `train.`.
        let library = matches!(id, "lr" | "optimizer" | "momentum" | "weight_decay");
        let saved = ck.extra.get(&format!("train.{id}"));
        let Some(v) = saved.or_else(|| ck.extra.get(id).filter(|_| library)) else {
            continue;
        };
        if a.typed(id) {
            if matches!(id, "optimizer" | "seed") && !arg_text(a, id).eq_ignore_ascii_case(v) {
                return Err(conflict(
                    &flag(id),
                    arg_text(a, id),
                    format!("{} {v}", flag(id)),
                ));
            }
        } else {
            set_arg(a, id, v).map_err(|e| bad(format!("its train.{id}: {e}")))?;
        }
    }
    // Checkpoints from before train.seed was recorded kept it as "seed".
    if let (false, Some(s)) = (a.typed("seed"), ck.extra.get("seed")) {
        a.seed = s
            .parse()
            .map_err(|_| bad(format!("its seed {s:?} is not a number")))?;
    }
    if a.steps <= ck.step && !a.typed("steps") {
        return Err(Error::IncompatibleArgs(format!(
            "the resumed run already reached its --steps {}; give a larger --steps to go on",
            a.steps
        )));
    }
    if a.steps <= ck.step {
        return Err(Error::IncompatibleArgs(format!(
            "--steps {} is not beyond the checkpoint's step {}: --steps is the total to reach \
             (to train {} more: --steps {})",
            a.steps,
            ck.step,
            a.steps.max(1),
            ck.step + a.steps.max(1)
        )));
    }
    Ok(task)
}

/// Checkpoint metadata: the CSV file a series model was trained on.
const CSV_KEY: &str = "series.csv";
/// The number of ranks that trained the checkpoint (a record: any number may resume it,
/// since it holds the whole batch's carried state and the batches do not depend on it).
const RANKS_KEY: &str = "train.ranks";
/// Checkpoint metadata: a speech model's manifests.
const MANIFEST_KEY: &str = "speech.manifest";
const VALIDATION_MANIFEST_KEY: &str = "speech.validation_manifest";

/// The task's data; `resume` is the resumed checkpoint's metadata.
fn load_task(
    a: &TrainArgs,
    task: TaskArg,
    resume: Option<&BTreeMap<String, String>>,
) -> Result<Task> {
    Ok(match task {
        TaskArg::Text => {
            let corpus = match &a.text {
                None => DEFAULT_CORPUS.to_string(),
                Some(p) => {
                    let bytes = std::fs::read(p).map_err(|source| Error::Io {
                        path: p.display().to_string(),
                        source,
                    })?;
                    String::from_utf8(bytes).map_err(|e| {
                        Error::BadText(format!(
                            "{} is not UTF-8 (invalid byte at {})",
                            p.display(),
                            e.utf8_error().valid_up_to()
                        ))
                    })?
                }
            };
            Task::Text(Text::new(&corpus)?)
        }
        TaskArg::Sine => Task::Sine(Sine::default()),
        TaskArg::Adding => Task::Adding(Adding),
        TaskArg::Speech => {
            let saved = |key: &str| resume.and_then(|e| e.get(key)).map(PathBuf::from);
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
            if let Some(extra) = resume {
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
            Task::Speech(Box::new(SpeechTask::new(corpus, a.batch)?))
        }
        TaskArg::Series => {
            let inputs: Option<Vec<String>> = a
                .inputs
                .as_ref()
                .map(|s| s.split(',').map(|c| c.trim().to_string()).collect());
            match resume.map(Normalization::from_extra).transpose()? {
                // A resumed run keeps its columns and scaling; its file unless --csv.
                Some(norm) => {
                    let csv = match &a.csv {
                        Some(p) => p.clone(),
                        None => {
                            PathBuf::from(resume.and_then(|e| e.get(CSV_KEY)).ok_or_else(|| {
                                Error::IncompatibleArgs(
                                    "give --csv: the checkpoint names no file".into(),
                                )
                            })?)
                        }
                    };
                    let data = SeriesData::from_csv(
                        &csv,
                        Some(&norm.target.name),
                        Some(&norm.input_names()),
                    )?;
                    Task::Series(Series::with_normalization(&data, norm)?)
                }
                None => {
                    let csv = a.csv.as_ref().ok_or_else(|| {
                        Error::IncompatibleArgs("--task series needs --csv FILE".into())
                    })?;
                    let data = SeriesData::from_csv(csv, a.target.as_deref(), inputs.as_deref())?;
                    Task::Series(Series::new(&data)?)
                }
            }
        }
    })
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

/// SIGINT and SIGTERM set the signal number here (a second one ends the process at once).
fn watch_signals() -> Arc<AtomicUsize> {
    let caught = Arc::new(AtomicUsize::new(0));
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag the earlier signal set.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone());
            let _ = signal_hook::flag::register(sig, stop.clone());
            let _ = signal_hook::flag::register_usize(sig, caught.clone(), sig as usize);
        }
    }
    caught
}

fn signal_name(sig: usize) -> &'static str {
    match sig {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

struct Run<'a> {
    a: &'a TrainArgs,
    task: &'a Task,
    config: &'a RnnConfig,
    save: PathBuf,
    /// The best validation loss so far (carried across resumes in `train.best_validation`).
    best: f32,
    /// The series task's CSV file.
    csv: Option<PathBuf>,
    /// The resumed checkpoint's metadata (empty for a new run).
    resumed: BTreeMap<String, String>,
    /// Ranks of data-parallel training (1 for one process).
    ranks: usize,
    /// Whether this process writes the files (rank 0).
    root: bool,
}

impl Run<'_> {
    fn checkpoint(&self, trainer: &dyn Train) -> Result<Checkpoint> {
        let vocab = match self.task {
            Task::Text(t) => Some(t.vocab.clone()),
            _ => None,
        };
        let mut ck = Checkpoint::from_trainer(trainer, self.task.kind().name(), vocab)?;
        let extra = &mut ck.extra;
        for id in INHERITED {
            extra.insert(format!("train.{id}"), arg_text(self.a, id));
        }
        if self.best.is_finite() {
            extra.insert("train.best_validation".into(), self.best.to_string());
        }
        extra.insert(RANKS_KEY.into(), self.ranks.to_string());
        if let Task::Speech(speech) = self.task {
            extra.extend(speech.corpus.extra());
            for (key, path) in [
                (MANIFEST_KEY, &self.a.manifest),
                (VALIDATION_MANIFEST_KEY, &self.a.validation_manifest),
            ] {
                if let Some(p) = path {
                    extra.insert(key.into(), p.display().to_string());
                }
            }
            for key in [MANIFEST_KEY, VALIDATION_MANIFEST_KEY] {
                if let (false, Some(v)) = (extra.contains_key(key), self.resumed.get(key)) {
                    extra.insert(key.into(), v.clone());
                }
            }
        }
        if let Task::Series(series) = self.task {
            series.normalization().store(extra);
            if let Some(csv) = &self.csv {
                extra.insert(CSV_KEY.into(), csv.display().to_string());
            }
        }
        Ok(ck)
    }

    /// The checkpoint at `path`, then the loss picture beside the main one, drawn from the
    /// whole metrics log (earlier runs' steps too, after a resume). Every rank calls this
    /// (the checkpoint gathers each rank's carried state); rank 0 writes.
    fn save(&self, trainer: &dyn Train, path: &Path, log: &MetricsLog) -> Result<()> {
        let ck = self.checkpoint(trainer)?;
        if !self.root {
            return Ok(());
        }
        ck.save(path)?;
        log.sync()?;
        let (train, val) = metrics::loss_curves(&log.records()?);
        let (title, unit) = match self.task {
            Task::Text(_) => ("character-level text", "loss (nats/char)"),
            Task::Series(_) => ("series forecasting", "MSE (normalized units)"),
            Task::Speech(_) => ("speech recognition", "CTC loss (nats per character)"),
            Task::Sine(_) => ("sine forecasting", "MSE"),
            Task::Adding(_) => ("adding problem", "MSE"),
        };
        plot::loss_plot(
            &plot::loss_plot_path(&self.save),
            &format!(
                "{title}: {} H={}",
                self.config.cell.name(),
                self.config.hidden_size
            ),
            unit,
            &train,
            &val,
        )
    }
}

pub fn describe(task: &Task, loss: f32) -> String {
    match task {
        Task::Text(_) => format!(
            "{loss:.4} nats/char ({:.3} bits/char)",
            loss / std::f32::consts::LN_2
        ),
        Task::Speech(_) => format!("CTC {loss:.4}"),
        _ => format!("MSE {loss:.5}"),
    }
}

/// Steps between the ranks' check that their parameters are bitwise equal.
const REPLICA_CHECK_EVERY: u64 = 100;

/// Runs `wgpu-rnn train`; the process's exit code (0, or 130/143 after SIGINT/SIGTERM).
/// Under mpirun (feature `mpi`) every rank runs this; a rank's error ends the whole job.
pub fn train(a: TrainArgs) -> Result<i32> {
    let comm = communicator()?;
    if comm.size() == 1 {
        return train_ranks(a, comm);
    }
    match train_ranks(a, comm.clone()) {
        Ok(code) => Ok(code),
        Err(e) => comm.abort(&e.to_string(), 1),
    }
}

fn train_ranks(mut a: TrainArgs, comm: Arc<dyn Communicator>) -> Result<i32> {
    let root = comm.is_root();
    // Flags are validated after `adopt`: a resumed run's task and hyperparameters come
    // from the checkpoint, and the defaults' task would judge them wrongly.
    let resume = match a.resume.clone() {
        Some(p) => {
            let ck = Checkpoint::load(&p)?;
            Some((p, ck))
        }
        None => None,
    };
    let task_arg = match &resume {
        Some((p, ck)) => adopt(&mut a, ck, p)?,
        None => a.task,
    };
    a.check_flags(task_arg)?;
    a.validate()?;
    if let Some((_, ck)) = &resume {
        for id in ["target", "inputs"] {
            if a.typed(id) {
                return Err(Error::IncompatibleArgs(format!(
                    "{} with --resume: the resumed model keeps the columns it was trained on ({})",
                    flag(id),
                    ck.extra.get(NORMALIZATION_KEY).map_or("", String::as_str)
                )));
            }
        }
    }
    let task = load_task(&a, task_arg, resume.as_ref().map(|(_, ck)| &ck.extra))?;
    let (i, o) = task.io();
    let kind = match a.optimizer {
        OptArg::Sgd => OptimizerKind::Sgd,
        OptArg::Adam => OptimizerKind::Adam,
        OptArg::Adagrad => OptimizerKind::Adagrad,
    };
    let mut opt = OptimizerConfig::new(kind, a.lr);
    opt.weight_decay = a.weight_decay;
    if kind == OptimizerKind::Sgd {
        opt.momentum = a.momentum;
    }
    let schedule = match a.lr_schedule {
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
    };
    let mut tc = TrainConfig::new(opt, task.loss()).with_schedule(schedule);
    // 0 turns clipping off; NaN or negative values reach validate, which names them.
    tc.clip_norm = (a.clip != 0.0).then_some(a.clip);
    tc.stateful = task.stateful();
    tc.validate()?;
    let config = match &resume {
        Some((p, ck)) => {
            if let (Task::Text(t), Some(v)) = (&task, &ck.vocab) {
                if &t.vocab != v {
                    return Err(Error::Checkpoint {
                        path: p.display().to_string(),
                        why: "its vocabulary differs from this text's; resume with the \
                              --text it was trained on"
                            .into(),
                    });
                }
            }
            if (ck.config.input_size, ck.config.output_size) != (i, o) {
                return Err(Error::Checkpoint {
                    path: p.display().to_string(),
                    why: "its input/output sizes do not fit this task's data".into(),
                });
            }
            ck.config.clone()
        }
        None => {
            let c = RnnConfig::new(i, a.hidden, o)
                .with_cell(a.cell.into())
                .with_layers(a.layers)
                .with_bidirectional(a.bidirectional)
                .with_bias(!a.no_bias)
                .with_activation(a.nonlinearity.map(Into::into).unwrap_or_default());
            c.validate()?;
            c
        }
    };
    let save = a
        .save
        .clone()
        .or_else(|| resume.as_ref().map(|(p, _)| p.clone()))
        .unwrap_or_else(|| PathBuf::from(format!("wgpu-rnn-{}.safetensors", task.kind().name())));
    if root {
        check_writable(&save)?;
    }
    let seed = a.seed;
    let params = match &resume {
        Some((_, ck)) => ck.params.clone(),
        None => config.init_params_with(a.init.parse()?, seed)?,
    };
    let mut gpu = None;
    let mut trainer: Box<dyn Train> = match a.device {
        DeviceArg::Gpu => {
            let g = gpu_for_rank(comm.rank())?;
            if comm.size() > 1 {
                eprintln!(
                    "rank {} of {}: adapter {}",
                    comm.rank(),
                    comm.size(),
                    g.adapter()
                );
            } else {
                eprintln!("adapter: {}", g.adapter());
            }
            let rnn = Rnn::from_params(&g, config.clone(), &params)?;
            gpu = Some(g);
            Box::new(
                Trainer::new(rnn, tc.clone())?
                    .with_communicator(comm.clone(), REPLICA_CHECK_EVERY)?,
            )
        }
        DeviceArg::Cpu => {
            if comm.size() > 1 {
                return Err(Error::IncompatibleArgs(
                    "--device cpu under mpirun: data-parallel training runs on GPUs".into(),
                ));
            }
            eprintln!("device: CPU reference (f64)");
            Box::new(CpuTrainer::new(config.clone(), &params, tc.clone())?)
        }
    };
    if let Some((_, ck)) = &resume {
        ck.restore_into(trainer.as_mut())?;
    }
    let start = trainer.steps();
    if let (Some((_, ck)), true) = (&resume, root) {
        let before = ck.extra.get(RANKS_KEY).map_or("1", String::as_str);
        if before != comm.size().to_string() {
            eprintln!(
                "resuming a run trained by {before} rank(s) with {}: each rank takes its rows \
                 of the global batch and of the carried state",
                comm.size()
            );
        }
    }
    let val = task.validation(seed, a.seq, a.batch)?;
    let t_text = match &task {
        Task::Speech(_) => "the batch's longest".to_string(),
        _ => a.seq.to_string(),
    };
    if root {
        eprintln!(
        "task {}: {} I={i} H={} O={o} L={} D={} {:?}, T={t_text} B={}, {:?} lr {}, steps {}..{}",
        task.kind().name(),
        config.cell.name(),
        config.hidden_size,
        config.num_layers,
        config.directions(),
        config.activation,
        a.batch,
        kind,
        a.lr,
        start,
        a.steps
    );
    }
    let mut run = Run {
        a: &a,
        task: &task,
        config: &config,
        save: save.clone(),
        best: resume
            .as_ref()
            .and_then(|(_, ck)| ck.extra.get("train.best_validation"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f32::INFINITY),
        resumed: resume
            .as_ref()
            .map(|(_, ck)| ck.extra.clone())
            .unwrap_or_default(),
        csv: a.csv.clone().or_else(|| {
            resume
                .as_ref()
                .and_then(|(_, ck)| ck.extra.get(CSV_KEY).map(PathBuf::from))
        }),
        ranks: comm.size(),
        root,
    };
    // Rank 0 keeps the log, checkpoints and pictures; the other ranks log to scratch.
    let log_path = if root {
        metrics::log_path(&save)
    } else {
        std::env::temp_dir().join(format!(
            "wgpu-rnn-rank{}-{}.metrics.jsonl",
            comm.rank(),
            std::process::id()
        ))
    };
    let mut log = match &resume {
        Some((_, ck)) if root => MetricsLog::resume(&log_path, ck.step)?,
        _ => MetricsLog::create(&log_path)?,
    };
    let mut last_val = f32::NAN;
    let best = best_path(&save);
    let signals = watch_signals();

    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(a.steps.saturating_sub(start));
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let say = |line: String| {
        if !root {
            return;
        }
        if tty {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    let t0 = Instant::now();
    let mut split = Vec::new();
    let mut tokens = 0u64;
    let mut stopped = 0usize;
    for step in start..a.steps {
        let (batch, reset) = task.batch(seed, step, a.seq, a.batch)?;
        if reset {
            trainer.reset_state();
        }
        let s = trainer.step(&batch)?;
        if let Some(times) = trainer.step_times() {
            split.push(times);
        }
        tokens += (batch.t * batch.b) as u64;
        let rate = tokens as f64 / t0.elapsed().as_secs_f64();
        if s.skipped {
            say(format!(
                "step {}: gradient norm {} is not finite; update skipped",
                step + 1,
                s.grad_norm
            ));
        }
        stopped = signals.load(Ordering::SeqCst);
        // Every rank stops after the same step, or the others would wait in a collective.
        if comm.size() > 1 && !comm.all_agree(stopped == 0)? && stopped == 0 {
            stopped = 15;
        }
        let done = step + 1 == a.steps;
        let validate = (step + 1) % a.eval_every == 0 || done || stopped != 0;
        let v = if validate {
            // Every rank evaluates the whole validation batch; rank 0's figure decides (a
            // best-so-far save is a collective, so the ranks must agree on it).
            let mut v = [trainer.evaluate(&val)?];
            comm.broadcast_f32(&mut v)?;
            Some(v[0])
        } else {
            None
        };
        log.append(&MetricsRecord {
            step: step + 1,
            loss: s.loss,
            validation: v,
            tokens_per_s: rate,
            learning_rate: s.lr,
            grad_norm: s.grad_norm,
            skipped: s.skipped,
        })?;
        if let Some(v) = v {
            last_val = v;
            let mut line = format!(
                "step {:>6}  loss {:.4}  val {}  {:.0} tokens/s",
                step + 1,
                s.loss,
                describe(&task, v),
                rate
            );
            if let (Task::Speech(sp), true) = (&task, root) {
                let (cer, wer) = speech::error_rates(
                    gpu.as_ref(),
                    &config,
                    &trainer.params()?,
                    &sp.corpus.front_end.vocabulary,
                    &sp.corpus.valid,
                )?;
                line.push_str(&format!(
                    "  CER {:.1} %  WER {:.1} %",
                    100.0 * cer.rate(),
                    100.0 * wer.rate()
                ));
            }
            if a.keep_best && v < run.best {
                run.best = v;
                run.save(trainer.as_ref(), &best, &log)?;
                line.push_str("  (best so far)");
            }
            say(line);
        }
        if a.save_every > 0 && (step + 1) % a.save_every == 0 && !done && stopped == 0 {
            run.save(trainer.as_ref(), &save, &log)?;
        }
        bar.set_message(format!("loss {:.4} {:.0} tok/s", s.loss, rate));
        bar.inc(1);
        if stopped != 0 {
            break;
        }
    }
    bar.finish_and_clear();
    run.save(trainer.as_ref(), &save, &log)?;
    if !root {
        drop(log);
        std::fs::remove_file(&log_path).ok();
        return Ok(if stopped != 0 {
            128 + stopped as i32
        } else {
            0
        });
    }
    let elapsed = t0.elapsed().as_secs_f64();
    if tokens > 0 {
        eprintln!(
            "trained {} steps in {elapsed:.1} s: {:.0} tokens/s",
            trainer.steps() - start,
            tokens as f64 / elapsed
        );
    }
    if !split.is_empty() {
        let median = |f: fn(&wgpu_rnn::train::StepTimes) -> f64| {
            let mut v: Vec<f64> = split.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        eprintln!(
            "data-parallel step over {} ranks, medians of {} steps: compute {:.2} ms, \
             readback {:.2} ms, all-reduce {:.2} ms, upload and update {:.2} ms",
            comm.size(),
            split.len(),
            median(|t| t.compute_ms),
            median(|t| t.readback_ms),
            median(|t| t.all_reduce_ms),
            median(|t| t.update_ms)
        );
    }
    if last_val.is_finite() {
        println!("final validation: {}", describe(&task, last_val));
    }
    eprintln!(
        "saved {}, {} and {}",
        save.display(),
        plot::loss_plot_path(&save).display(),
        log_path.display()
    );
    if a.keep_best && run.best.is_finite() && best.exists() {
        eprintln!(
            "best validation {} kept in {}",
            describe(&task, run.best),
            best.display()
        );
    }
    if stopped != 0 {
        eprintln!(
            "stopped by {} after step {}; resume with --resume {}",
            signal_name(stopped),
            trainer.steps(),
            save.display()
        );
        return Ok(128 + stopped as i32);
    }

    if let Task::Text(t) = &task {
        if a.sample_len > 0 {
            let params = trainer.params()?;
            let text = crate::generate(
                gpu.as_ref(),
                &config,
                &params,
                t,
                "",
                a.sample_len,
                0.8,
                seed,
            )?;
            println!("--- sample ---\n{text}\n--------------");
        }
    }
    Ok(0)
}
