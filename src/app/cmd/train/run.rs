//! A training run's bookkeeping around the library's steps: the metrics log, validation,
//! best-so-far and periodic saves (checkpoint, then the loss picture), the progress bar and
//! the lines rank 0 prints, and the summary at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::setup::{best_path, Setup};
use super::task;
use crate::app::plot;
use crate::error::Result;
use crate::files::checkpoint::Checkpoint;
use crate::files::metrics::{self, MetricsLog, MetricsRecord, ValidationErrors};
use crate::gpu::Gpu;
use crate::train::dist::Communicator;
use crate::train::{Batch, StepStats, StepTimes, Train};

/// Checkpoint metadata: the number of ranks that trained the checkpoint (a record: any
/// number may resume it, since it holds the whole batch's carried state and the batches
/// do not depend on it).
pub const RANKS_KEY: &str = "train.ranks";
/// Checkpoint metadata: the best validation loss so far.
pub const BEST_KEY: &str = "train.best_validation";

/// The state of a run between its steps.
pub struct Run<'s> {
    s: &'s Setup,
    comm: Arc<dyn Communicator>,
    /// The GPU the trainer runs on (None: the CPU reference).
    pub gpu: Option<Gpu>,
    log: MetricsLog,
    log_path: PathBuf,
    /// A series run's last validation errors beside the baselines', for its summary.
    last_scores: Option<crate::data::seasonal::Scores>,
    /// The best validation loss so far (carried across resumes in [`BEST_KEY`]).
    best: f32,
    val: Batch,
    last_val: f32,
    progress: Progress,
    started: Instant,
    first_step: u64,
    tokens: u64,
    /// Where each data-parallel step's time went.
    split: Vec<StepTimes>,
}

impl<'s> Run<'s> {
    /// Opens the metrics log (rank 0 continues a resumed run's; the other ranks log to
    /// scratch files) and builds the validation batch.
    pub fn start(
        s: &'s Setup,
        comm: Arc<dyn Communicator>,
        gpu: Option<Gpu>,
        first_step: u64,
    ) -> Result<Self> {
        let root = comm.is_root();
        let a = &s.args;
        let log_path = if root {
            metrics::log_path(&s.save)
        } else {
            std::env::temp_dir().join(format!(
                "wgpu-rnn-rank{}-{}.metrics.jsonl",
                comm.rank(),
                std::process::id()
            ))
        };
        let log = match &s.resumed {
            Some(r) if root => MetricsLog::resume(&log_path, r.checkpoint.step)?,
            _ => MetricsLog::create(&log_path)?,
        };
        let best = s
            .resumed_extra()
            .get(BEST_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f32::INFINITY);
        Ok(Run {
            val: s.task.validation(a.seed, a.seq, a.batch)?,
            progress: Progress::new(a.steps.saturating_sub(first_step), root),
            s,
            comm,
            gpu,
            log,
            log_path,
            best,
            last_val: f32::NAN,
            last_scores: None,
            started: Instant::now(),
            first_step,
            tokens: 0,
            split: Vec::new(),
        })
    }

