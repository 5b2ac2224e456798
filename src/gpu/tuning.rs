//! Per-adapter choice of the matrix-product kernel: which variant, its tile shape and how
//! far it may split K. Defaults per adapter kind; `WGPU_RNN_GEMM` or a tuning file
//! (`wgpu-rnn tune`) override them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::AdapterSummary;
use crate::error::{Error, Result};

/// Each gemm invocation computes a TILE x TILE block of C in registers. It reaches the WGSL
/// of both variants as the generated constant `TILE`; a tile's row is one vec4 there.
pub(crate) const GEMM_TILE: u32 = 4;
const _: () = assert!(
    GEMM_TILE == 4,
    "the gemm kernels hold a tile's row in one vec4"
);

/// A matrix-product kernel and its shape. Written `register:XxY` or `tiled:BMxBNxBK`
/// (with an optional `/splitS` for the most K splits, e.g. `tiled:64x64x16/split8`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GemmVariant {
    /// Each invocation owns a 4x4 tile of C read straight from memory, no workgroup
    /// memory; an X x Y workgroup (shaders/gemm.wgsl). Best on lavapipe, where barriers
    /// are coroutine switches.
    Register { x: u32, y: u32 },
    /// A workgroup owns a BM x BN block of C and steps over K in slices of BK staged in
    /// workgroup memory, each invocation a 4x4 register tile (shaders/gemm_tiled.wgsl);
    /// the shape of the fast GPU products.
    Tiled { bm: u32, bn: u32, bk: u32 },
}

/// The gemm choice of one device: the variant, and the most pieces a long K may be cut
/// into when the output alone has too few tiles to fill the device (deterministic
/// split-K: partial products in a scratch buffer, summed in a fixed order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GemmTuning {
    pub variant: GemmVariant,
    /// 1 turns split-K off. Only the tiled variant splits.
    pub max_splits: u32,
}

/// Split K only when each piece keeps at least this much of it.
pub(crate) const MIN_K_PER_SPLIT: usize = 256;
/// ... and only while the output has fewer workgroups than this.
pub(crate) const SPLIT_BELOW_WORKGROUPS: usize = 128;

impl fmt::Display for GemmVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GemmVariant::Register { x, y } => write!(f, "register:{x}x{y}"),
            GemmVariant::Tiled { bm, bn, bk } => write!(f, "tiled:{bm}x{bn}x{bk}"),
        }
    }
}

impl fmt::Display for GemmTuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.variant)?;
        if self.max_splits > 1 {
            write!(f, "/split{}", self.max_splits)?;
        }
        Ok(())
    }
}

fn bad(value: &str, why: &str) -> Error {
    Error::BadKernel(format!(
        "gemm kernel {value:?}: {why}; expected register:XxY or tiled:BMxBNxBK[/splitS], \
         e.g. register:8x8 or tiled:64x64x16/split8"
    ))
}

impl FromStr for GemmTuning {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (kernel, splits) = match s.split_once("/split") {
            Some((k, n)) => (k, n.parse().map_err(|_| bad(s, "bad split count"))?),
            None => (s, 1),
        };
        let (kind, dims) = kernel.split_once(':').unwrap_or((kernel, ""));
        let dims: Vec<u32> = if dims.is_empty() {
            Vec::new()
        } else {
            dims.split('x')
                .map(|d| {
                    d.trim()
                        .parse()
                        .map_err(|_| bad(s, "sizes must be integers"))
                })
                .collect::<Result<_>>()?
        };
        let variant = match (kind.trim(), dims.as_slice()) {
            ("register", []) => GemmVariant::Register { x: 8, y: 8 },
            ("register", &[x, y]) => GemmVariant::Register { x, y },
            ("tiled", []) => GemmVariant::Tiled {
                bm: 64,
                bn: 64,
                bk: 16,
            },
            ("tiled", &[bm, bn, bk]) => GemmVariant::Tiled { bm, bn, bk },
            _ => return Err(bad(s, "unknown kernel or wrong number of sizes")),
        };
        let t = GemmTuning {
            variant,
            max_splits: splits,
        };
        t.check_shape().map_err(|why| bad(s, why))?;
        Ok(t)
    }
}

