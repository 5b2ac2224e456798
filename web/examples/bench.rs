//! The browser benchmark's model trained natively (lavapipe, or any adapter `WGPU_BACKEND`
//! and `WGPU_ADAPTER_NAME` pick), by the same code: `cargo run -p wgpu-rnn-web --release
//! --example bench -- [OPTIONS_JSON] [WARMUP] [CHUNKS] [STEPS]`. Prints one JSON line.
//! `WGPU_RNN_IMMEDIATES=0 WGPU_RNN_SUBGROUPS=0` keeps to the kernels the browser has.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let run = || -> Result<String, String> {
        let options = wgpu_rnn_web::Options::parse(&arg(0, "{}"))?;
        let number = |i: usize, d: &str| {
            arg(i, d)
                .parse::<u32>()
                .map_err(|e| format!("argument {}: {e}", i + 1))
        };
        let (warmup, chunks, steps) = (number(1, "5")?, number(2, "5")?, number(3, "10")?);
        pollster::block_on(async {
            let gpu = wgpu_rnn::Gpu::new_async()
                .await
                .map_err(|e| e.to_string())?;
            wgpu_rnn_web::bench(&gpu, &options, warmup, chunks as usize, steps)
                .await
                .map(|r| r.to_json())
                .map_err(|e| e.to_string())
        })
    };
    match run() {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}
