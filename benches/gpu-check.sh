#!/usr/bin/env bash
# The GPU check in one command: adapter, the whole test suite, the bench grid and the
# PyTorch/CUDA baseline, on a machine with prebuilt binaries and no Rust toolchain.
#
#   bash benches/gpu-check-prepare.sh      # on the build machine: fills .devbin/
#   bash benches/gpu-check.sh [OUT_DIR]    # on the GPU machine, from the repository root
#
# Binaries: the CLI wgpu-rnn from $WGPU_RNN_BIN_DIR, else .devbin/ (unpacked first from
# .devbin.tar.xz when that is newer), else target/release/; test executables from
# <that dir>/tests/ or .devbin/tests/, else the newest of `cargo test --release --no-run`
# in target/release/deps/.
#
# Everything lands in OUT_DIR (default gpu-check-out/): adapter.txt, tests/<name>.log,
# bench-<cell>.json, bench-matmul.json, bench-profile.txt, recurrence-subgroup-<0|1>.txt,
# pytorch-cuda-<cell>-tf32-<on|off>.json (or pytorch-skipped.txt), bench-table.txt and summary.txt. Exits non-zero when a test
# executable or a step failed; a missing PyTorch/CUDA is a skip, not a failure.
#
# Environment:
#   GPU_CHECK_SHAPES   bench shapes "B,T,I,H,O;..." (default: the GPU grid, or small shapes
#                      when the adapter is a CPU one such as lavapipe)
#   GPU_CHECK_MATMUL   matmul sizes (default 1024,4096; 256 on a CPU adapter)
#   GPU_CHECK_CELLS    cells to bench (default "rnn lstm gru")
#   GPU_CHECK_GEMMS    gemm variants timed alone at the matmul sizes (WGPU_RNN_GEMM syntax)
#   GPU_CHECK_TUNE_SHAPES  shapes `wgpu-rnn tune` times per cell before the tuned grid run
#                      (default 256,64,128,512,128; 16,32,16,32,16 on a CPU adapter)
#   GPU_CHECK_RECURRENCE_SHAPES  LSTM shapes where the forward recurrence's subgroup and
#                      plain kernels are compared (stepwise path; default 1,64,64,256,64;
#                      16,128,64,128,64; 8,64,64,1024,64)
#   GPU_CHECK_BUDGET   seconds per measurement, passed to `bench --budget` and the baseline
#   GPU_CHECK_SKIP     steps to skip, any of "tests bench pytorch"
#   GPU_CHECK_TEST_ARGS extra arguments for every test executable (e.g. --test-threads=4)
#   GPU_CHECK_TEST_TIMEOUT / GPU_CHECK_BENCH_TIMEOUT / GPU_CHECK_TORCH_TIMEOUT  seconds
#                      per test executable / bench run / baseline run (1800 / 1800 / 1200)
#   GPU_CHECK_PYTHON   the Python with torch (default python3)
#   GPU_CHECK_ALLOW_CPU=1  no failure when nvidia-smi sees a GPU but wgpu chose a CPU adapter
set -u