impl GemmTuning {
    /// The default for an adapter kind. Measured on lavapipe (BENCHMARKS.md): the
    /// register kernel beats workgroup-memory tiles there. Every GPU gets the tiled kernel
    /// (the shape of the published fast WGSL products) until measured otherwise.
    pub fn default_for(device_type: wgpu::DeviceType) -> Self {
        match device_type {
            wgpu::DeviceType::Cpu => GemmTuning {
                variant: GemmVariant::Register { x: 8, y: 8 },
                max_splits: 1,
            },
            _ => GemmTuning {
                variant: GemmVariant::Tiled {
                    bm: 64,
                    bn: 64,
                    bk: 16,
                },
                max_splits: 8,
            },
        }
    }

    /// Shape rules of the WGSL: tiles in whole 4x4 register blocks, BK a multiple of 4
    /// (the inner loop is unrolled by 4), split counts from 1 to 64.
    fn check_shape(&self) -> std::result::Result<(), &'static str> {
        if !(1..=64).contains(&self.max_splits) {
            return Err("the split count must be 1 to 64");
        }
        match self.variant {
            GemmVariant::Register { x, y } if x == 0 || y == 0 => {
                Err("workgroup sides must be positive")
            }
            GemmVariant::Tiled { bm, bn, bk }
                if bm == 0
                    || bn == 0
                    || bk == 0
                    || bm % GEMM_TILE != 0
                    || bn % GEMM_TILE != 0
                    || bk % 4 != 0 =>
            {
                Err("BM, BN and BK must be positive multiples of 4")
            }
            _ => Ok(()),
        }
    }

    /// Invocations per workgroup along x and y.
    pub fn workgroup(&self) -> (u32, u32) {
        match self.variant {
            GemmVariant::Register { x, y } => (x, y),
            GemmVariant::Tiled { bm, bn, .. } => (bn / GEMM_TILE, bm / GEMM_TILE),
        }
    }

    /// Bytes of workgroup memory one workgroup uses.
    pub fn workgroup_bytes(&self) -> u32 {
        match self.variant {
            GemmVariant::Register { .. } => 0,
            GemmVariant::Tiled { bm, bn, bk } => (bm + bn) * bk * 4,
        }
    }

    /// Why this choice cannot run on a device with `limits`, if it cannot.
    pub fn misfit(&self, limits: &wgpu::Limits) -> Option<String> {
        if let Err(why) = self.check_shape() {
            return Some(why.into());
        }
        let (x, y) = self.workgroup();
        if x > limits.max_compute_workgroup_size_x
            || y > limits.max_compute_workgroup_size_y
            || x * y > limits.max_compute_invocations_per_workgroup
        {
            return Some(format!(
                "a {x}x{y} workgroup exceeds the device (max {}x{}, {} invocations)",
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_invocations_per_workgroup
            ));
        }
        if self.workgroup_bytes() > limits.max_compute_workgroup_storage_size {
            return Some(format!(
                "{} B of workgroup memory exceed the device's {} B",
                self.workgroup_bytes(),
                limits.max_compute_workgroup_storage_size
            ));
        }
        None
    }

    /// The choice for a device: `forced` (an option or `WGPU_RNN_GEMM`) when it fits,
    /// else the adapter kind's default when it fits, else the plain register kernel.
    pub(crate) fn choose(
        forced: Option<GemmTuning>,
        device_type: wgpu::DeviceType,
        limits: &wgpu::Limits,
    ) -> Result<Self> {
        if let Some(t) = forced {
            return match t.misfit(limits) {
                None => Ok(t),
                Some(why) => Err(Error::BadKernel(format!(
                    "gemm kernel {t} cannot run on this device: {why}; choose a smaller shape"
                ))),
            };
        }
        let default = Self::default_for(device_type);
        if default.misfit(limits).is_none() {
            return Ok(default);
        }
        Ok(Self::default_for(wgpu::DeviceType::Cpu))
    }

    /// How many pieces to cut K into for an M x N x K product: enough to give the device
    /// about [`SPLIT_BELOW_WORKGROUPS`] workgroups, each piece at least
    /// [`MIN_K_PER_SPLIT`] long. 1 for the register variant.
    pub(crate) fn splits(&self, m: usize, n: usize, k: usize) -> usize {
        let GemmVariant::Tiled { bm, bn, .. } = self.variant else {
            return 1;
        };
        let tiles = m.div_ceil(bm as usize) * n.div_ceil(bn as usize);
        if tiles >= SPLIT_BELOW_WORKGROUPS {
            return 1;
        }
        let wanted = SPLIT_BELOW_WORKGROUPS.div_ceil(tiles);
        wanted
            .min(k / MIN_K_PER_SPLIT)
            .min(self.max_splits as usize)
            .max(1)
    }
}

