#!/usr/bin/env bash
# Builds the wasm package of the web page (web/www/pkg) and serves the page.
#
#   web/serve.sh               build, then serve on http://127.0.0.1:${PORT:-8080}/
#   web/serve.sh --build-only  build only (CI)
#
# Needs: rustup's wasm32-unknown-unknown target, the wasm-bindgen CLI of the same version
# as the wasm-bindgen crate in Cargo.lock, and python3 (to serve).
set -euo pipefail

build_only=false
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=true ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "serve.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The wasm-bindgen CLI must match the crate exactly: its version is in Cargo.lock.
want_bindgen="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$want_bindgen" ]; then
  echo "serve.sh: no wasm-bindgen crate in $root/Cargo.lock" >&2
  exit 1
fi

missing=()
if ! command -v cargo >/dev/null; then
  missing+=("cargo: install Rust from https://rustup.rs")
fi
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    missing+=("the wasm32 target: rustup target add wasm32-unknown-unknown")
  fi
else
  echo "serve.sh: no rustup; assuming your Rust has the wasm32-unknown-unknown target" >&2
fi
if ! command -v wasm-bindgen >/dev/null; then
  missing+=("wasm-bindgen $want_bindgen: cargo install wasm-bindgen-cli --version $want_bindgen")
else
  have_bindgen="$(wasm-bindgen --version | awk '{ print $2 }')"
  if [ "$have_bindgen" != "$want_bindgen" ]; then
    missing+=("wasm-bindgen $want_bindgen (found $have_bindgen): cargo install wasm-bindgen-cli --version $want_bindgen --force")
  fi
fi
if ! $build_only && ! command -v python3 >/dev/null; then
  missing+=("python3 (to serve the page)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "serve.sh: missing tools:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

echo "==> cargo build -p wgpu-rnn-web (wasm32, release)"
cargo build -p wgpu-rnn-web --lib --release --target wasm32-unknown-unknown
echo "==> wasm-bindgen -> web/www/pkg"
wasm-bindgen --target web --no-typescript --out-dir web/www/pkg \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/wgpu_rnn_web.wasm"

if $build_only; then
  echo "built web/www/pkg"
  exit 0
fi

port="${PORT:-8080}"
echo "==> serving web/www: open http://127.0.0.1:$port/ in a browser with WebGPU (Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory web/www
