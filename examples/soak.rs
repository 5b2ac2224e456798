//! Soak test: 10,000 training steps at a small size, checking that neither device memory
//! (bytes in this crate's buffers) nor host memory (resident set) grows once warmed up.
//! Not a unit test: run it when changing anything that allocates.
//!
//!   cargo run --release --example soak            # 10,000 steps
//!   cargo run --release --example soak -- 2000    # another step count
//!
//! Exits non-zero if device memory after warm-up ever differs from its value at step
//! 1,000, or host RSS grows by more than 8 MiB after it.

use wgpu_rnn::data::{Task, Text, DEFAULT_CORPUS};
use wgpu_rnn::{Gpu, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Train, TrainConfig, Trainer};

/// Resident set size in bytes, from /proc (Linux); 0 elsewhere.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() -> wgpu_rnn::Result<()> {
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let gpu = Gpu::new()?;
    let task = Task::Text(Text::new(DEFAULT_CORPUS)?);
    let (i, o) = task.io();
    let cfg = RnnConfig::new(i, 32, o).with_layers(2);
    let mut tc = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.005),
        task.loss(),
    );
    tc.stateful = true;
    let mut trainer = Trainer::new(Rnn::new(&gpu, cfg, 1)?, tc)?;
    let (seq, batch) = (16, 8);
    let val = task.validation(1, seq, batch)?;
    println!("adapter: {}", gpu.adapter());
    println!(
        "{:>7} {:>9} {:>12} {:>10}",
        "step", "loss", "device B", "host RSS MiB"
    );
    let warm = 1_000.min(steps);
    let (mut device_ref, mut rss_ref) = (None, 0);
    let mut ok = true;
    let start = std::time::Instant::now();
    for s in 0..steps {
        let (b, reset) = task.batch(1, s, seq, batch)?;
        if reset {
            trainer.reset_state();
        }
        let stats = trainer.step(&b)?;
        if (s + 1) % 100 == 0 {
            trainer.evaluate(&val)?;
        }
        if (s + 1) % 1_000 == 0 || s + 1 == steps {
            let (dev, host) = (gpu.memory().live_bytes, rss());
            println!(
                "{:>7} {:>9.4} {:>12} {:>10.1}",
                s + 1,
                stats.loss,
                dev,
                host as f64 / 1048576.0
            );
            if s + 1 == warm {
                device_ref = Some(dev);
                rss_ref = host;
            } else if let Some(d) = device_ref {
                if dev != d || host > rss_ref + (8 << 20) {
                    ok = false;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{steps} steps in {secs:.1} s; device memory {} B at step {warm}, {} B at the end \
         (peak {} B); host RSS {:.1} MiB at step {warm}, {:.1} MiB at the end",
        device_ref.unwrap_or(0),
        gpu.memory().live_bytes,
        gpu.memory().peak_bytes,
        rss_ref as f64 / 1048576.0,
        rss() as f64 / 1048576.0
    );
    if !ok {
        eprintln!("memory grew after warm-up");
        std::process::exit(1);
    }
    Ok(())
}