/// Where a device's gemm choice came from, for `info` and `bench`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TuningSource {
    /// [`crate::GpuOptions::gemm`].
    Option,
    /// The `WGPU_RNN_GEMM` environment variable.
    Env,
    /// A tuning file written by `wgpu-rnn tune`.
    File(PathBuf),
    /// The adapter kind's default (no tuning file at the given path).
    Default(Option<PathBuf>),
}

impl fmt::Display for TuningSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuningSource::Option => write!(f, "set by the caller"),
            TuningSource::Env => write!(f, "from WGPU_RNN_GEMM"),
            TuningSource::File(p) => write!(f, "tuning file {}", p.display()),
            TuningSource::Default(Some(p)) => {
                write!(
                    f,
                    "default for the adapter kind; no tuning file {}",
                    p.display()
                )
            }
            TuningSource::Default(None) => write!(f, "default for the adapter kind"),
        }
    }
}

/// What `wgpu-rnn tune` writes: the chosen gemm kernel for one adapter, driver and crate
/// version, with the measurements it was chosen from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningFile {
    pub adapter: String,
    pub driver: String,
    pub crate_version: String,
    /// A [`GemmTuning`] in its text form.
    pub gemm: String,
    /// (candidate, median training-step milliseconds summed over the tuned shapes).
    pub measured: Vec<(String, f64)>,
    /// The shapes tuned for, B,T,I,H,O separated by ';', and the cell.
    pub shapes: String,
    pub cell: String,
    /// Batch rows of a stepwise-recurrence workgroup (4 or 16); the adapter kind's
    /// default when absent.
    #[serde(default)]
    pub stepwise_rows: Option<usize>,
}

/// The folder tuning files live in: `$XDG_CACHE_HOME/wgpu-rnn`, else
/// `$HOME/.cache/wgpu-rnn`; `None` when neither variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CACHE_HOME")
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("wgpu-rnn"))
}

/// The tuning file's path in `dir` for an adapter: keyed by adapter name, driver and this
/// crate's version (any other character than [A-Za-z0-9.-] becomes '_').
pub fn tuning_path(dir: &Path, adapter: &AdapterSummary) -> PathBuf {
    file_path(dir, &adapter.name, &adapter.driver)
}

fn file_path(dir: &Path, adapter: &str, driver: &str) -> PathBuf {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect()
    };
    dir.join(format!(
        "tuning-{}-{}-{}.json",
        slug(adapter),
        slug(driver),
        env!("CARGO_PKG_VERSION")
    ))
}

