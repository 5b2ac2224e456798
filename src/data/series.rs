//! Time series from CSV files: loading, per-column normalization, the training task's
//! windows, and autoregressive forecasts.
//!
//! Rows are time steps in file order. The first [`training_rows`] (90 %) of them are the
//! training part, the rest the validation part. At step s a model reads the normalized
//! input columns of row s and is trained to predict the normalized target column of row
//! s + 1. Normalization (mean and standard deviation per column) is fitted on the training
//! part only, and travels with a model in its checkpoint's `extra` map under
//! [`COLUMNS_KEY`] as JSON.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::csv_lines::Lines;
use super::seasonal::{self, Difference, Errors, Scores};
use crate::error::{Error, Result};
use crate::train::{Batch, Targets};

/// Fewest rows a series needs for training: 18 training rows and 2 validation rows.
pub const MIN_ROWS: usize = 20;

/// Most steps a series head predicts at once.
pub const MAX_AHEAD: usize = 4096;

/// The checkpoint `extra` key under which a series model keeps its [`Normalization`].
pub const COLUMNS_KEY: &str = "series.normalization";

/// Rows in the training part of a series of `rows` rows: the first 90 % (rounded down).
pub fn training_rows(rows: usize) -> usize {
    rows * 9 / 10
}

fn bad(why: impl Into<String>) -> Error {
    Error::BadSeries(why.into())
}

/// `"a", "b"`: column names for messages.
pub(crate) fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The used columns of a CSV file, in original units.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    source: String,
    inputs: Vec<String>,
    target: String,
    /// (rows, inputs), row-major.
    x: Vec<f64>,
    /// One target value per row.
    y: Vec<f64>,
    /// Columns whose gaps were filled, with how many.
    filled: Vec<(String, usize)>,
}

/// A header cell's name for messages: quoted, or `column N` (1-based) when empty.
fn column_label(header: &csv::StringRecord, c: usize) -> String {
    match &header[c] {
        "" => format!("column {}", c + 1),
        name => format!("{name:?}"),
    }
}

fn parse_finite(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How missing cells of the used columns are handled: empty cells and the usual markers
/// of a missing value (`NA`, `NaN`, `null`, `?`, `-`, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fill {
    /// A missing cell is an error naming its line and column (the default).
    #[default]
    Error,
    /// Straight lines between the known values on either side; a gap at the start takes
    /// the first known value, one at the end the last.
    Linear,
    /// The last known value carried forward; a gap at the start takes the first known one.
    Previous,
}

impl std::str::FromStr for Fill {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "error" | "none" => Ok(Fill::Error),
            "linear" => Ok(Fill::Linear),
            "previous" | "ffill" => Ok(Fill::Previous),
            _ => Err(Error::IncompatibleArgs(format!(
                "--fill {s:?}: expected linear or previous (the default is to refuse gaps)"
            ))),
        }
    }
}

/// Whether a cell marks a missing value rather than holding a number.
fn is_gap(cell: &str) -> bool {
    cell.is_empty()
        || ["na", "n/a", "nan", "null", "none", "?", "-"]
            .iter()
            .any(|m| cell.eq_ignore_ascii_case(m))
}

/// Fills the gaps (`None`) of one column in place as `fill` says; returns how many it
/// filled. A column with no known value at all has nothing to fill from: `None`.
fn fill_column(v: &mut [Option<f64>], fill: Fill) -> Option<usize> {
    let known: Vec<usize> = (0..v.len()).filter(|&k| v[k].is_some()).collect();
    let (&first, &last) = (known.first()?, known.last()?);
    let gaps = v.len() - known.len();
    let at = |k: usize, v: &[Option<f64>]| v[k].unwrap_or_default();
    for k in 0..first {
        v[k] = Some(at(first, v));
    }
    for k in last + 1..v.len() {
        v[k] = Some(at(last, v));
    }
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (va, vb) = (at(a, v), at(b, v));
        for (k, cell) in v.iter_mut().enumerate().take(b).skip(a + 1) {
            *cell = Some(match fill {
                Fill::Linear => va + (vb - va) * (k - a) as f64 / (b - a) as f64,
                Fill::Previous | Fill::Error => va,
            });
        }
    }
    Some(gaps)
}

/// A CSV file's header and data rows (each with its 1-based line), and which columns hold
/// numbers: what [`SeriesData::from_reader`] picks its columns from.
struct Table<'a> {
    source: &'a str,
    header: csv::StringRecord,
    rows: Vec<(u64, csv::StringRecord)>,
    /// Per column: whether any row holds a finite number there.
    numeric: Vec<bool>,
}

impl<'a> Table<'a> {
    /// Reads the header (which must name the columns, none twice) and at least one row.
    fn read(bytes: &[u8], source: &'a str) -> Result<Self> {
        let fail = |why: String| bad(format!("{source}: {why}"));
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let header = rdr.headers().map_err(|e| fail(e.to_string()))?.clone();
        if header.iter().all(str::is_empty) {
            return Err(fail(
                "the file is empty; expected a header row naming the columns, then one row \
                 of numbers per time step"
                    .into(),
            ));
        }
        for c in 0..header.len() {
            if let Some(d) =
                (c + 1..header.len()).find(|&d| !header[c].is_empty() && header[d] == header[c])
            {
                return Err(fail(format!(
                    "the header names column {} and column {} both {:?}; rename one so that \
                     columns can be told apart",
                    c + 1,
                    d + 1,
                    &header[c]
                )));
            }
        }
        let mut rows = Vec::new();
        let lines = Lines::new(bytes);
        for record in rdr.records() {
            let record = record.map_err(|e| fail(e.to_string()))?;
            let line = record.position().map_or(0, |p| lines.line_of(p.byte()));
            rows.push((line, record));
        }
        if rows.is_empty() {
            return Err(fail(format!(
                "the file has a header row but no data rows; a series needs at least \
                 {MIN_ROWS} rows, one per time step"
            )));
        }
        let numeric = (0..header.len())
            .map(|c| rows.iter().any(|(_, r)| parse_finite(&r[c]).is_some()))
            .collect();
        Ok(Table {
            source,
            header,
            rows,
            numeric,
        })
    }

