#!/usr/bin/env python3
"""Training throughput of the page's model in headless Chromium (WebGPU on SwiftShader)
against the same model and code natively (wgpu on lavapipe), on this machine.

  python3 web/bench.py [--options JSON] [--warmup N] [--chunks N] [--steps N]

Both sides run web/src/bench.rs: the browser through web/www/bench.html (build the package
first: web/serve.sh --build-only), natively through `cargo run -p wgpu-rnn-web --release
--example bench`, once with the native defaults and once with the kernels the browser has
(WGPU_RNN_IMMEDIATES=0 WGPU_RNN_SUBGROUPS=0). Prints a Markdown table for BENCHMARKS.md.
Needs what web/e2e.py needs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (the server and the driver)


def browser(args):
    server, base = e2e.serve(args.www)
    driver = e2e.make_driver(args, os.getcwd())
    try:
        query = urllib.parse.urlencode(
            {"options": args.options, "warmup": args.warmup, "chunks": args.chunks, "steps": args.steps}
        )
        driver.get(f"{base}bench.html?{query}")
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            state = driver.find_element(e2e.By.TAG_NAME, "body").get_attribute("data-state")
            if state != "running":
                break
            time.sleep(0.5)
        body = driver.find_element(e2e.By.TAG_NAME, "body")
        if body.get_attribute("data-state") != "done":
            sys.exit(f"bench.py: the browser benchmark failed: {body.get_attribute('data-error')}")
        version = driver.capabilities.get("browserVersion", "?")
        return json.loads(body.get_attribute("data-result")), f"Chromium {version}"
    finally:
        driver.quit()
        server.shutdown()


def native(args, env):
    cmd = ["cargo", "run", "--quiet", "-p", "wgpu-rnn-web", "--release", "--example", "bench", "--",
           args.options, str(args.warmup), str(args.chunks), str(args.steps)]
    out = subprocess.run(cmd, cwd=e2e.ROOT, env={**os.environ, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--options", default="{}", help="the page's options as JSON (default: its defaults)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--chunks", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per timed chunk")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--www", default=str(e2e.ROOT / "web" / "www"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    rows = [
        ("native, wgpu defaults", native(args, {})),
        ("native, no immediates or subgroups", native(args, {"WGPU_RNN_IMMEDIATES": "0", "WGPU_RNN_SUBGROUPS": "0"})),
    ]
    web, version = browser(args)
    rows.append((f"browser ({version})", web))
    base = rows[0][1]["tokens_per_s"]
    print(f"options {args.options}, {args.warmup} warm-up steps, median of {args.chunks} chunks of {args.steps} steps")
    print()
    print("| run | adapter | tokens/s | ms/step | dispatches/step | vs native |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['adapter']} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | "
              f"{r['dispatches_per_step']} | {r['tokens_per_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