GPU_SHAPES="64,64,64,256,64;256,64,128,512,128;512,64,128,1024,128;16,128,64,128,64"
CPU_SHAPES="16,32,16,32,16;64,16,32,64,32"
# The gemm variants timed on their own at the matmul sizes.
gemms=${GPU_CHECK_GEMMS:-"register:8x8 tiled:64x64x16 tiled:64x64x8 tiled:32x32x16 tiled:128x64x8"}

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root" || exit 2
out=${1:-gpu-check-out}
mkdir -p "$out/tests" || { echo "gpu-check: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd -P)

started=$(date +%s)
export RUST_BACKTRACE=1
failures=()     # steps that failed (the exit status)
notes=()        # lines for summary.txt
created=()      # links made for the baked-in build paths, removed at exit

note() { notes+=("$*"); echo "gpu-check: $*"; }
fail() { failures+=("$1"); note "FAILED: $*"; }
skipped() { case " ${GPU_CHECK_SKIP:-} " in *" $1 "*) return 0 ;; esac; return 1; }
# limit SECONDS CMD...: runs CMD under `timeout` when there is one.
limit() {
    local s=$1; shift
    if command -v timeout >/dev/null; then timeout --kill-after=30 "$s" "$@"; else "$@"; fi
}
cleanup() {
    local i
    for ((i = ${#created[@]} - 1; i >= 0; i--)); do
        [ -L "${created[i]}" ] && rm -f "${created[i]}"
    done
}
trap cleanup EXIT

# --- binaries ---------------------------------------------------------------------------
# gpu-check-prepare.sh --pack leaves .devbin.tar.xz: unpack it if .devbin/ is missing or older.
if [ -z "${WGPU_RNN_BIN_DIR:-}" ] && [ -f .devbin.tar.xz ] \
    && { [ ! -f .devbin/BUILD_INFO ] || [ .devbin.tar.xz -nt .devbin/BUILD_INFO ]; }; then
    echo "gpu-check: unpacking .devbin.tar.xz"
    rm -rf .devbin && tar -xJf .devbin.tar.xz \
        || { echo "gpu-check: cannot unpack .devbin.tar.xz (tar with xz needed)" >&2; exit 2; }
    touch .devbin/BUILD_INFO
fi
bindir=""
if [ -n "${WGPU_RNN_BIN_DIR:-}" ]; then
    bindir=$(cd "$WGPU_RNN_BIN_DIR" 2>/dev/null && pwd -P) \
        || { echo "gpu-check: WGPU_RNN_BIN_DIR=$WGPU_RNN_BIN_DIR is not a directory" >&2; exit 2; }
elif [ -x .devbin/wgpu-rnn ]; then
    bindir="$root/.devbin"
elif [ -x target/release/wgpu-rnn ]; then
    bindir="$root/target/release"
fi
cli="$bindir/wgpu-rnn"
if [ -z "$bindir" ] || [ ! -x "$cli" ]; then
    echo "gpu-check: no wgpu-rnn binary (looked in \$WGPU_RNN_BIN_DIR, .devbin/, target/release/);" \
         "run bash benches/gpu-check-prepare.sh on a machine with cargo first" >&2
    exit 2
fi
note "CLI: $cli"

# Test executables as "name<TAB>path" lines.
test_list=""
build_root=""
build_cli=""
testdir=""
for d in "$bindir/tests" "$root/.devbin/tests"; do
    if [ -d "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ]; then testdir=$d; break; fi
done
if [ -n "$testdir" ]; then
    for f in "$testdir"/*; do
        [ -f "$f" ] || continue
        [ -x "$f" ] || chmod u+x "$f" 2>/dev/null
        test_list+="$(basename "$f")"$'\t'"$f"$'\n'
    done
    meta=$(dirname "$testdir")
    [ -f "$meta/BUILD_ROOT" ] && build_root=$(head -n 1 "$meta/BUILD_ROOT")
    [ -f "$meta/BUILD_CLI" ] && build_cli=$(head -n 1 "$meta/BUILD_CLI")
    [ -f "$meta/BUILD_INFO" ] && cp "$meta/BUILD_INFO" "$out/build-info.txt"
    note "test executables: $testdir"
elif [ -d target/release/deps ]; then
    # The newest `cargo test --release --no-run` executable per test target. The crate's
    # unit tests share the name wgpu_rnn with the CLI's own build and its (empty) unit
    # tests, so an executable counts only when `--list` shows libtest with some tests.
    names=$(for f in tests/*.rs; do [ -f "$f" ] && basename "$f" .rs; done; echo wgpu_rnn)
    for name in $names; do
        for f in $(ls -t target/release/deps/"$name"-* 2>/dev/null); do
            [[ $(basename "$f") =~ ^${name}-[0-9a-f]{16}$ ]] && [ -f "$f" ] && [ -x "$f" ] || continue
            if "$f" --list 2>/dev/null | grep -Eq '^[1-9][0-9]* tests?, [0-9]+ benchmarks?$'; then
                label=$name; [ "$name" = wgpu_rnn ] && label=wgpu_rnn-lib
                test_list+="$label"$'\t'"$root/$f"$'\n'
                break
            fi
        done
    done
    note "test executables: newest of target/release/deps/ (no .devbin/tests)"
    # Where they were built: target/release/wgpu-rnn.d reads "<CLI path>: <manifest dir>/src/main.rs ...".
    if [ -f target/release/wgpu-rnn.d ]; then
        build_cli=$(head -n 1 target/release/wgpu-rnn.d | cut -d: -f1)
        src=$(grep -Eo '[^ ]*/src/main\.rs' target/release/wgpu-rnn.d | head -n 1)
        build_root=${src%/src/main.rs}
    fi
fi
[ -n "$build_root" ] || build_root=$root
printf '%s' "$test_list" | tr '\t' ' ' > "$out/tests/executables.txt"
[ -n "$build_cli" ] || build_cli="$build_root/target/release/wgpu-rnn"

# The tests find fixtures under env!("CARGO_MANIFEST_DIR") and spawn
# env!("CARGO_BIN_EXE_wgpu-rnn"): absolute paths of the build machine. Make them exist.
link() { # link TARGET PATH
    if mkdir -p "$(dirname "$2")" 2>/dev/null && ln -s "$1" "$2" 2>/dev/null; then
        created+=("$2"); note "linked $2 -> $1 (the path baked into the tests; removed at exit)"
    else
        fail "paths" "cannot create $2 (baked into the tests); tests that read fixtures or run the CLI will fail." \
             "Run as a user who can create it, or put the checkout at $build_root"
    fi
}
if [ "$build_root" != "$root" ]; then
    if [ ! -e "$build_root" ]; then
        link "$root" "$build_root"
    elif [ ! -d "$build_root/tests/fixtures" ]; then
        note "warning: $build_root exists but has no tests/fixtures; fixture tests may fail"
    fi
fi
if [ ! -e "$build_cli" ]; then
    link "$cli" "$build_cli"
elif ! cmp -s "$build_cli" "$cli"; then
    note "note: the tests spawn $build_cli, which differs from $cli"
fi

# --- adapter ----------------------------------------------------------------------------
adapter_ok=1
{
    echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -srm), $(nproc 2>/dev/null || echo '?') CPUs, $(hostname 2>/dev/null)"
    env | grep -E '^(WGPU_|VK_|MESA_|LIBGL_|__GLX|CUDA_VISIBLE)' | sed 's/^/# env /'
    echo "\$ wgpu-rnn info"
} > "$out/adapter.txt"
limit 120 "$cli" info < /dev/null >> "$out/adapter.txt" 2>&1 || adapter_ok=0
if command -v nvidia-smi >/dev/null; then
    {
        echo; echo "\$ nvidia-smi -L"; nvidia-smi -L 2>&1
        echo; echo "\$ nvidia-smi --query-gpu=..."
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,pcie.link.gen.max \
            --format=csv 2>&1
    } >> "$out/adapter.txt"
fi
if command -v vulkaninfo >/dev/null; then
    { echo; echo "\$ vulkaninfo --summary"; limit 60 vulkaninfo --summary 2>&1 | head -n 60; } >> "$out/adapter.txt"
fi
cat "$out/adapter.txt"
chosen=$(grep -m 1 '^chosen:' "$out/adapter.txt" | sed 's/^chosen: *//')
if [ "$adapter_ok" = 0 ] || [ -z "$chosen" ]; then
    fail "adapter" "wgpu-rnn info found no adapter (see adapter.txt; a Vulkan loader, libvulkan1, and the driver's ICD are needed)"
    chosen="none"
fi
cpu_adapter=0
case "$chosen" in *", Cpu"*) cpu_adapter=1 ;; esac
if [ "$cpu_adapter" = 1 ] && command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    msg="nvidia-smi sees a GPU but wgpu chose a CPU adapter: no NVIDIA Vulkan driver reachable (in a container:
 NVIDIA_DRIVER_CAPABILITIES must include graphics; /usr/share/vulkan/icd.d/nvidia_icd.json or /etc/vulkan/icd.d/)"
    msg=${msg//$'\n'/}
    if [ "${GPU_CHECK_ALLOW_CPU:-0}" = 1 ]; then note "warning: $msg"; else fail "adapter" "$msg"; fi
fi

if [ "$cpu_adapter" = 1 ]; then
    shapes=${GPU_CHECK_SHAPES:-$CPU_SHAPES}; matmul=${GPU_CHECK_MATMUL:-256}
    tune_shapes=${GPU_CHECK_TUNE_SHAPES:-16,32,16,32,16}
    note "the adapter is a CPU one: small bench shapes unless GPU_CHECK_SHAPES is set"
else
    shapes=${GPU_CHECK_SHAPES:-$GPU_SHAPES}; matmul=${GPU_CHECK_MATMUL:-1024,4096}
    tune_shapes=${GPU_CHECK_TUNE_SHAPES:-256,64,128,512,128}
fi
cells=${GPU_CHECK_CELLS:-rnn lstm gru}

# --- tests ------------------------------------------------------------------------------
tests_pass=0; tests_fail=0; test_lines=(); cases_pass=0; cases_fail=0; cases_ignored=0
if skipped tests; then
    note "tests skipped (GPU_CHECK_SKIP)"
elif [ -z "$test_list" ]; then
    fail "tests" "no test executables found (run benches/gpu-check-prepare.sh, or cargo test --release --no-run)"
else
    # shellcheck disable=SC2206
    extra=(${GPU_CHECK_TEST_ARGS:-})
    while IFS=$'\t' read -r name exe; do
        [ -n "$name" ] || continue
        log="$out/tests/$name.log"
        echo "gpu-check: test $name ($exe)"
        t0=$(date +%s)
        (cd "$root" && limit "${GPU_CHECK_TEST_TIMEOUT:-1800}" "$exe" ${extra[@]+"${extra[@]}"}) < /dev/null > "$log" 2>&1
        rc=$?
        secs=$(( $(date +%s) - t0 ))
        # libtest's "test result: ok. 12 passed; 0 failed; 1 ignored; ..." lines, summed.
        counts=$(grep -E '^test result: ' "$log" | awk '
            { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
            END { printf "%d passed, %d failed, %d ignored", p, f, g }')
        read -r p _ f _ g _ <<< "${counts//,/}"
        cases_pass=$((cases_pass + p)); cases_fail=$((cases_fail + f)); cases_ignored=$((cases_ignored + g))
        if [ "$rc" = 0 ]; then
            status=PASS; tests_pass=$((tests_pass + 1))
        else
            status=FAIL; [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="FAIL (timed out)"
            tests_fail=$((tests_fail + 1)); failures+=("test $name")
        fi
        line=$(printf '%-22s %-17s %s, %ss, exit %s' "$name" "$status" "$counts" "$secs" "$rc")
        test_lines+=("$line"); echo "gpu-check:   $line"
    done <<< "$test_list"
fi

# --- bench grid -------------------------------------------------------------------------
bench_lines=()
run_bench() { # run_bench LABEL STDOUT_FILE ARGS...
    local label=$1 file=$2; shift 2
    local errlog="${file%.*}.log" rc
    echo "gpu-check: wgpu-rnn bench $*"
    limit "${GPU_CHECK_BENCH_TIMEOUT:-1800}" "$cli" bench "$@" < /dev/null > "$file" 2> "$errlog"
    rc=$?
    [ -s "$errlog" ] || rm -f "$errlog"
    if [ "$rc" = 0 ]; then
        bench_lines+=("$(printf '%-8s ok       %s' "$label" "$file")")
    else
        bench_lines+=("$(printf '%-8s FAILED   %s (exit %s, see %s)' "$label" "$file" "$rc" "$errlog")")
        failures+=("bench $label")
    fi
}
if skipped bench; then
    note "bench skipped (GPU_CHECK_SKIP)"
elif [ "$chosen" = none ]; then
    note "bench skipped: no adapter"
else
    help=$("$cli" bench --help 2>&1)
    has() { grep -q -- "$1" <<< "$help"; }
    common=(--json)
    has --devices && common+=(--devices gpu)
    [ -n "${GPU_CHECK_BUDGET:-}" ] && common+=(--budget "$GPU_CHECK_BUDGET")
    if has --cell; then
        for cell in $cells; do
            run_bench "$cell" "$out/bench-$cell.json" "${common[@]}" --cell "$cell" --shapes "$shapes"
        done
    else
        note "bench has no --cell flag: the default cell only"
        run_bench default "$out/bench-default.json" "${common[@]}" --shapes "$shapes"
    fi
    if has --matmul; then
        # bench always measures a shape too: a tiny one, whose line is dropped from the JSON.
        run_bench matmul "$out/bench-matmul.raw" "${common[@]}" --shapes "1,4,4,4,4" --matmul "$matmul"
        grep '"matmul"' "$out/bench-matmul.raw" > "$out/bench-matmul.json"
        rm -f "$out/bench-matmul.raw"
        bench_lines[${#bench_lines[@]}-1]=${bench_lines[${#bench_lines[@]}-1]//bench-matmul.raw/bench-matmul.json}
    else
        note "bench has no --matmul flag: no matrix-product figures"
    fi
    if has --matmul; then
        # Each gemm variant at the matmul sizes (the default above is the adapter's).
        for gemm in $gemms; do
            label="matmul-${gemm//[:\/]/_}"
            WGPU_RNN_GEMM=$gemm run_bench "$label" "$out/bench-$label.raw" "${common[@]}" \
                --shapes "1,4,4,4,4" --matmul "$matmul"
            grep '"matmul"' "$out/bench-$label.raw" > "$out/bench-$label.json"
            rm -f "$out/bench-$label.raw"
            bench_lines[${#bench_lines[@]}-1]=${bench_lines[${#bench_lines[@]}-1]//.raw/.json}
        done
    fi
    if "$cli" tune --help > /dev/null 2>&1; then
        # Tune per cell at the tune shape, then the grid again with the tuning file.
        for cell in $cells; do
            dir="$out/tuning-$cell"
            echo "gpu-check: wgpu-rnn tune --cell $cell --shapes $tune_shapes"
            if limit "${GPU_CHECK_BENCH_TIMEOUT:-1800}" "$cli" tune --cell "$cell" \
                --shapes "$tune_shapes" --output-dir "$dir" < /dev/null > "$out/tune-$cell.txt" 2>&1; then
                WGPU_RNN_TUNING_DIR=$dir run_bench "$cell-tuned" "$out/bench-$cell-tuned.json" \
                    "${common[@]}" --cell "$cell" --shapes "$shapes"
            else
                bench_lines+=("$(printf '%-8s FAILED   %s' "tune-$cell" "$out/tune-$cell.txt")")
                failures+=("tune $cell")
            fi
        done
    fi
    if "$cli" info 2>/dev/null | grep -q '^forward recurrence'; then
        # The forward recurrence's subgroup kernel against the plain one at small batch,
        # one dispatch per step (tables, not JSON: they stay out of bench-table.txt).
        for sg in 0 1; do
            WGPU_RNN_PATH=stepwise WGPU_RNN_SUBGROUP_RECURRENCE=$sg run_bench "recurrence-sg$sg" \
                "$out/recurrence-subgroup-$sg.txt" --devices gpu --cell lstm \
                --shapes "${GPU_CHECK_RECURRENCE_SHAPES:-1,64,64,256,64;16,128,64,128,64;8,64,64,1024,64}"
        done
    fi
    if has --profile; then
        prof=(--profile)
        has --devices && prof+=(--devices gpu)
        [ -n "${GPU_CHECK_BUDGET:-}" ] && prof+=(--budget "$GPU_CHECK_BUDGET")
        run_bench profile "$out/bench-profile.txt" "${prof[@]}" --shapes "$shapes"
    fi
fi

# --- PyTorch on CUDA --------------------------------------------------------------------
torch_lines=()
py=${GPU_CHECK_PYTHON:-python3}
if skipped pytorch; then
    note "PyTorch skipped (GPU_CHECK_SKIP)"
else
    why=""
    if ! command -v "$py" >/dev/null; then
        why="$py not found"
    else
        probe=$("$py" -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1 | tail -n 1)
        case "$probe" in
            *" True") ;;
            *" False") why="torch ${probe% False} is installed but torch.cuda.is_available() is False" ;;
            *) why="$py cannot import torch ($probe)" ;;
        esac
    fi
    if [ -n "$why" ]; then
        echo "PyTorch CUDA baseline skipped: $why" > "$out/pytorch-skipped.txt"
        note "PyTorch CUDA baseline skipped: $why (pytorch-skipped.txt)"
    else
        targs=(--json --devices cuda --shapes "$shapes")
        [ -n "${GPU_CHECK_BUDGET:-}" ] && targs+=(--budget "$GPU_CHECK_BUDGET")
        for tf in off on; do
            for cell in $cells; do
                file="$out/pytorch-cuda-$cell-tf32-$tf.json"
                echo "gpu-check: pytorch_baseline.py --cell $cell --tf32 $tf"
                limit "${GPU_CHECK_TORCH_TIMEOUT:-1200}" "$py" benches/pytorch_baseline.py \
                    "${targs[@]}" --cell "$cell" --tf32 "$tf" < /dev/null > "$file" 2> "${file%.json}.log"
                rc=$?
                [ -s "${file%.json}.log" ] || rm -f "${file%.json}.log"
                if [ "$rc" = 0 ]; then
                    torch_lines+=("$(printf '%-4s tf32 %-3s ok       %s' "$cell" "$tf" "$file")")
                else
                    torch_lines+=("$(printf '%-4s tf32 %-3s FAILED   %s (exit %s, see %s)' "$cell" "$tf" "$file" "$rc" "${file%.json}.log")")
                    failures+=("pytorch $cell tf32 $tf")
                fi
            done
        done
    fi
fi

# --- table and summary ------------------------------------------------------------------
if command -v python3 >/dev/null && ls "$out"/bench-*.json >/dev/null 2>&1; then
    python3 - "$out" > "$out/bench-table.txt" 2>&1 <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
def rows(pattern):
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        with open(path) as f:
            for line in f:
                try:
                    yield os.path.basename(path), json.loads(line)
                except ValueError:
                    pass
wgpu, torch = {}, {}
for name, r in rows("bench-*.json"):
    if "train_tokens_per_s" in r and r.get("device") != "cpu":
        wgpu[(r.get("cell", "rnn"), tuple(r["shape"]), "-tuned" in name)] = r
for _, r in rows("pytorch-cuda-*.json"):
    torch[(r.get("cell", "rnn"), tuple(r["shape"]), r.get("tf32"))] = r
print("train tokens/s (medians); ratio = wgpu-rnn / PyTorch; cell* = after wgpu-rnn tune")
print(f"{'cell':<5} {'shape B,T,I,H,O':<20} {'wgpu-rnn':>11} {'GFLOP/s':>8} {'torch fp32':>11} {'ratio':>6} "
      f"{'torch tf32':>11} {'ratio':>6}  wgpu-rnn path")
for (cell, shape, tuned), r in sorted(wgpu.items(), key=lambda kv: (["rnn", "lstm", "gru"].index(kv[0][0])
                                                                     if kv[0][0] in ("rnn", "lstm", "gru") else 9, kv[0][1], kv[0][2])):
    w = r["train_tokens_per_s"]
    label = cell + ("*" if tuned else "")
    cols = []
    for tf in ("off", "on"):
        t = torch.get((cell, shape, tf))
        cols.append(f"{t['train_tokens_per_s']:>11.0f} {w / t['train_tokens_per_s']:>5.2f}x" if t else f"{'-':>11} {'-':>6}")
    print(f"{label:<5} {','.join(map(str, shape)):<20} {w:>11.0f} {r['train_gflops']:>8.2f} {cols[0]} {cols[1]}  {r['path']}")
for _, r in rows("bench-matmul*.json"):
    if "matmul" in r:
        n = r["matmul"]
        print(f"matmul {n}x{n}x{n}: {r['ms']:.3f} ms, {r['gflops']:.1f} GFLOP/s (gemm {r.get('gemm', r.get('gemm_workgroup', '?'))})")
EOF
fi

elapsed=$(( $(date +%s) - started ))
{
    echo "wgpu-rnn GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $((elapsed / 60)) min $((elapsed % 60)) s"
    echo "adapter:   $chosen"
    echo "binaries:  $cli"
    [ -f "$out/build-info.txt" ] && sed 's/^/  build /' "$out/build-info.txt"
    echo "tests:     built in $build_root; they spawn $build_cli"
    echo "shapes:    $shapes; matmul $matmul"
    echo
    if skipped tests; then
        echo "tests: skipped"
    else
        echo "tests: $tests_pass executables passed, $tests_fail failed; $cases_pass tests passed," \
             "$cases_fail failed, $cases_ignored ignored (logs in $out/tests/)"
    fi
    for l in "${test_lines[@]+"${test_lines[@]}"}"; do echo "  $l"; done
    echo
    echo "bench:"
    for l in "${bench_lines[@]+"${bench_lines[@]}"}"; do echo "  $l"; done
    echo
    echo "pytorch:"
    [ -f "$out/pytorch-skipped.txt" ] && sed 's/^/  /' "$out/pytorch-skipped.txt"
    for l in "${torch_lines[@]+"${torch_lines[@]}"}"; do echo "  $l"; done
    if [ -s "$out/bench-table.txt" ]; then echo; cat "$out/bench-table.txt"; fi
    echo
    echo "notes:"
    for l in "${notes[@]+"${notes[@]}"}"; do echo "  $l"; done
    echo
    echo "files in $out:"
    (cd "$out" && find . -type f ! -name summary.txt | sed 's|^\./||' | sort | sed 's/^/  /')
    if [ ${#failures[@]} -gt 0 ]; then
        echo "RESULT: FAILED (${#failures[@]}): $(IFS=';'; echo "${failures[*]}")"
    else
        echo "RESULT: ok"
    fi
} > "$out/summary.txt"
echo
cat "$out/summary.txt"
[ ${#failures[@]} -eq 0 ]