    fn fail(&self, why: String) -> Error {
        bad(format!("{}: {why}", self.source))
    }

    /// Every column, for messages: its name, and whether it is not numeric.
    fn available(&self) -> String {
        (0..self.header.len())
            .map(|c| {
                let kind = if self.numeric[c] {
                    ""
                } else {
                    " (not numeric)"
                };
                format!("{}{kind}", column_label(&self.header, c))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The numeric column named `name` (given as `role`, for messages).
    fn find(&self, name: &str, role: &str) -> Result<usize> {
        let c = (0..self.header.len())
            .find(|&c| !name.is_empty() && self.header[c] == *name)
            .ok_or_else(|| {
                self.fail(format!(
                    "no column named {name:?} (given as {role}); the columns are {}",
                    self.available()
                ))
            })?;
        if self.rows.iter().all(|(_, r)| is_gap(&r[c])) {
            return Err(self.fail(format!(
                "column {name:?} (given as {role}) has no values: all {} of its cells are \
                 missing",
                self.rows.len()
            )));
        }
        if !self.numeric[c] {
            let (line, r) = &self.rows[0];
            return Err(self.fail(format!(
                "column {name:?} (given as {role}) is not numeric: line {line} holds {:?} \
                 and no row holds a number; choose a numeric column among {}",
                &r[c],
                self.available()
            )));
        }
        Ok(c)
    }

    /// The target column: the one named, or the last numeric one.
    fn target_column(&self, target: Option<&str>) -> Result<usize> {
        match target {
            Some(name) => self.find(name, "the target"),
            None => self.numeric.iter().rposition(|&n| n).ok_or_else(|| {
                self.fail(format!(
                    "no column holds numbers; a series needs at least one numeric column \
                     (the columns are {})",
                    self.available()
                ))
            }),
        }
    }

    /// The input columns: those named, in order, or the target alone.
    fn input_columns(&self, inputs: Option<&[String]>, target: usize) -> Result<Vec<usize>> {
        let names = match inputs {
            None => return Ok(vec![target]),
            Some([]) => {
                return Err(self.fail(
                    "the list of input columns is empty; name at least one column, or leave \
                     the inputs unset to use the target alone"
                        .into(),
                ))
            }
            Some(names) => names,
        };
        let mut cols = Vec::with_capacity(names.len());
        for name in names {
            let c = self.find(name, "an input")?;
            if cols.contains(&c) {
                return Err(self.fail(format!("column {name:?} is listed twice as an input")));
            }
            cols.push(c);
        }
        Ok(cols)
    }

    /// Cell `c` of row `r` (on line `line`) as a finite number, or `None` for a missing
    /// value (see [`is_gap`]); with `fill` [`Fill::Error`] a missing value is an error.
    fn value(&self, line: u64, r: &csv::StringRecord, c: usize, fill: Fill) -> Result<Option<f64>> {
        let cell = &r[c];
        let column = column_label(&self.header, c);
        if is_gap(cell) {
            if fill != Fill::Error {
                return Ok(None);
            }
            let what = match cell {
                "" => "the cell is empty".to_string(),
                m => format!("{m:?} marks a missing value"),
            };
            return Err(self.fail(format!(
                "line {line}, column {column}: {what}; fill in the value or remove the row, \
                 or fill the gaps with --fill linear|previous"
            )));
        }
        match cell.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            Ok(_) => Err(self.fail(format!(
                "line {line}, column {column}: {cell:?} is not a finite number; replace it \
                 with a measured value or remove the row"
            ))),
            Err(_) => Err(self.fail(format!(
                "line {line}, column {column}: {cell:?} is not a number"
            ))),
        }
    }

    /// Column `c`'s values, gaps filled as `fill` says; and how many were filled.
    fn column(&self, c: usize, fill: Fill) -> Result<(Vec<f64>, usize)> {
        let mut v = self
            .rows
            .iter()
            .map(|(line, r)| self.value(*line, r, c, fill))
            .collect::<Result<Vec<_>>>()?;
        let filled = fill_column(&mut v, fill).ok_or_else(|| {
            self.fail(format!(
                "column {} has no values: all {} of its cells are missing",
                column_label(&self.header, c),
                v.len()
            ))
        })?;
        Ok((
            v.into_iter().map(Option::unwrap_or_default).collect(),
            filled,
        ))
    }
}

impl SeriesData {
    /// Reads a CSV file: a header row naming the columns, then one row per time step.
    ///
    /// A column is numeric when at least one of its cells is a finite number; other columns
    /// (dates, labels) are ignored unless named, which is an error. `target` defaults to
    /// the last numeric column, `inputs` to the target alone. Every cell of a used column
    /// must be a finite number.
    pub fn from_csv(path: &Path, target: Option<&str>, inputs: Option<&[String]>) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_reader(file, &path.display().to_string(), target, inputs)
    }

    /// [`SeriesData::from_csv`] on CSV text; `source` names it in messages.
    pub fn from_csv_str(
        text: &str,
        source: &str,
        target: Option<&str>,
        inputs: Option<&[String]>,
    ) -> Result<Self> {
        Self::from_reader(text.as_bytes(), source, target, inputs)
    }

    /// [`SeriesData::from_csv`] on any reader; `source` names it in messages.
    pub fn from_reader(
        reader: impl Read,
        source: &str,
        target: Option<&str>,
        inputs: Option<&[String]>,
    ) -> Result<Self> {
        Self::from_reader_filled(reader, source, target, inputs, Fill::Error)
    }

    /// [`SeriesData::from_csv`] with missing cells of the used columns filled as `fill`
    /// says ([`SeriesData::filled`] counts them); a column with no value at all is an
    /// error either way.
    pub fn from_csv_filled(
        path: &Path,
        target: Option<&str>,
        inputs: Option<&[String]>,
        fill: Fill,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_reader_filled(
            &bytes[..],
            &path.display().to_string(),
            target,
            inputs,
            fill,
        )
    }

    /// [`SeriesData::from_csv_filled`] on any reader; `source` names it in messages.
    pub fn from_reader_filled(
        mut reader: impl Read,
        source: &str,
        target: Option<&str>,
        inputs: Option<&[String]>,
        fill: Fill,
    ) -> Result<Self> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| Error::Io {
            path: source.to_string(),
            source: e,
        })?;
        let table = Table::read(&bytes, source)?;
        let target_col = table.target_column(target)?;
        let input_cols = table.input_columns(inputs, target_col)?;
        let name = |c: usize| match &table.header[c] {
            "" => format!("column {}", c + 1),
            n => n.to_string(),
        };
        let mut filled = Vec::new();
        let mut read = |c: usize| -> Result<Vec<f64>> {
            let (v, n) = table.column(c, fill)?;
            if n > 0 && !filled.iter().any(|(f, _): &(String, usize)| *f == name(c)) {
                filled.push((name(c), n));
            }
            Ok(v)
        };
        let y = read(target_col)?;
        let columns = input_cols
            .iter()
            .map(|&c| read(c))
            .collect::<Result<Vec<_>>>()?;
        let x = (0..y.len())
            .flat_map(|r| columns.iter().map(move |col| col[r]))
            .collect();
        Ok(SeriesData {
            source: source.to_string(),
            inputs: input_cols.into_iter().map(name).collect(),
            target: name(target_col),
            x,
            y,
            filled,
        })
    }

    /// The gaps filled while reading ([`SeriesData::from_csv_filled`]): each column that
    /// had any, with its count.
    pub fn filled(&self) -> &[(String, usize)] {
        &self.filled
    }

    /// Time steps (data rows).
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// The input columns' names, in the order the model reads them.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The target column's name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The input values of row `r`, original units.
    pub fn input_row(&self, r: usize) -> &[f64] {
        let i = self.inputs.len();
        &self.x[r * i..(r + 1) * i]
    }

    /// The target column, original units, one value per row.
    pub fn target_values(&self) -> &[f64] {
        &self.y
    }

    /// What the data was read from (for messages).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Mean and standard deviation of one column: z = (v − mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    pub name: String,
    pub mean: f64,
    pub std: f64,
}

