#!/usr/bin/env bash
# Builds everything benches/gpu-check.sh runs and copies it to .devbin/, for a GPU machine
# that has no Rust toolchain. Run from the repository root on the build machine:
#
#   bash benches/gpu-check-prepare.sh [--pack]
#
# .devbin/ then holds:
#   wgpu-rnn          the CLI (release)
#   tests/<name>      every test executable of `cargo test --release` (integration tests
#                     by file name, the library's unit tests as wgpu_rnn-lib, the binary's
#                     as wgpu-rnn-bin)
#   bench/<name>      the criterion bench executable(s) of `cargo bench`
#   BUILD_ROOT        this checkout's absolute path (CARGO_MANIFEST_DIR baked into the tests)
#   BUILD_CLI         the CLI's path at build time (CARGO_BIN_EXE_wgpu-rnn baked into tests)
#   BUILD_INFO        commit, toolchain and date
# Carry .devbin/ (and the checkout: tests read tests/fixtures) to the GPU machine. It is
# over 100 MiB; --pack also writes .devbin.tar.xz (about a quarter of that), which
# gpu-check.sh unpacks when .devbin/ is missing or older.
set -euo pipefail
pack=0
case "${1:-}" in
    --pack) pack=1 ;;
    "") ;;
    *) echo "usage: bash benches/gpu-check-prepare.sh [--pack]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
root=$(pwd -P)
dest="$root/.devbin"

command -v cargo >/dev/null || { echo "gpu-check-prepare: cargo not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "gpu-check-prepare: python3 not found (parses cargo's JSON)" >&2; exit 1; }

# Prints "kind<TAB>name<TAB>executable" for every artifact with an executable in cargo's
# JSON messages (stdin); kind is test, bench, bin, lib-test or bin-test.
artifacts() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    kinds = m["target"]["kind"]
    name = m["target"]["name"]
    test = m["profile"]["test"]
    if "lib" in kinds and test:
        kind = "lib-test"
    elif "bin" in kinds:
        kind = "bin-test" if test else "bin"
    elif "test" in kinds:
        kind = "test"
    elif "bench" in kinds:
        kind = "bench"
    else:
        continue  # examples, build scripts
    print(kind, name, m["executable"], sep="\t")
'
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "gpu-check-prepare: cargo build --release"
cargo build --release --message-format=json-render-diagnostics > "$log"
cli=$(artifacts < "$log" | awk -F'\t' '$1 == "bin" && $2 == "wgpu-rnn" { print $3 }' | tail -n 1)
[ -n "$cli" ] && [ -x "$cli" ] || { echo "gpu-check-prepare: no wgpu-rnn binary in cargo's output" >&2; exit 1; }

echo "gpu-check-prepare: cargo test --release --no-run"
cargo test --release --no-run --message-format=json-render-diagnostics > "$log"
tests=$(artifacts < "$log" | awk -F'\t' '$1 == "test" || $1 == "lib-test" || $1 == "bin-test"')

echo "gpu-check-prepare: cargo bench --no-run"
cargo bench --no-run --message-format=json-render-diagnostics > "$log"
benches=$(artifacts < "$log" | awk -F'\t' '$1 == "bench"')

[ -n "$tests" ] || { echo "gpu-check-prepare: cargo listed no test executables" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest/tests" "$dest/bench"
cp "$cli" "$dest/wgpu-rnn"
n=0
while IFS=$'\t' read -r kind name exe; do
    case "$kind" in
        lib-test) file="${name}-lib" ;;
        bin-test) file="${name}-bin" ;;
        *) file="$name" ;;
    esac
    cp "$exe" "$dest/tests/$file"
    n=$((n + 1))
done <<< "$tests"
while IFS=$'\t' read -r kind name exe; do
    [ -n "$name" ] && cp "$exe" "$dest/bench/$name"
done <<< "$benches"

printf '%s\n' "$root" > "$dest/BUILD_ROOT"
printf '%s\n' "$cli" > "$dest/BUILD_CLI"
{
    echo "commit:    $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "rustc:     $(rustc --version 2>/dev/null || echo unknown)"
    echo "built:     $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -srm)"
    echo "root:      $root"
} > "$dest/BUILD_INFO"

echo "gpu-check-prepare: $dest: the CLI, $n test executables, $(ls "$dest/bench" | wc -l) bench executable(s), $(du -sh "$dest" | cut -f1) in all"
ls -l "$dest/tests"
if [ "$pack" = 1 ]; then
    rm -f "$root/.devbin.tar.xz"
    XZ_OPT=${XZ_OPT:--T0} tar -C "$root" -cJf "$root/.devbin.tar.xz" .devbin
    touch "$dest/BUILD_INFO"  # so gpu-check.sh here does not unpack it over .devbin/
    echo "gpu-check-prepare: packed $root/.devbin.tar.xz ($(du -h "$root/.devbin.tar.xz" | cut -f1))"
fi
echo "next, on the GPU machine (from the repository root): bash benches/gpu-check.sh [OUT_DIR]"
