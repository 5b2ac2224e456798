#!/usr/bin/env bash
# Regenerates the measured figures the README quotes, with the README's own commands, and
# prints them with the date and the adapter:
#
#   bash benches/readme-figures.sh [text|dropout|embedding|forecast|adding|speech|web|all] [OUT_DIR]
#
#   text    the default run (`cargo run --release`, i.e. `wgpu-rnn train` with no flags):
#           validation bits per character at every validation, the best, the sample
#           (a few minutes on lavapipe with 2 cores)
#   dropout the default run again with --head-dropout 0.25 (the default model has one
#           layer, so dropout between layers has nothing to drop): the same validations
#           (a few minutes)
#   embedding the default run with --embedding 0 (one-hot), 16, 32 and 64: the validations
#           of each (about 15 minutes), and the embedding's GPU cost at V = 10,000 and
#           T·B = 8,192 (`bench --vocab 10000 --profile` against the same shape fed features)
#   forecast the forecasting table: three synthetic series x every --difference option, a
#           rolling-origin backtest at 2.5 seasons beside naive and seasonal naive
#           (examples/forecast_table.rs; about 5 minutes on lavapipe)
#   adding  the adding problem's table: Elman, LSTM and GRU at T = 100 (1500 steps) and
#           T = 200 (3000 steps) (about 15 minutes on lavapipe)
#   speech  the spoken-digits demo: examples/speech-digits.sh (needs espeak-ng), training,
#           held-out CER/WER per validation, and transcripts of three held-out files
#           (about 20 minutes on lavapipe)
#   web     the page's training throughput in headless Chromium (WebGPU on SwiftShader)
#           against the same model natively (web/bench.py), and the page's screenshot
#           (web/screenshot.png, from web/e2e.py); needs chromium, chromium-driver,
#           python3-selenium and wasm-bindgen-cli (about 5 minutes)
#
# Every run is seeded, so on one adapter the losses repeat exactly; the times and
# tokens/s depend on the machine and its load. OUT_DIR (default: a fresh temporary
# folder) keeps the checkpoints, logs and pictures.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
case $what in text | dropout | embedding | forecast | adding | speech | web | all) ;; *)
    echo "usage: $0 [text|dropout|embedding|forecast|adding|speech|web|all] [OUT_DIR]" >&2
    exit 2
    ;;
esac

cargo build --release --quiet
bin=target/release/wgpu-rnn
echo "# $(date -u +%Y-%m-%d), $($bin info | sed -n 's/^chosen: *//p'), wgpu-rnn $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# outputs in $out"

# The validation lines of a train log.
validations() {
    grep -E '^step .* val ' "$1" | tr -s ' '
}

if [[ $what == text || $what == all ]]; then
    echo
    echo "## The default run: cargo run --release"
    $bin train --save "$out/text.safetensors" >"$out/text.out" 2>"$out/text.log"
    validations "$out/text.log"
    grep -E "^best validation|^trained" "$out/text.log" || true
    sed -n '/^--- sample ---$/,/^--------------$/p' "$out/text.out"
fi

if [[ $what == dropout || $what == all ]]; then
    echo
    echo "## The default run with dropout on the head's input: cargo run --release -- train --head-dropout 0.25"
    $bin train --head-dropout 0.25 --save "$out/dropout.safetensors" >"$out/dropout.out" 2>"$out/dropout.log"
    validations "$out/dropout.log"
    grep -E "^best validation|^trained" "$out/dropout.log" || true
fi

if [[ $what == embedding || $what == all ]]; then
    echo
    echo "## The default run with each --embedding (0: one-hot characters)"
    for e in 0 16 32 64; do
        $bin train --embedding "$e" --save "$out/embedding-$e.safetensors" \
            >"$out/embedding-$e.out" 2>"$out/embedding-$e.log"
        echo "--embedding $e:"
        validations "$out/embedding-$e.log" | sed 's/^/    /'
        grep -E "^best validation|^trained" "$out/embedding-$e.log" | sed 's/^/    /' || true
    done
    echo
    echo "## The embedding's cost at V = 10000, T·B = 64·128 (B,T,I,H,O = 128,64,64,128,64)"
    $bin bench --devices gpu --shapes 128,64,64,128,64 --profile --budget 10
    $bin bench --devices gpu --shapes 128,64,64,128,64 --profile --budget 10 --vocab 10000
fi

if [[ $what == forecast || $what == all ]]; then
    echo
    echo "## Forecasts of synthetic series: cargo run --release --example forecast_table -- 800 1"
    cargo run --release --quiet --example forecast_table -- 800 1
fi

if [[ $what == adding || $what == all ]]; then
    echo
    echo "## The adding problem (H=32, B=32, Adam lr 0.01, clip 1, seed 1)"
    for cell in rnn lstm gru; do
        for run in "100 1500" "200 3000"; do
            set -- $run
            name="adding-$cell-$1"
            $bin train --task adding --cell "$cell" --seq "$1" --steps "$2" --hidden 32 \
                --batch 32 --optimizer adam --lr 0.01 --clip 1 --eval-every 250 --seed 1 \
                --save "$out/$name.safetensors" >"$out/$name.out" 2>"$out/$name.log"
            echo "$cell T=$1, $2 steps: $(sed -n 's/^final validation: //p' "$out/$name.out")"
            validations "$out/$name.log" | sed 's/^/    /'
        done
    done
fi

if [[ $what == speech || $what == all ]]; then
    echo
    echo "## Spoken digits (examples/speech-digits.sh, 600 utterances, seed 1)"
    bash examples/speech-digits.sh "$out/digits" 600 1 >/dev/null
    $bin train --task speech --manifest "$out/digits/train.csv" \
        --validation-manifest "$out/digits/valid.csv" --cell gru --bidirectional --hidden 96 \
        --batch 16 --steps 1500 --eval-every 250 --save "$out/digits.safetensors" \
        >"$out/speech.out" 2>"$out/speech.log"
    validations "$out/speech.log"
    grep -E "^trained" "$out/speech.log" || true
    files=$(sed -n '2,4s/,.*//p' "$out/digits/valid.csv" | sed "s|^|$out/digits/|")
    echo "held-out transcripts: $(sed -n '2,4s/^[^,]*,//p' "$out/digits/valid.csv" | paste -sd '|')"
    # shellcheck disable=SC2086
    echo "transcribed:          $($bin transcribe --model "$out/digits.safetensors" $files | paste -sd '|')"
fi

if [[ $what == web || $what == all ]]; then
    echo
    echo "## The browser: the page's default model (web/bench.py), then the screenshot"
    bash web/serve.sh --build-only >/dev/null 2>&1
    /usr/bin/python3 web/bench.py
    WGPU_RNN_BIN=$bin /usr/bin/python3 web/e2e.py --screenshot web/screenshot.png >"$out/e2e.log" 2>&1
    tail -1 "$out/e2e.log"
    # Smaller for the repository, where optipng is installed (lossless).
    if command -v optipng >/dev/null; then optipng -o3 -quiet web/screenshot.png; fi
fi