impl ColumnScale {
    /// Population statistics of `values`. A column constant over them (std below 1e-9 of
    /// its magnitude) gets std 1, so that it is centred but never divided by ~0.
    pub fn fit(name: &str, values: impl Iterator<Item = f64> + Clone) -> Self {
        let n = values.clone().count().max(1) as f64;
        let mean = values.clone().sum::<f64>() / n;
        let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let std = var.sqrt();
        ColumnScale {
            name: name.to_string(),
            mean,
            std: if std > 1e-9 * mean.abs().max(1.0) {
                std
            } else {
                1.0
            },
        }
    }

    pub fn normalize(&self, v: f64) -> f64 {
        (v - self.mean) / self.std
    }

    pub fn denormalize(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
}

/// Per-column normalization of a series model: its input columns, in order, and its
/// target column, each with the statistics of the training part it was fitted on; and
/// what the model learns of the target, its levels or their differences
/// ([`Difference`]), with the season P of a seasonal difference and of the seasonal
/// naive baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub inputs: Vec<ColumnScale>,
    pub target: ColumnScale,
    /// Training rows the statistics came from.
    pub fitted_rows: usize,
    /// The target's differencing (models from before it learned levels). The target, and
    /// an input column that is the target, are differenced before they are normalized.
    #[serde(default)]
    pub difference: Difference,
    /// The season P: given, or estimated from the training part (`None`: none found).
    #[serde(default)]
    pub season: Option<usize>,
    /// Steps the model's head predicts at once: the next `ahead` (differenced) values
    /// from each row (direct multi-step; 1, the default, is the next step alone).
    #[serde(default = "one")]
    pub ahead: usize,
}

fn one() -> usize {
    1
}

/// How a series task treats trends and seasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesOptions {
    /// The target's differencing; `None` chooses it from the training part
    /// ([`seasonal::auto_difference`]).
    pub difference: Option<Difference>,
    /// The season P; `None` estimates it ([`seasonal::estimate_season`]).
    pub season: Option<usize>,
    /// Steps the head predicts at once (direct multi-step training; 0 or 1: the next one).
    pub ahead: usize,
}

impl Normalization {
    /// Fits every used column on the training part of `data` (its first
    /// [`training_rows`] rows), the target's levels learned as they are.
    pub fn fit(data: &SeriesData) -> Self {
        Self::fit_with(data, Difference::None, None)
    }

    /// Fits every used column on the training part of `data` (its first
    /// [`training_rows`] rows; the validation rows play no part), the target (and an input
    /// that is the target) after `difference` with season `season`.
    pub fn fit_with(data: &SeriesData, difference: Difference, season: Option<usize>) -> Self {
        let n = training_rows(data.rows()).max(1);
        let lag = difference.lag(season.unwrap_or(0));
        let target = difference.apply(&data.y[..n], season.unwrap_or(0));
        let inputs = (0..data.inputs.len())
            .map(|k| match data.inputs[k] == data.target {
                true => ColumnScale::fit(&data.inputs[k], target.iter().copied()),
                false => ColumnScale::fit(&data.inputs[k], (lag..n).map(|r| data.input_row(r)[k])),
            })
            .collect();
        Normalization {
            inputs,
            target: ColumnScale::fit(&data.target, target.iter().copied()),
            fitted_rows: n,
            difference,
            season,
            ahead: 1,
        }
    }