impl TuningFile {
    /// Where this file belongs in `dir` (see [`tuning_path`]).
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        file_path(dir, &self.adapter, &self.driver)
    }

    pub fn new(adapter: &AdapterSummary, gemm: GemmTuning) -> Self {
        TuningFile {
            adapter: adapter.name.clone(),
            driver: adapter.driver.clone(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            gemm: gemm.to_string(),
            measured: Vec::new(),
            shapes: String::new(),
            cell: String::new(),
            stepwise_rows: None,
        }
    }

    /// Reads a tuning file and checks it was written for `adapter` by this version.
    pub fn load(path: &Path, adapter: &AdapterSummary) -> Result<(Self, GemmTuning)> {
        let bad = |why: String| Error::BadKernel(format!("tuning file {}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: TuningFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (what, theirs, ours) in [
            ("adapter", &file.adapter, &adapter.name),
            ("driver", &file.driver, &adapter.driver),
            (
                "crate version",
                &file.crate_version,
                &env!("CARGO_PKG_VERSION").to_string(),
            ),
        ] {
            if theirs != ours {
                return Err(bad(format!(
                    "written for {what} {theirs:?}, this is {ours:?}"
                )));
            }
        }
        let gemm = file.gemm.parse().map_err(|e: Error| bad(e.to_string()))?;
        Ok((file, gemm))
    }

    /// Writes the file (through a temporary name, so a reader never sees half of it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::BadKernel(e.to_string()))?;
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// What a device runs: the gemm kernel (and where that choice came from) and the batch
/// rows of a stepwise-recurrence workgroup.
pub(crate) struct Choice {
    pub gemm: GemmTuning,
    pub source: TuningSource,
    pub stepwise_rows: usize,
}

/// `rows` if a stepwise workgroup can have that many batch rows (4 or 16); `what` names
/// where it came from in the error.
fn check_stepwise_rows(what: &str, rows: usize) -> Result<usize> {
    match rows {
        4 | 16 => Ok(rows),
        _ => Err(Error::BadKernel(format!(
            "{what} = {rows}: stepwise rows must be 4 or 16"
        ))),
    }
}

/// The choice for a new device. The gemm kernel: `forced` (an option), else
/// `WGPU_RNN_GEMM`, else the tuning file for the adapter in `cache`, else the adapter
/// kind's default. Stepwise rows: `rows` (an option), else `WGPU_RNN_STEPWISE_ROWS`, else
/// the tuning file's, else 16 on CPU adapters (measured on lavapipe) and 4 on GPUs (more
/// workgroups per step; not yet measured on a GPU). A corrupt, foreign or unfitting
/// tuning file is skipped with a warning on stderr.
pub(crate) fn resolve(
    forced: Option<GemmTuning>,
    rows: Option<usize>,
    cache: Option<&Path>,
    adapter: &AdapterSummary,
    limits: &wgpu::Limits,
) -> Result<Choice> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let path = cache.map(|d| tuning_path(d, adapter));
    let file = match path.as_ref().filter(|p| p.exists()) {
        Some(p) => match TuningFile::load(p, adapter).and_then(|(f, t)| {
            let t = GemmTuning::choose(Some(t), adapter.device_type, limits)?;
            let rows = f
                .stepwise_rows
                .map(|r| check_stepwise_rows("the tuning file's stepwise_rows", r))
                .transpose()?;
            Ok((t, rows))
        }) {
            Ok(found) => Some(found),
            Err(e) => {
                eprintln!("warning: ignoring it: {e}");
                None
            }
        },
        None => None,
    };
    let (gemm, source) = if let Some(t) = forced {
        (Some(t), TuningSource::Option)
    } else if let Some(v) = env("WGPU_RNN_GEMM") {
        let t = v
            .parse()
            .map_err(|e| Error::BadKernel(format!("WGPU_RNN_GEMM: {e}")))?;
        (Some(t), TuningSource::Env)
    } else if let (Some((t, _)), Some(p)) = (&file, &path) {
        (Some(*t), TuningSource::File(p.clone()))
    } else {
        (None, TuningSource::Default(path.clone()))
    };
    let stepwise_rows = match (rows, env("WGPU_RNN_STEPWISE_ROWS"), file.and_then(|f| f.1)) {
        (Some(r), _, _) => check_stepwise_rows("GpuOptions::stepwise_rows", r)?,
        (None, Some(v), _) => {
            let what = "WGPU_RNN_STEPWISE_ROWS";
            let r = v.trim().parse().map_err(|_| {
                Error::BadKernel(format!("{what}={v:?}: stepwise rows must be 4 or 16"))
            })?;
            check_stepwise_rows(what, r)?
        }
        (None, None, Some(r)) => r,
        _ if adapter.device_type == wgpu::DeviceType::Cpu => 16,
        _ => 4,
    };
    Ok(Choice {
        gemm: GemmTuning::choose(gemm, adapter.device_type, limits)?,
        source,
        stepwise_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunings_round_trip_through_text() {
        for s in ["register:8x8", "tiled:64x64x16", "tiled:32x16x8/split4"] {
            let t: GemmTuning = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            "tiled".parse::<GemmTuning>().unwrap().variant,
            GemmVariant::Tiled {
                bm: 64,
                bn: 64,
                bk: 16
            }
        );
        for bad in [
            "tiled:6x64x16",
            "tiled:64x64",
            "register:0x8",
            "warp:8x8",
            "tiled/split0",
            "tiled/splitx",
        ] {
            let e = bad.parse::<GemmTuning>().unwrap_err().to_string();
            assert!(e.contains("expected register:XxY"), "{bad}: {e}");
        }
    }

    #[test]
    fn split_k_only_for_long_k_and_few_tiles() {
        let t: GemmTuning = "tiled:64x64x16/split8".parse().unwrap();
        // dW_hh of H = 256: 4 x 4 tiles, K = T·B = 4096 -> 8 pieces of 512.
        assert_eq!(t.splits(256, 256, 4096), 8);
        // Short K: pieces would be under 256.
        assert_eq!(t.splits(256, 256, 400), 1);
        assert_eq!(t.splits(256, 256, 600), 2);
        // Enough tiles already.
        assert_eq!(t.splits(4096, 4096, 1 << 20), 1);
        let r: GemmTuning = "register:8x8/split8".parse().unwrap();
        assert_eq!(r.splits(4, 4, 1 << 20), 1);
    }
}