    /// After a step: counts its tokens, logs it, validates when due (and keeps a new best)
    /// and saves every `--save-every` steps. `stopping`: a signal ends the run after this
    /// step.
    /// `step` counts from 1.
    pub fn after_step(
        &mut self,
        trainer: &mut dyn Train,
        step: u64,
        batch: &Batch,
        s: &StepStats,
        stopping: bool,
    ) -> Result<()> {
        let a = &self.s.args;
        if let Some(times) = trainer.step_times() {
            self.split.push(times);
        }
        self.tokens += (batch.t * batch.b) as u64;
        let rate = self.tokens as f64 / self.started.elapsed().as_secs_f64();
        if s.skipped {
            self.progress.say(format!(
                "step {step}: gradient norm {} is not finite; update skipped",
                s.grad_norm
            ));
        }
        let done = step == a.steps;
        let v = if step.is_multiple_of(a.eval_every) || done || stopping {
            Some(self.validate(trainer)?)
        } else {
            None
        };
        // What the task adds to a validation (rank 0): its line, and a series model's
        // errors beside the baselines', which the metrics log keeps.
        let extra = match v.is_some() && self.comm.is_root() {
            true => task::validation_extra(&self.s.task, self.gpu.as_ref(), trainer, &self.val)?,
            false => None,
        };
        let scores = extra.as_ref().and_then(|(_, s)| *s);
        if scores.is_some() {
            self.last_scores = scores;
        }
        let errors = scores.map(|s| ValidationErrors {
            mae: s.model.mae,
            rmse: s.model.rmse,
            naive_mae: s.naive.mae,
            naive_rmse: s.naive.rmse,
            seasonal_naive_mae: s.seasonal_naive.mae,
            seasonal_naive_rmse: s.seasonal_naive.rmse,
        });
        self.log.append(&MetricsRecord {
            step,
            loss: s.loss,
            validation: v,
            tokens_per_s: rate,
            learning_rate: s.lr,
            grad_norm: s.grad_norm,
            skipped: s.skipped,
            errors,
        })?;
        if let Some(v) = v {
            let extra = extra.map(|(line, _)| line).unwrap_or_default();
            self.report_validation(trainer, step, s.loss, v, rate, &extra)?;
        }
        if a.save_every > 0 && step.is_multiple_of(a.save_every) && !done && !stopping {
            self.save(trainer, &self.s.save)?;
        }
        self.progress
            .tick(format!("loss {:.4} {rate:.0} tok/s", s.loss));
        Ok(())
    }

    /// The validation loss. Every rank evaluates the whole validation batch; rank 0's
    /// figure decides (a best-so-far save is a collective, so the ranks must agree on it).
    fn validate(&mut self, trainer: &mut dyn Train) -> Result<f32> {
        let mut v = [trainer.evaluate(&self.val)?];
        self.comm.broadcast_f32(&mut v)?;
        self.last_val = v[0];
        Ok(v[0])
    }

    /// The validation line (rank 0), and the best-so-far checkpoint.
    fn report_validation(
        &mut self,
        trainer: &dyn Train,
        step: u64,
        loss: f32,
        v: f32,
        rate: f64,
        extra: &str,
    ) -> Result<()> {
        let t = &self.s.task;
        let mut line = format!(
            "step {step:>6}  loss {loss:.4}  val {}  {rate:.0} tokens/s{extra}",
            task::describe(t, v),
        );
        if self.s.args.keep_best && v < self.best {
            self.best = v;
            self.save(trainer, &best_path(&self.s.save))?;
            line.push_str("  (best so far)");
        }
        self.progress.say(line);
        Ok(())
    }

    /// The checkpoint: the trainer's state, the flags a resumed run inherits and the
    /// task's metadata.
    fn checkpoint(&self, trainer: &dyn Train) -> Result<Checkpoint> {
        let s = self.s;
        let name = s.task.kind().name();
        let mut ck = Checkpoint::from_trainer(trainer, name, task::vocabulary(&s.task))?;
        for h in &super::resume::INHERITED {
            ck.extra.insert(format!("train.{}", h.id), (h.get)(&s.args));
        }
        if self.best.is_finite() {
            ck.extra.insert(BEST_KEY.into(), self.best.to_string());
        }
        ck.extra
            .insert(RANKS_KEY.into(), self.comm.size().to_string());
        ck.extra.extend(task::checkpoint_extra(s));
        Ok(ck)
    }

    /// The checkpoint at `path`, then the loss picture beside the main one, drawn from the
    /// whole metrics log (earlier runs' steps too, after a resume). Every rank calls this
    /// (the checkpoint gathers each rank's carried state); rank 0 writes.
    pub fn save(&self, trainer: &dyn Train, path: &Path) -> Result<()> {
        let ck = self.checkpoint(trainer)?;
        if !self.comm.is_root() {
            return Ok(());
        }
        ck.save(path)?;
        self.log.sync()?;
        let records = self.log.records()?;
        let (train, val) = metrics::loss_curves(&records);
        let (title, unit) = task::plot_labels(&self.s.task);
        let c = &self.s.config;
        let path = plot::loss_plot_path(&self.s.save);
        let title = format!("{title}: {} H={}", c.cell.name(), c.hidden_size);
        let errors: Vec<(u64, ValidationErrors)> = records
            .iter()
            .filter_map(|r| r.errors.map(|e| (r.step, e)))
            .collect();
        if errors.is_empty() {
            return plot::loss_plot(&path, &title, unit, &train, &val);
        }
        let curve =
            |f: fn(&ValidationErrors) -> f64| errors.iter().map(|(s, e)| (*s, f(e))).collect();
        let curves = plot::ErrorCurves {
            what: "MAE (target units)",
            model: curve(|e| e.mae),
            naive: curve(|e| e.naive_mae),
            seasonal_naive: curve(|e| e.seasonal_naive_mae),
        };
        plot::loss_plot_with_errors(&path, &title, unit, &train, &val, curves)
    }

