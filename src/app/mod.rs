//! The command-line application (feature `cli`; the pictures alone: feature `plot`): its arguments ([`cli`]), one module per
//! subcommand ([`cmd`]), the benchmark grid and the tuner ([`mod@bench`]), and the loss and
//! forecast pictures ([`plot`]). `src/main.rs` only parses and dispatches.

/// `std::eprintln!`, but each line reaches stderr in one write. The standard macro writes
/// a line's pieces one by one to the unbuffered stderr, and under mpirun the ranks share
/// one stderr pipe: their lines came out cut into each other ("rank task sine…1 of 2").
/// Shadows the standard macro in the application's modules.
#[cfg(feature = "cli")]
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod cmd;
#[cfg(feature = "plot")]
pub mod plot;
