//! The subcommands, one module each; [`run`] dispatches a parsed command line.

pub mod bench;
pub mod eval;
pub mod export;
pub mod forecast;
pub mod info;
pub mod ranks;
pub mod sample;
pub mod train;
pub mod transcribe;

use std::path::Path;

use super::cli::{Cli, Command, DeviceArg};
use crate::data::TaskKind;
use crate::error::{Error, Result};
use crate::files::checkpoint::Checkpoint;
use crate::gpu::Gpu;

/// Runs a parsed command line; returns the process's exit code (0, or 130/143 after a
/// training run stopped by SIGINT/SIGTERM).
pub fn run(cli: Cli) -> Result<i32> {
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        None => train::train(cli.train),
        Some(Command::Train(a)) => train::train(*a),
        Some(Command::Sample(a)) => done(sample::sample(a)),
        Some(Command::Info) => done(info::info()),
        Some(Command::Bench(a)) => done(bench::bench(a)),
        Some(Command::Eval(a)) => done(eval::eval(a)),
        Some(Command::Tune(a)) => done(bench::tune(a)),
        Some(Command::Forecast(a)) => done(forecast::forecast(a)),
        Some(Command::Export(a)) => done(export::export(a)),
        Some(Command::Transcribe(a)) => done(transcribe::transcribe(a)),
    }
}

/// The checkpoint at `path`, refused unless it holds a model of task `task`; `use_` says
/// what the command runs, for the message.
pub fn load_checkpoint(path: &Path, task: TaskKind, use_: &str) -> Result<Checkpoint> {
    let ck = Checkpoint::load(path)?;
    if TaskKind::parse(&ck.task).ok() != Some(task) {
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            why: format!("it is a {:?} model; {use_}", ck.task),
        });
    }
    Ok(ck)
}

/// The GPU for `--device gpu`, none for the CPU reference.
pub fn device(d: DeviceArg) -> Result<Option<Gpu>> {
    match d {
        DeviceArg::Gpu => Ok(Some(Gpu::new()?)),
        DeviceArg::Cpu => Ok(None),
    }
}

/// Reads a series CSV file's columns with `--fill` (none: a missing cell is an error),
/// and says how many cells of each column it filled.
pub fn read_series(
    csv: &Path,
    target: Option<&str>,
    inputs: Option<&[String]>,
    fill: Option<&str>,
) -> Result<crate::data::series::SeriesData> {
    use crate::data::series::{Fill, SeriesData};
    let fill = fill.map(str::parse).transpose()?.unwrap_or(Fill::Error);
    let data = SeriesData::from_csv_filled(csv, target, inputs, fill)?;
    for (column, n) in data.filled() {
        eprintln!("filled {n} missing cell(s) of column {column:?} ({fill:?})");
    }
    Ok(data)
}
