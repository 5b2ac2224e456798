#!/usr/bin/env python3
"""End-to-end test of the wgpu-rnn web page (web/www) in headless Chromium.

WebGPU runs on SwiftShader (Chromium's CPU implementation), so no GPU is needed. Needs
Selenium 4 (Debian's python3-selenium, or selenium from PyPI), chromium and its
chromedriver, and the wasm package built into web/www/pkg (web/serve.sh --build-only).

  python3 web/e2e.py [--screenshot PAGE.png] [--skip-cli] [--www DIR]

The test:
  1. trains rnn, lstm and gru models from URL parameters (autostart) to 100 steps and
     checks the step, that the loss fell and that a sample was printed;
  2. downloads the checkpoint, samples from it with the CLI (`wgpu-rnn sample`, the binary
     from $WGPU_RNN_BIN, default target/debug/wgpu-rnn) and loads it back into the page;
  3. shows three errors on the paused model (empty text, binary text, a file that is not a
     checkpoint), checks that the step is kept, and that Resume trains on from there;
  4. loads a checkpoint `wgpu-rnn train --task text` saved and trains on from it;
  5. loses the GPU device mid-run (URL parameter lose_device_at): the page shows the error
     and Download gives the last good checkpoint, which the CLI reads.
"""

import argparse
import functools
import http.server
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    sys.exit("e2e.py needs Selenium 4: apt-get install python3-selenium (or pip install selenium)")

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_NAME = "wgpu-rnn-text.safetensors"
# Each cell once, with the default inputs, one-hot characters and a 16-wide embedding.
CELLS = [("rnn", None), ("lstm", 0), ("gru", 16)]
STEPS = 100
RUN_QUERY = f"hidden=32&seq=16&batch=8&steps={STEPS}&sample_every=50&autostart=1"


class Failure(Exception):
    pass


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def log_message(self, format, *args):
        pass


