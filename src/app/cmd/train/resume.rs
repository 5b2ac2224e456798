//! `train --resume`: what a resumed run takes from its checkpoint. The task, sizes and cell
//! come from the checkpoint (a typed flag that contradicts them is an error); the
//! hyperparameters in [`INHERITED`] too, unless typed again.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::app::cli::{flag, TaskArg, TrainArgs};
use crate::error::{Error, Result};
use crate::files::checkpoint::Checkpoint;
use crate::model::Activation;

/// The checkpoint a run resumes, and where it was read.
pub struct Resumed {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
}

impl Resumed {
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Resumed {
            path: path.to_path_buf(),
            checkpoint: Checkpoint::load(path)?,
        })
    }

    fn error(&self, why: String) -> Error {
        Error::Checkpoint {
            path: self.path.display().to_string(),
            why,
        }
    }
}

/// A hyperparameter a checkpoint records (metadata `train.<id>`, the flag's value as text)
/// and a resumed run takes unless the flag is typed again.
pub struct Inherited {
    /// The flag's clap id ("lr_schedule" for `--lr-schedule`).
    pub id: &'static str,
    /// The flag's value as text.
    pub get: fn(&TrainArgs) -> String,
    /// Sets the flag from saved text.
    pub set: fn(&mut TrainArgs, &str) -> std::result::Result<(), String>,
}

fn number<T: std::str::FromStr>(v: &str) -> std::result::Result<T, String> {
    v.parse().map_err(|_| format!("{v:?} is not a number"))
}

fn choice<T: ValueEnum>(v: &str) -> std::result::Result<T, String> {
    T::from_str(v, true)
}

fn choice_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// One [`Inherited`] per field: `field: number` or `field: choice` (a clap value enum).
macro_rules! inherited {
    ($($field:ident: $kind:ident),* $(,)?) => {
        [$(Inherited {
            id: stringify!($field),
            get: |a| inherited!(@get $kind, a.$field),
            set: |a, v| {
                a.$field = $kind(v)?;
                Ok(())
            },
        }),*]
    };
    (@get number, $v:expr) => { $v.to_string() };
    (@get choice, $v:expr) => { choice_name(&$v) };
}

/// The hyperparameters a resumed run inherits, in the order the metadata lists them.
pub const INHERITED: [Inherited; 15] = inherited![
    lr: number,
    lr_schedule: choice,
    warmup: number,
    min_lr: number,
    lr_step_size: number,
    lr_gamma: number,
    optimizer: choice,
    momentum: number,
    weight_decay: number,
    clip: number,
    batch: number,
    seq: number,
    eval_every: number,
    seed: number,
    steps: number,
];

/// A flag typed with a value the checkpoint contradicts.
fn conflict(what: &str, typed: impl std::fmt::Display, saved: impl std::fmt::Display) -> Error {
    Error::IncompatibleArgs(format!(
        "{what} {typed} conflicts with the resumed checkpoint's {saved}; leave it out (a \
         resumed run keeps its task, sizes and cell) or start a new run with --save"
    ))
}

/// Takes the task, sizes, cell and (unless typed) hyperparameters from the checkpoint into
/// `a`, and refuses typed flags that contradict it; returns the task.
pub fn adopt(a: &mut TrainArgs, r: &Resumed) -> Result<TaskArg> {
    let task = adopt_task(a, r)?;
    check_model_flags(a, &r.checkpoint)?;
    adopt_hyperparameters(a, r)?;
    check_steps(a, r.checkpoint.step)?;
    Ok(task)
}

fn adopt_task(a: &mut TrainArgs, r: &Resumed) -> Result<TaskArg> {
    let saved = &r.checkpoint.task;
    let task = TaskArg::from_str(saved, true)
        .map_err(|_| r.error(format!("its task {saved:?} is not one this CLI trains")))?;
    if a.typed("task") && a.task != task {
        return Err(conflict("--task", a.task.name(), format!("task {saved}")));
    }
    a.task = task;
    Ok(task)
}