    /// The season P of a seasonal difference (0 for the others, which read none).
    fn lag_season(&self) -> usize {
        self.season.unwrap_or(0)
    }

    /// Rows at the start of a series that have no difference.
    pub fn lag(&self) -> usize {
        self.difference.lag(self.lag_season())
    }

    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|c| c.name.clone()).collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain numbers and strings serialize")
    }

    /// Parses [`Normalization::to_json`]'s output and checks that it can be used.
    pub fn from_json(json: &str) -> Result<Self> {
        let n: Normalization = serde_json::from_str(json).map_err(|e| {
            bad(format!(
                "the stored normalization is not valid ({e}); retrain the model with the \
                 series task"
            ))
        })?;
        if n.inputs.is_empty() {
            return Err(bad("the stored normalization lists no input columns"));
        }
        if n.ahead == 0 || n.ahead > MAX_AHEAD {
            return Err(bad(format!(
                "the stored normalization predicts {} steps at once; expected 1 to {MAX_AHEAD}",
                n.ahead
            )));
        }
        if let Some(p) = n.season.filter(|&p| p < 2) {
            return Err(bad(format!(
                "the stored normalization has a season of {p} rows; a season is at least 2"
            )));
        }
        if n.difference.seasonal() && n.season.is_none() {
            return Err(bad(format!(
                "the stored normalization takes {} differences but has no season of 2 rows \
                 or more",
                n.difference.name()
            )));
        }
        for c in n.inputs.iter().chain([&n.target]) {
            if !(c.mean.is_finite() && c.std.is_finite() && c.std > 0.0) {
                return Err(bad(format!(
                    "the stored normalization of column {:?} has mean {} and std {}; expected \
                     finite values and std > 0",
                    c.name, c.mean, c.std
                )));
            }
        }
        Ok(n)
    }

    /// Stores this as JSON under [`COLUMNS_KEY`] in a checkpoint's `extra` map.
    pub fn store(&self, extra: &mut BTreeMap<String, String>) {
        extra.insert(COLUMNS_KEY.to_string(), self.to_json());
    }

    /// Reads what [`Normalization::store`] wrote.
    pub fn from_extra(extra: &BTreeMap<String, String>) -> Result<Self> {
        let json = extra.get(COLUMNS_KEY).ok_or_else(|| {
            bad(format!(
                "the model has no '{COLUMNS_KEY}' entry; it was not trained on a CSV \
                 series (train with the series task)"
            ))
        })?;
        Self::from_json(json)
    }

    /// Errs unless `data` has this normalization's input and target columns, in order.
    pub fn check_columns(&self, data: &SeriesData) -> Result<()> {
        if data.inputs != self.input_names() || data.target != self.target.name {
            return Err(bad(format!(
                "{}: the model reads columns [{}] and predicts {:?}, but the data was loaded \
                 with inputs [{}] and target {:?}; load it with the model's columns",
                data.source,
                quoted(&self.input_names()),
                self.target.name,
                quoted(&data.inputs),
                data.target
            )));
        }
        Ok(())
    }

    /// The target of `data` as the model learns it: differenced, then normalized, for rows
    /// lag..n.
    pub fn model_target(&self, data: &SeriesData) -> Vec<f64> {
        self.difference
            .apply(&data.y, self.lag_season())
            .into_iter()
            .map(|v| self.target.normalize(v))
            .collect()
    }

    /// The inputs of rows lag..n as the model reads them, (n − lag, I): each column
    /// normalized, the target's column differenced first.
    fn normalized_inputs(&self, data: &SeriesData) -> Vec<f32> {
        let lag = self.lag();
        let target = self.model_target(data);
        (lag..data.rows())
            .flat_map(|r| {
                let target = &target;
                data.input_row(r).iter().enumerate().map(move |(k, &v)| {
                    match data.inputs[k] == data.target {
                        true => target[r - lag] as f32,
                        false => self.inputs[k].normalize(v) as f32,
                    }
                })
            })
            .collect()
    }

    /// The level a model's normalized output `z` means at a row whose earlier levels are
    /// `before`: the difference undone.
    pub fn level(&self, before: &[f64], z: f64) -> f64 {
        let d = self.target.denormalize(z);
        match self.difference {
            Difference::None => d,
            other => other.base(before, self.lag_season()) + d,
        }
    }
}

/// Next-step forecasting of a CSV series: inputs at step s are the normalized input
/// columns of row s, the target is the normalized target of row s + 1 (differenced first
/// where the normalization says so: then rows start at the first difference).
#[derive(Debug, Clone)]
pub struct Series {
    norm: Normalization,
    /// (rows − lag, I) normalized inputs.
    x: Vec<f32>,
    /// Normalized (differenced) target, one per row from the lag on.
    y: Vec<f32>,
    /// The target's levels, every row, original units.
    levels: Vec<f64>,
    /// Training rows of `y` (rows lag..training_rows); the rest are validation rows.
    split: usize,
}

impl Series {
    /// The task on `data` with the default [`SeriesOptions`]: differencing chosen from the
    /// training part, the season estimated.
    pub fn new(data: &SeriesData) -> Result<Self> {
        Self::with_options(data, SeriesOptions::default())
    }