def serve(directory):
    """Serves `directory` on a free port of 127.0.0.1 from a thread; returns the base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def make_driver(args, download_dir):
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-webgpu",
        "--use-webgpu-adapter=swiftshader",
        "--window-size=1200,900",
    ]:
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver: Selenium must never download one.
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


class Page:
    def __init__(self, driver, timeout):
        self.driver = driver
        self.timeout = timeout

    def data(self):
        """The page's state attributes on <body> (data-state, data-step, ...)."""
        return self.driver.execute_script("return Object.assign({}, document.body.dataset);")

    def text_of(self, element_id):
        return self.driver.execute_script(
            "return document.getElementById(arguments[0]).textContent;", element_id
        )

    def wait(self, what, predicate, allow_error=False, timeout=None):
        """Polls the body's data until predicate(data) holds; fails on data-state=error."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            data = self.data()
            if predicate(data):
                return data
            if data.get("state") == "error" and not allow_error:
                raise Failure(f"while waiting for {what}: the page shows an error: {data.get('error')}")
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout or self.timeout} s waiting for {what}; page data: {data}")
            time.sleep(0.2)

    def click(self, element_id):
        element = self.driver.find_element(By.ID, element_id)
        deadline = time.monotonic() + 30
        while not element.is_enabled():
            if time.monotonic() > deadline:
                raise Failure(f"#{element_id} stayed disabled; page data: {self.data()}")
            time.sleep(0.1)
        element.click()

    def set_textarea(self, text):
        self.driver.execute_script(
            "const t = document.getElementById('text'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('input'));",
            text,
        )

    def expect_error(self, what, action):
        """Runs action, waits for a new error and returns its message."""
        before = int(self.data().get("errors") or 0)
        action()
        data = self.wait(
            f"an error from {what}",
            lambda d: int(d.get("errors") or 0) > before,
            allow_error=True,
            timeout=60,
        )
        if data.get("state") != "error" or not data.get("error"):
            raise Failure(f"{what}: expected data-state=error with a message, got {data}")
        shown = self.text_of("error")
        if data["error"] not in shown:
            raise Failure(f"{what}: the message is not on the page (#error is {shown!r})")
        return data


def train_cell(page, base, cell, embedding):
    t0 = time.monotonic()
    extra = "" if embedding is None else f"&embedding={embedding}"
    page.driver.get(f"{base}?cell={cell}&{RUN_QUERY}{extra}")
    data = page.wait(f"{cell} to train {STEPS} steps", lambda d: d.get("state") == "done")
    seconds = time.monotonic() - t0
    step = int(data["step"])
    if step != STEPS:
        raise Failure(f"{cell}: data-step is {step}, expected {STEPS}")
    first, last = float(data["lossFirst"]), float(data["loss"])
    if not last < first:
        raise Failure(f"{cell}: the loss did not fall: first chunk {first:.4f}, last {last:.4f}")
    if not data.get("val"):
        raise Failure(f"{cell}: no validation loss")
    sample = page.text_of("sample")
    if not sample.strip():
        raise Failure(f"{cell}: no sample printed")
    info = page.text_of("model-info")
    want = {None: "", 0: "one-hot inputs", 16: "16-dimensional embedding"}[embedding]
    if want not in info:
        raise Failure(f"{cell}: the model line does not say {want!r}: {info!r}")
    print(
        f"ok  {cell}: {step} steps in {seconds:.1f} s, loss {first:.3f} -> {last:.3f}, "
        f"validation {float(data['val']):.3f}, sample {sample[:40]!r}..."
    )
    return data


def download_checkpoint(page, download_dir):
    target = download_dir / CHECKPOINT_NAME
    if target.exists():
        target.unlink()
    page.click("download")
    deadline = time.monotonic() + 60
    size = -1
    while True:
        partial = list(download_dir.glob("*.crdownload"))
        if target.exists() and not partial and target.stat().st_size == size and size > 0:
            break
        size = target.stat().st_size if target.exists() else -1
        if time.monotonic() > deadline:
            raise Failure(f"the checkpoint download did not finish; {list(download_dir.iterdir())}")
        time.sleep(0.3)
    data = target.read_bytes()
    header = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    if len(data) < 9 or header > len(data) - 8 or data[8:9] != b"{":
        raise Failure(f"the downloaded file is not a safetensors file ({len(data)} bytes)")
    print(f"ok  downloaded {target.name}: {len(data)} bytes")
    return target


def cli_binary():
    binary = Path(os.environ.get("WGPU_RNN_BIN", "target/debug/wgpu-rnn"))
    return binary if binary.is_absolute() else ROOT / binary


def cli_sample(path):
    binary = cli_binary()
    command = [str(binary), "sample", "--model", str(path), "--len", "50"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise Failure(f"no CLI at {binary} (build it, or set WGPU_RNN_BIN)")
    if result.returncode != 0 or not result.stdout.strip():
        raise Failure(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    print(f"ok  CLI sample from the page's checkpoint: {result.stdout.strip()[:60]!r}")


def load_checkpoint(page, path):
    page.driver.find_element(By.ID, "load-file").send_keys(str(path))
    data = page.wait("the checkpoint to load", lambda d: d.get("state") == "paused")
    if int(data["step"]) != STEPS:
        raise Failure(f"the loaded checkpoint is at step {data['step']}, expected {STEPS}")
    print(f"ok  loaded the checkpoint back into the page at step {data['step']}")


def errors_keep_the_model(page, scratch):
    step = int(page.data()["step"])
    junk = scratch / "not-a-checkpoint.safetensors"
    junk.write_bytes(random.Random(1).randbytes(4096))

    def use_text(text):
        page.set_textarea(text)
        page.click("use-text")

    cases = [
        ("empty text", lambda: use_text("")),
        ("binary text", lambda: use_text("\x00\x01\x02" * 100)),
        (
            "a file that is not a checkpoint",
            lambda: page.driver.find_element(By.ID, "load-file").send_keys(str(junk)),
        ),
    ]
    for what, action in cases:
        data = page.expect_error(what, action)
        if int(data["step"]) != step:
            raise Failure(f"{what}: the step changed from {step} to {data['step']}")
        print(f"ok  {what}: error shown ({data['error']!r}), the model stays at step {step}")

    page.click("resume")
    page.wait(f"training to go on past step {step}", lambda d: int(d["step"]) > step)
    page.click("pause")
    data = page.wait("the pause", lambda d: d.get("state") == "paused")
    if data.get("error"):
        raise Failure(f"data-error is still set after Resume: {data['error']}")
    print(f"ok  Resume trained on from step {step} to {data['step']}")


def cli_checkpoint_trains_on(page, scratch):
    """A checkpoint `wgpu-rnn train --task text` saved loads into the page and trains on."""
    path = scratch / "cli.safetensors"
    command = [str(cli_binary()), "train", "--task", "text", "--cell", "gru", "--hidden", "24",
               "--seq", "16", "--batch", "8", "--steps", "20", "--eval-every", "10",
               "--save", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise Failure(f"{' '.join(command)} exited {result.returncode}\nstderr: {result.stderr}")
    page.driver.find_element(By.ID, "load-file").send_keys(str(path))
    data = page.wait("the CLI's checkpoint to load", lambda d: d.get("state") == "paused")
    if int(data["step"]) != 20:
        raise Failure(f"the CLI's checkpoint loaded at step {data['step']}, expected 20")
    info = page.text_of("model-info")
    if "GRU, hidden 24" not in info:
        raise Failure(f"the page does not show the CLI model's shape: {info!r}")
    # A text with another vocabulary cannot train this model: both sizes are named.
    page.set_textarea("ab" * 300)
    data = page.expect_error("a text with another vocabulary", lambda: page.click("use-text"))
    if not re.search(r"has \d+ characters and this text's has 2\b", data["error"]):
        raise Failure(f"the vocabulary mismatch does not name both sizes: {data['error']!r}")
    print(f"ok  another vocabulary: {data['error']!r}")
    page.click("resume")
    page.wait("training to go on from the CLI's step 20", lambda d: int(d["step"]) > 20)
    page.click("pause")
    data = page.wait("the pause", lambda d: d.get("state") == "paused")
    print(f"ok  the CLI's GRU checkpoint loaded at step 20 and trained on to {data['step']}")


def checkpoint_step(path):
    """The step a safetensors checkpoint's metadata records."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return int(json.loads(data[8 : 8 + n])["__metadata__"]["step"])


