//! Writes the synthetic series of the forecasting table as CSV files (`t,value`, 600 rows,
//! seed 1): DIR/trend-season.csv, random-walk.csv and two-cycles.csv, for trying them
//! with the CLI (`wgpu-rnn train --task series --csv DIR/trend-season.csv`).
//!
//!   cargo run --example synthetic_series -- DIR

use wgpu_rnn::data::synthetic::{series, series_csv, SeriesKind};

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    for kind in SeriesKind::ALL {
        let path = dir.join(format!("{}.csv", kind.name()));
        std::fs::write(&path, series_csv(&series(kind, 600, 1)))?;
        println!("{}", path.display());
    }
    Ok(())
}