    /// The task on `data` with its trend and season treated as `options` say (choices left
    /// open are made from the training part); the normalization is fitted on the training
    /// part after differencing.
    pub fn with_options(data: &SeriesData, options: SeriesOptions) -> Result<Self> {
        check_rows(data)?;
        let train = &data.target_values()[..training_rows(data.rows())];
        if let Some(p) = options.season {
            seasonal::check_season(p, train.len())?;
        }
        let difference = options
            .difference
            .unwrap_or_else(|| seasonal::auto_difference(train));
        let season = options.season.or_else(|| seasonal::estimate_season(train));
        if difference.seasonal() && season.is_none() {
            return Err(bad(format!(
                "--difference {}: no season stands out in the training part's \
                 autocorrelation; give it with --season P",
                difference.name()
            )));
        }
        let mut norm = Normalization::fit_with(data, difference, season);
        norm.ahead = options.ahead.max(1);
        if norm.ahead > MAX_AHEAD {
            return Err(bad(format!(
                "--ahead {}: at most {MAX_AHEAD} steps at once",
                norm.ahead
            )));
        }
        Self::with_normalization(data, norm)
    }

    /// Steps the head predicts at once (the model's output size).
    pub fn ahead(&self) -> usize {
        self.norm.ahead
    }

    /// The task on `data` with a given normalization (e.g. a checkpoint's, to resume).
    pub fn with_normalization(data: &SeriesData, norm: Normalization) -> Result<Self> {
        check_rows(data)?;
        norm.check_columns(data)?;
        let (lag, train) = (norm.lag(), training_rows(data.rows()));
        if train < lag + MIN_ROWS / 2 {
            return Err(bad(format!(
                "{}: the training part has {train} rows, and {} differences with season {} \
                 leave {} of them, fewer than {}; use --difference first or none, a shorter \
                 --season, or a longer series",
                data.source,
                norm.difference.name(),
                norm.lag_season(),
                train.saturating_sub(lag),
                MIN_ROWS / 2
            )));
        }
        Ok(Series {
            x: norm.normalized_inputs(data),
            y: norm.model_target(data).iter().map(|&v| v as f32).collect(),
            levels: data.y.clone(),
            split: train - lag,
            norm,
        })
    }

    pub fn normalization(&self) -> &Normalization {
        &self.norm
    }

    /// Input columns (the model's input size).
    pub fn input_size(&self) -> usize {
        self.norm.inputs.len()
    }

    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Rows in the training part (after the lag); rows `split..rows` are the validation
    /// part.
    pub fn split(&self) -> usize {
        self.split
    }

    /// The one-step forecasts of the validation rows in target units, from the model's
    /// outputs `y` on [`Series::validation`]`(t)` (normalized, (T', B, 1)), scored beside
    /// the naive and seasonal naive forecasts of the same rows.
    pub fn validation_scores(&self, t: usize, y: &[f64]) -> Result<Scores> {
        let n = self.rows();
        let t = t.min(n - self.split).max(1);
        let b = (n - self.split).div_ceil(t);
        let ahead = self.norm.ahead;
        crate::shapes::check_len("validation outputs", &[t, b, ahead], y.len())?;
        let lag = self.norm.lag();
        let (mut model, mut naive, mut snaive, mut actual) = (vec![], vec![], vec![], vec![]);
        for row in 0..b {
            for s in 0..t {
                let at = self.split + row * t + s;
                if at >= n {
                    continue;
                }
                let a = at + lag; // the row of the whole series
                let before = &self.levels[..a];
                model.push(self.norm.level(before, y[(s * b + row) * ahead]));
                naive.push(before[a - 1]);
                snaive.push(seasonal::seasonal_naive(before, 1, self.norm.season)[0]);
                actual.push(self.levels[a]);
            }
        }
        Ok(Scores {
            model: Errors::of(&model, &actual),
            naive: Errors::of(&naive, &actual),
            seasonal_naive: Errors::of(&snaive, &actual),
        })
    }

    /// B windows of T + N rows (N = [`Series::ahead`]) at uniform random starts within the
    /// training part: inputs rows start..start+T, targets at step s rows
    /// start+s+1..=start+s+N.
    pub(crate) fn batch(&self, r: &mut ChaCha8Rng, t: usize, b: usize) -> Result<Batch> {
        let ahead = self.norm.ahead;
        if self.split <= ahead {
            return Err(bad(format!(
                "the training part has {} rows, too few for windows of T + {ahead} rows (the \
                 head predicts {ahead} steps at once); use --ahead {} or less, or a longer series",
                self.split,
                self.split.saturating_sub(1).max(1)
            )));
        }
        if self.split < t + ahead {
            return Err(bad(format!(
                "the training part has {} rows, too few for windows of T + {ahead} = {} rows; \
                 use --seq {} or less, or a longer series",
                self.split,
                t + ahead,
                self.split - ahead
            )));
        }
        let i = self.input_size();
        let mut x = vec![0.0; t * b * i];
        let mut y = vec![0.0; t * b * ahead];
        for row in 0..b {
            let start = r.random_range(0..=self.split - ahead - t);
            for s in 0..t {
                let k = s * b + row;
                x[k * i..(k + 1) * i]
                    .copy_from_slice(&self.x[(start + s) * i..(start + s + 1) * i]);
                y[k * ahead..(k + 1) * ahead]
                    .copy_from_slice(&self.y[start + s + 1..start + s + 1 + ahead]);
            }
        }
        Ok(Batch {
            t,
            b,
            x,
            targets: Targets::Values(y),
            weights: vec![1.0; t * b],
            lengths: None,
            tokens: None,
        })
    }