def device_loss_keeps_the_last_good_checkpoint(page, base, downloads, skip_cli):
    """The GPU device lost mid-run: an error on the page, and the last good checkpoint
    (from the validation at step 40) is what Download gives."""
    page.driver.get(f"{base}?cell=rnn&hidden=32&seq=16&batch=8&steps=100&sample_every=20"
                    "&lose_device_at=50&autostart=1")
    data = page.wait("the lost device to show", lambda d: d.get("state") == "error", allow_error=True)
    if "lost" not in data["error"].lower() and "destroy" not in data["error"].lower():
        raise Failure(f"the lost device's error does not say so: {data['error']!r}")
    path = download_checkpoint(page, downloads)
    step = checkpoint_step(path)
    if step != 40:
        raise Failure(f"after the device was lost Download gave a checkpoint of step {step}, expected 40")
    if not skip_cli:
        cli_sample(path)
    print(f"ok  lost device: error shown ({data['error'][:80]!r}...), the step-40 checkpoint downloads")


def screenshot(page, path):
    """Saves the page as it is (after a finished run) as a PNG."""
    metrics = {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    time.sleep(0.5)  # the chart redraws on the next animation frame after a resize
    page.driver.save_screenshot(str(path))
    page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    size = Path(path).stat().st_size
    print(f"ok  screenshot {path}: {size // 1024} KiB")
    if size > 200 * 1024:
        print(f"warning: the screenshot is over 200 KiB ({size} bytes)")


def report(page):
    """On failure: what the page says, and the browser's console."""
    try:
        data = page.data()
        print(f"page data: {data}", file=sys.stderr)
        print(f"page error: {data.get('error')}", file=sys.stderr)
        print(f"page status: {page.text_of('status')}", file=sys.stderr)
    except Exception as err:  # the browser may be gone
        print(f"(could not read the page: {err})", file=sys.stderr)
    try:
        print("browser console:", file=sys.stderr)
        for entry in page.driver.get_log("browser"):
            print(f"  [{entry.get('level')}] {entry.get('message')}", file=sys.stderr)
    except Exception as err:
        print(f"(could not read the console: {err})", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--www", default=str(ROOT / "web" / "www"), help="the page's directory (with pkg/)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for each run")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the page after the first run")
    parser.add_argument("--skip-cli", action="store_true", help="do not sample from the checkpoint with the CLI")
    args = parser.parse_args()

    www = Path(args.www)
    if not (www / "pkg" / "wgpu_rnn_web.js").exists():
        print(f"FAIL: {www}/pkg/wgpu_rnn_web.js is missing: run web/serve.sh --build-only", file=sys.stderr)
        return 1

    started = time.monotonic()
    server, base = serve(www)
    with tempfile.TemporaryDirectory(prefix="wgpu-rnn-e2e-") as scratch:
        scratch = Path(scratch)
        downloads = scratch / "downloads"
        downloads.mkdir()
        driver = make_driver(args, downloads)
        page = Page(driver, args.timeout)
        try:
            for cell, embedding in CELLS:
                train_cell(page, base, cell, embedding)
                if args.screenshot and cell == CELLS[0][0]:
                    screenshot(page, args.screenshot)
            print(f"    adapter: {page.data().get('adapter')}")
            checkpoint = download_checkpoint(page, downloads)
            if args.skip_cli:
                print("--  skipped the CLI sample (--skip-cli)")
            else:
                cli_sample(checkpoint)
            load_checkpoint(page, checkpoint)
            errors_keep_the_model(page, scratch)
            if not args.skip_cli:
                cli_checkpoint_trains_on(page, scratch)
            device_loss_keeps_the_last_good_checkpoint(page, base, downloads, args.skip_cli)
        except Exception as err:
            print(f"FAIL: {err}", file=sys.stderr)
            report(page)
            return 1
        finally:
            driver.quit()
            server.shutdown()
    print(f"PASS: the web page's end-to-end test, {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