    /// Saves the run at its end, and (rank 0) prints what it did and where it went;
    /// `stopped` names the signal that ended it early.
    pub fn finish(mut self, trainer: &dyn Train, stopped: Option<&str>) -> Result<()> {
        self.progress.finish();
        self.save(trainer, &self.s.save)?;
        if !self.comm.is_root() {
            let log = std::mem::replace(&mut self.log_path, PathBuf::new());
            drop(self.log);
            std::fs::remove_file(&log).ok();
            return Ok(());
        }
        self.print_summary(trainer, stopped)
    }

    fn print_summary(&self, trainer: &dyn Train, stopped: Option<&str>) -> Result<()> {
        let s = self.s;
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.tokens > 0 {
            eprintln!(
                "trained {} steps in {elapsed:.1} s: {:.0} tokens/s",
                trainer.steps() - self.first_step,
                self.tokens as f64 / elapsed
            );
        }
        if let Some(line) = split_line(&self.split, self.comm.size()) {
            eprintln!("{line}");
        }
        if self.last_val.is_finite() {
            println!(
                "final validation: {}",
                task::describe(&s.task, self.last_val)
            );
        }
        if let Some(scores) = &self.last_scores {
            println!(
                "one-step forecasts of the validation rows: {}",
                scores.line()
            );
            println!("{}", scores.verdict());
        }
        eprintln!(
            "saved {}, {} and {}",
            s.save.display(),
            plot::loss_plot_path(&s.save).display(),
            self.log_path.display()
        );
        let best = best_path(&s.save);
        if s.args.keep_best && self.best.is_finite() && best.exists() {
            eprintln!(
                "best validation {} kept in {}",
                task::describe(&s.task, self.best),
                best.display()
            );
        }
        if let Some(signal) = stopped {
            eprintln!(
                "stopped by {signal} after step {}; resume with --resume {}",
                trainer.steps(),
                s.save.display()
            );
            return Ok(());
        }
        let params = trainer.params()?;
        let a = &s.args;
        let sample = task::final_sample(
            &s.task,
            self.gpu.as_ref(),
            &s.config,
            &params,
            a.sample_len,
            a.seed,
        )?;
        if let Some(text) = sample {
            println!("--- sample ---\n{text}\n--------------");
        }
        Ok(())
    }
}

/// The medians of where data-parallel steps spent their time, if there were any.
fn split_line(split: &[StepTimes], ranks: usize) -> Option<String> {
    if split.is_empty() {
        return None;
    }
    let median = |f: fn(&StepTimes) -> f64| {
        let mut v: Vec<f64> = split.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(format!(
        "data-parallel step over {ranks} ranks, medians of {} steps: compute {:.2} ms, \
         readback {:.2} ms, all-reduce {:.2} ms, upload and update {:.2} ms",
        split.len(),
        median(|t| t.compute_ms),
        median(|t| t.readback_ms),
        median(|t| t.all_reduce_ms),
        median(|t| t.update_ms)
    ))
}

/// The progress bar on a terminal, and the lines rank 0 prints (above the bar).
struct Progress {
    bar: indicatif::ProgressBar,
    tty: bool,
    root: bool,
}

impl Progress {
    fn new(steps: u64, root: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::new(steps);
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
        Progress { bar, tty, root }
    }

    /// Prints a line on rank 0.
    fn say(&self, line: String) {
        if !self.root {
            return;
        }
        if self.tty {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn tick(&self, message: String) {
        self.bar.set_message(message);
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