    /// Every validation row as a target exactly once, in windows of T' = min(T, V) steps
    /// (V validation rows) from h_0 = 0, like the training windows: window k, step s
    /// predicts row split + k·T' + s from row split + k·T' + s − 1 (so the first window
    /// starts at the last training row, which is only read, never a target). Steps past
    /// the last row are padding with weight 0. A head of N steps is scored on the rows
    /// whose N targets all lie inside the series (the others have weight 0).
    pub(crate) fn validation(&self, t: usize) -> Result<Batch> {
        let n = self.rows();
        let v = n - self.split;
        let t = t.min(v).max(1);
        let b = v.div_ceil(t);
        let i = self.input_size();
        let ahead = self.norm.ahead;
        let mut x = vec![0.0; t * b * i];
        let mut y = vec![0.0; t * b * ahead];
        let mut w = vec![0.0; t * b];
        for row in 0..b {
            for s in 0..t {
                let at = self.split + row * t + s;
                if at >= n {
                    continue;
                }
                let k = s * b + row;
                x[k * i..(k + 1) * i].copy_from_slice(&self.x[(at - 1) * i..at * i]);
                for j in 0..ahead.min(n - at) {
                    y[k * ahead + j] = self.y[at + j];
                }
                w[k] = if at + ahead <= n { 1.0 } else { 0.0 };
            }
        }
        if w.iter().all(|&w| w == 0.0) {
            return Err(bad(format!(
                "the validation part has {v} rows, fewer than the {ahead} steps the head \
                 predicts at once; use a smaller --ahead or a longer series"
            )));
        }
        Ok(Batch {
            t,
            b,
            x,
            targets: Targets::Values(y),
            weights: w,
            lengths: None,
            tokens: None,
        })
    }
}

/// Refuses a series too short to train on.
fn check_rows(data: &SeriesData) -> Result<()> {
    if data.rows() < MIN_ROWS {
        return Err(bad(format!(
            "{}: {} rows; training needs at least {MIN_ROWS} (90 % for training windows, \
             10 % for validation)",
            data.source,
            data.rows()
        )));
    }
    Ok(())
}

/// Writes forecasts as CSV: a `step,forecast` header, then steps 1..=N with their values.
pub fn write_forecast(writer: impl Write, forecasts: &[f64]) -> std::io::Result<()> {
    write_columns(writer, &[("forecast", forecasts)])
}

/// Writes named columns of forecasts as CSV: a header `step,<names>`, then steps 1..=N
/// (N the longest column; a shorter one leaves its cells empty).
pub fn write_columns(writer: impl Write, columns: &[(&str, &[f64])]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(writer);
    w.write_record(std::iter::once("step").chain(columns.iter().map(|(n, _)| *n)))?;
    let n = columns.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for k in 0..n {
        let cells = columns
            .iter()
            .map(|(_, v)| v.get(k).map_or(String::new(), f64::to_string));
        w.write_record(std::iter::once((k + 1).to_string()).chain(cells))?;
    }
    w.flush()
}

/// [`write_forecast`] to a file.
pub fn save_forecast(path: &Path, forecasts: &[f64]) -> Result<()> {
    save_columns(path, &[("forecast", forecasts)])
}