/// Refuses typed model flags (sizes, cell, nonlinearity, bias, directions, init) that
/// differ from the checkpoint's model.
fn check_model_flags(a: &TrainArgs, ck: &Checkpoint) -> Result<()> {
    let c = &ck.config;
    let cell = a.cell;
    let nonlinearity = a.nonlinearity.map(Activation::from);
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
            nonlinearity.map_or("", Activation::name).to_string(),
            c.activation.name().to_string(),
            nonlinearity != Some(c.activation),
        ),
        ("no_bias", "".into(), format!("bias={}", c.bias), c.bias),
        (
            "bidirectional",
            "".into(),
            format!("directions={}", c.directions()),
            !c.bidirectional,
        ),
        (
            "embedding",
            a.embedding.to_string(),
            embedding_of(c).to_string(),
            a.embedding != embedding_of(c),
        ),
        (
            "dropout",
            a.dropout.to_string(),
            c.dropout.to_string(),
            a.dropout != c.dropout,
        ),
        (
            "head_dropout",
            a.head_dropout.to_string(),
            c.head_dropout.to_string(),
            a.head_dropout != c.head_dropout,
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
    Ok(())
}

/// A model's `--embedding`: its embedding's dimension, 0 without one.
pub fn embedding_of(c: &crate::model::RnnConfig) -> usize {
    c.embedding.map_or(0, |_| c.input_size)
}

/// Sets every [`INHERITED`] flag not typed from the checkpoint; a typed optimizer or seed
/// must agree with it.
fn adopt_hyperparameters(a: &mut TrainArgs, r: &Resumed) -> Result<()> {
    let extra = &r.checkpoint.extra;
    for h in &INHERITED {
        // A checkpoint the library saved (Checkpoint::from_trainer) has the optimizer's
        // settings under their own names, without `train.`.
        let library = matches!(h.id, "lr" | "optimizer" | "momentum" | "weight_decay");
        let saved = extra.get(&format!("train.{}", h.id));
        let Some(v) = saved.or_else(|| extra.get(h.id).filter(|_| library)) else {
            continue;
        };
        if !a.typed(h.id) {
            (h.set)(a, v).map_err(|e| r.error(format!("its train.{}: {e}", h.id)))?;
        } else if matches!(h.id, "optimizer" | "seed") && !(h.get)(a).eq_ignore_ascii_case(v) {
            return Err(conflict(
                &flag(h.id),
                (h.get)(a),
                format!("{} {v}", flag(h.id)),
            ));
        }
    }
    // Checkpoints from before train.seed was recorded kept it as "seed".
    if let (false, Some(s)) = (a.typed("seed"), extra.get("seed")) {
        a.seed = s
            .parse()
            .map_err(|_| r.error(format!("its seed {s:?} is not a number")))?;
    }
    Ok(())
}

/// `--steps` is the total to reach: it must lie beyond the checkpoint's step.
fn check_steps(a: &TrainArgs, step: u64) -> Result<()> {
    if a.steps > step {
        return Ok(());
    }
    if !a.typed("steps") {
        return Err(Error::IncompatibleArgs(format!(
            "the resumed run already reached its --steps {}; give a larger --steps to go on",
            a.steps
        )));
    }
    Err(Error::IncompatibleArgs(format!(
        "--steps {} is not beyond the checkpoint's step {step}: --steps is the total to reach \
         (to train {} more: --steps {})",
        a.steps,
        a.steps.max(1),
        step + a.steps.max(1)
    )))
}

/// Refuses `--target` and `--inputs` with `--resume`: the model keeps its columns.
pub fn check_columns_kept(a: &TrainArgs, r: &Resumed) -> Result<()> {
    for id in ["target", "inputs"] {
        if a.typed(id) {
            let columns = r.checkpoint.extra.get(crate::data::series::COLUMNS_KEY);
            return Err(Error::IncompatibleArgs(format!(
                "{} with --resume: the resumed model keeps the columns it was trained on ({})",
                flag(id),
                columns.map_or("", String::as_str)
            )));
        }
    }
    Ok(())
}