/// [`write_columns`] to a file.
pub fn save_columns(path: &Path, columns: &[(&str, &[f64])]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    write_columns(std::io::BufWriter::new(file), columns).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn load(text: &str, target: Option<&str>, inputs: Option<&[&str]>) -> Result<SeriesData> {
        let inputs: Option<Vec<String>> = inputs.map(|v| v.iter().map(|s| s.to_string()).collect());
        SeriesData::from_csv_str(text, "test.csv", target, inputs.as_deref())
    }

    fn message(r: Result<SeriesData>) -> String {
        match r {
            Ok(d) => panic!("expected an error, loaded {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `n` rows: a date, a label, then a = row, b = 100 + 2·row.
    fn table(n: usize) -> String {
        let mut s = String::from("date,label,a,b\n");
        for r in 0..n {
            s += &format!("2024-01-{:02},x{r},{r},{}\n", r % 28 + 1, 100 + 2 * r);
        }
        s
    }

    #[test]
    fn target_defaults_to_last_numeric_column_and_inputs_to_the_target() {
        let d = load(&table(5), None, None).unwrap();
        assert_eq!(d.target(), "b");
        assert_eq!(d.inputs(), ["b"]);
        assert_eq!(d.rows(), 5);
        assert_eq!(d.target_values(), [100.0, 102.0, 104.0, 106.0, 108.0]);
        assert_eq!(d.input_row(3), [106.0]);
    }

    #[test]
    fn named_target_and_inputs_are_read_in_the_order_given() {
        let d = load(&table(4), Some("a"), Some(&["b", "a"])).unwrap();
        assert_eq!(d.target(), "a");
        assert_eq!(d.inputs(), ["b", "a"]);
        assert_eq!(d.input_row(2), [104.0, 2.0]);
        assert_eq!(d.target_values(), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_date_column_named_as_input_is_not_numeric_with_line_and_column() {
        let m = message(load(&table(4), None, Some(&["date"])));
        assert!(m.contains("\"date\"") && m.contains("not numeric"), "{m}");
        assert!(m.contains("line 2") && m.contains("2024-01-01"), "{m}");
        let m = message(load(&table(4), Some("label"), None));
        assert!(m.contains("\"label\"") && m.contains("not numeric"), "{m}");
    }

    #[test]
    fn a_missing_cell_names_its_file_line_and_column() {
        // A blank line is skipped by the reader but still counts as a line of the file.
        let text = "t,v\n0,1.5\n\n1,\n2,3\n";
        let m = message(load(text, None, None));
        assert!(m.contains("test.csv") && m.contains("line 4"), "{m}");
        assert!(m.contains("column \"v\"") && m.contains("empty"), "{m}");
        let m = message(load("t,v\r\n0,1\r\n\r\n\r\n1,\r\n", None, None));
        assert!(m.contains("line 5"), "CRLF: {m}");
        // The same hole in an unused column does not matter.
        let d = load("t,v\n0,1.5\n,2\n", None, None).unwrap();
        assert_eq!(d.target_values(), [1.5, 2.0]);
    }

    #[test]
    fn a_non_numeric_or_non_finite_cell_in_a_used_column_is_an_error() {
        let m = message(load("t,v\n0,1\n1,abc\n", None, None));
        assert!(
            m.contains("line 3") && m.contains("\"abc\" is not a number"),
            "{m}"
        );
        for bad in ["inf", "-Infinity"] {
            let m = message(load(&format!("t,v\n0,1\n1,2\n2,{bad}\n"), None, None));
            assert!(
                m.contains("line 4") && m.contains("not a finite number"),
                "{bad}: {m}"
            );
        }
        // NaN, NA and the like mark a missing value: a gap, which --fill fills.
        for gap in ["nan", "NaN", "NA", "null", "?"] {
            let m = message(load(&format!("t,v\n0,1\n1,2\n2,{gap}\n"), None, None));
            assert!(
                m.contains("line 4") && m.contains("missing value") && m.contains("--fill"),
                "{gap}: {m}"
            );
        }
    }

    #[test]
    fn gaps_fill_linearly_or_with_the_previous_value_and_are_counted() {
        let text = "t,a,v\n0,,\n1,2,1\n2,NA,\n3,,NaN\n4,8,4\n5,9,\n";
        let read = |fill| {
            let inputs = ["a".to_string(), "v".to_string()];
            SeriesData::from_reader_filled(
                text.as_bytes(),
                "gaps.csv",
                Some("v"),
                Some(&inputs),
                fill,
            )
        };
        let m = message(read(Fill::Error));
        assert!(
            m.contains("line 2, column \"v\"") && m.contains("--fill"),
            "{m}"
        );
        let d = read(Fill::Linear).unwrap();
        // Leading gaps take the first known value, trailing ones the last.
        assert_eq!(d.target_values(), [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        let a: Vec<f64> = (0..6).map(|r| d.input_row(r)[0]).collect();
        assert_eq!(a, [2.0, 2.0, 4.0, 6.0, 8.0, 9.0]);
        assert_eq!(d.filled(), [("v".to_string(), 4), ("a".to_string(), 3)]);
        let d = read(Fill::Previous).unwrap();
        assert_eq!(d.target_values(), [1.0, 1.0, 1.0, 1.0, 4.0, 4.0]);
        // A column with no value at all has nothing to fill from.
        let m = message(SeriesData::from_reader_filled(
            "t,v\n0,\n1,NA\n".as_bytes(),
            "empty.csv",
            Some("v"),
            None,
            Fill::Linear,
        ));
        assert!(
            m.contains("column \"v\" (given as the target) has no values: all 2"),
            "{m}"
        );
        assert_eq!("linear".parse::<Fill>().unwrap(), Fill::Linear);
        assert!("spline".parse::<Fill>().is_err());
    }

    #[test]
    fn an_unknown_column_lists_the_available_ones() {
        let m = message(load(&table(3), Some("price"), None));
        assert!(m.contains("no column named \"price\""), "{m}");
        assert!(
            m.contains("\"date\" (not numeric)") && m.contains("\"a\"") && m.contains("\"b\""),
            "{m}"
        );
        let m = message(load(&table(3), None, Some(&["a", "zz"])));
        assert!(m.contains("\"zz\"") && m.contains("an input"), "{m}");
    }

    #[test]
    fn empty_header_only_duplicate_and_ragged_files_are_errors() {
        let m = message(load("", None, None));
        assert!(m.contains("empty"), "{m}");
        let m = message(load("a,b\n", None, None));
        assert!(
            m.contains("no data rows") && m.contains(&MIN_ROWS.to_string()),
            "{m}"
        );
        let m = message(load("a,b,a\n1,2,3\n", None, None));
        assert!(
            m.contains("column 1 and column 3") && m.contains("\"a\""),
            "{m}"
        );
        let m = message(load("a,b\n1,2\n3\n", None, None));
        assert!(m.contains("test.csv") && m.contains("field"), "{m}");
        let m = message(load("a,b\nx,y\n", None, None));
        assert!(m.contains("no column holds numbers"), "{m}");
        let m = message(load(&table(3), None, Some(&[])));
        assert!(m.contains("empty"), "{m}");
        let m = message(load(&table(3), None, Some(&["a", "a"])));
        assert!(m.contains("twice"), "{m}");
    }

    #[test]
    fn too_few_rows_says_how_many_are_needed() {
        let d = load(&table(MIN_ROWS - 1), None, None).unwrap();
        let e = Series::new(&d).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} rows", MIN_ROWS - 1))
                && e.contains(&format!("at least {MIN_ROWS}")),
            "{e}"
        );
        Series::new(&load(&table(MIN_ROWS), None, None).unwrap()).unwrap();
    }

    #[test]
    fn normalization_is_fitted_on_the_training_part_only() {
        // 90 training rows 0..90, then 10 validation rows far away.
        let mut s = String::from("v\n");
        for r in 0..100 {
            s += &format!("{}\n", if r < 90 { r as f64 } else { 1e6 });
        }
        let d = load(&s, None, None).unwrap();
        let n = Normalization::fit(&d);
        assert_eq!(n.fitted_rows, 90);
        assert!((n.target.mean - 44.5).abs() < 1e-12, "{n:?}");
        let std = ((90.0f64 * 90.0 - 1.0) / 12.0).sqrt();
        assert!((n.target.std - std).abs() < 1e-9, "{n:?}");
        assert_eq!(n.inputs, std::slice::from_ref(&n.target));
        let z = n.target.normalize(7.0);
        assert!((n.target.denormalize(z) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn a_constant_training_column_is_centred_not_divided_by_zero() {
        let c = ColumnScale::fit("k", [5.0; 10].into_iter());
        assert_eq!((c.mean, c.std), (5.0, 1.0));
    }

    #[test]
    fn normalization_round_trips_through_json_and_the_extra_map() {
        let n = Normalization::fit(&load(&table(30), Some("b"), Some(&["a", "b"])).unwrap());
        assert_eq!(Normalization::from_json(&n.to_json()).unwrap(), n);
        let mut extra = BTreeMap::new();
        n.store(&mut extra);
        assert!(extra[COLUMNS_KEY].contains("\"mean\""));
        assert_eq!(Normalization::from_extra(&extra).unwrap(), n);
        let e = Normalization::from_extra(&BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(COLUMNS_KEY), "{e}");
        let bad = n.to_json().replacen("\"std\":", "\"std\":-", 1);
        let e = Normalization::from_json(&bad).unwrap_err().to_string();
        assert!(e.contains("std"), "{e}");
        assert!(Normalization::from_json("{").is_err());
        // A season under 2 rows cannot come from a run: a damaged file.
        let zero = n.to_json().replacen("\"season\":null", "\"season\":0", 1);
        let e = Normalization::from_json(&zero).unwrap_err().to_string();
        assert!(e.contains("season of 0 rows"), "{e}");
        // Files from before differencing load as levels with a one-step head.
        let old = n.to_json().replacen(
            ",\"difference\":\"none\",\"season\":null,\"ahead\":1",
            "",
            1,
        );
        assert_ne!(old, n.to_json());
        assert_eq!(Normalization::from_json(&old).unwrap(), n);
    }

    /// A series whose target is its row index, so every normalized value names its row.
    fn indexed(n: usize, extra_input: bool) -> (Series, impl Fn(f32) -> usize) {
        let mut s = String::from("a,v\n");
        for r in 0..n {
            s += &format!("{},{r}\n", 1000 - r);
        }
        let inputs: &[&str] = if extra_input { &["a", "v"] } else { &["v"] };
        // Levels, not the differences the trend would get by default.
        let levels = SeriesOptions {
            difference: Some(Difference::None),
            ..Default::default()
        };
        let data = load(&s, Some("v"), Some(inputs)).unwrap();
        let series = Series::with_options(&data, levels).unwrap();
        let scale = series.normalization().target.clone();
        let row = move |z: f32| {
            let r = scale.denormalize(z as f64);
            assert!((r - r.round()).abs() < 1e-3, "{z} is no row");
            r.round() as usize
        };
        (series, row)
    }

    #[test]
    fn training_windows_have_their_shape_and_target_at_s_is_input_at_s_plus_1() {
        let (series, row) = indexed(200, true);
        let (t, b) = (12, 7);
        let batch = series
            .batch(&mut ChaCha8Rng::seed_from_u64(1), t, b)
            .unwrap();
        assert_eq!((batch.t, batch.b), (t, b));
        assert_eq!(batch.x.len(), t * b * 2);
        assert_eq!(batch.weights, vec![1.0; t * b]);
        let Targets::Values(y) = &batch.targets else {
            panic!("series targets are values")
        };
        assert_eq!(y.len(), t * b);
        let mut starts = std::collections::BTreeSet::new();
        for r in 0..b {
            let start = row(batch.x[r * 2 + 1]);
            starts.insert(start);
            for s in 0..t {
                let k = s * b + r;
                assert_eq!(row(batch.x[k * 2 + 1]), start + s);
                assert_eq!(row(y[k]), start + s + 1, "target is the next row");
                if s + 1 < t {
                    assert_eq!(y[k], batch.x[(k + b) * 2 + 1], "target at s = input at s+1");
                }
                // The other input column holds 1000 − row, normalized by its own scale.
                let a = series.normalization().inputs[0].denormalize(batch.x[k * 2] as f64);
                assert!((a - (1000 - start - s) as f64).abs() < 1e-3);
                assert!(
                    start + s + 1 < series.split(),
                    "targets stay in the training part"
                );
            }
        }
        assert!(starts.len() > 1, "random starts: {starts:?}");
    }

    #[test]
    fn training_windows_are_a_function_of_the_seed_and_cover_the_training_part() {
        let (series, row) = indexed(40, false);
        let t = 35; // split 36: starts 0 only
        let b1 = series
            .batch(&mut ChaCha8Rng::seed_from_u64(3), t, 2)
            .unwrap();
        assert_eq!(row(b1.x[0]), 0);
        let e = series
            .batch(&mut ChaCha8Rng::seed_from_u64(3), 36, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--seq 35"), "{e}");
    }

    #[test]
    fn validation_targets_are_the_last_tenth_each_exactly_once() {
        let (series, row) = indexed(200, false);
        assert_eq!(series.split(), 180);
        for t in [7, 20, 50] {
            let v = series.validation(t).unwrap();
            let Targets::Values(y) = &v.targets else {
                panic!()
            };
            let mut seen = Vec::new();
            for (k, (&w, &target)) in v.weights.iter().zip(y).enumerate() {
                if w > 0.0 {
                    assert_eq!(
                        row(v.x[k]) + 1,
                        row(target),
                        "t {t}: input is the row before"
                    );
                    seen.push(row(target));
                }
            }
            seen.sort();
            assert_eq!(seen, (180..200).collect::<Vec<_>>(), "t {t}");
            assert_eq!(v.t, t.min(20), "shorter T when the validation part is");
            assert_eq!(v.b, 20usize.div_ceil(v.t));
        }
    }
}
