"""`make screenshots`: what each app looks like in TensorBoard, from a real browser.

Trains each app briefly, serves its logdir with a real `tensorboard` on a free loopback port, opens
the Graphs, Scalars, Text and Images dashboards in headless Chromium (Debian's package, installed
here with apt-get when missing) through Playwright, and writes PNGs to docs/screenshots/. Some apps
also show a dashboard of their own: mnist_mlp its Images (misclassified digits, confusion matrix),
Custom Scalars, Projector and Profile (trace viewer), conditional_dropout its PR curve; and a
regression_tape run made to diverge with --debugger shows Debugger V2's alerts.

Usage: python scripts/screenshots.py [--output docs/screenshots] [--apps mnist_mlp,...]
"""

import argparse
import contextlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Offline, Chromium stalls on refused connections to its own services without these.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}


class ChromiumUnavailableError(RuntimeError):
    """Chromium is not installed and cannot be installed here."""


def ensure_chromium() -> str:
    """Returns Chromium's path, installing Debian's package first if needed (root, apt-get)."""
    if shutil.which("chromium"):
        return shutil.which("chromium")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ChromiumUnavailableError(
            "chromium is not installed and apt-get (as root) is not here"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise ChromiumUnavailableError(
                f"{' '.join(command)} failed: {result.stderr.strip().splitlines()[-1:]}"
            )
    if not shutil.which("chromium"):
        raise ChromiumUnavailableError("apt-get installed chromium, but it is not on PATH")
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(
    logdir: str, graph_runs: int = 1, timeout_seconds: float = 120, flags: Sequence[str] = ()
) -> Iterator[str]:
    """A `tensorboard` on a free loopback port over `logdir`, yielded (as its URL) once it serves
    the graphs of at least `graph_runs` runs; always stopped, within a bounded wait. `flags` are
    passed on (`--load_fast=false`, say)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--reload_interval=1",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:  # Until it answers and has loaded the graphs.
            try:
                with urllib.request.urlopen(f"{url}/data/plugin/graphs/info", timeout=5) as reply:
                    if len(json.loads(reply.read() or b"{}")) >= graph_runs:
                        break
            except (OSError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tensorboard did not come up")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def browser_page() -> Iterator[object]:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport=VIEWPORT)
        finally:
            browser.close()


def rendered_graph_nodes(page, url: str, timeout_ms: int = 60_000) -> int:
    """Opens the Graphs dashboard and returns how many graph nodes it drew (0: none)."""
    page.goto(f"{url}/#graphs")
    try:
        page.wait_for_selector("g.node", timeout=timeout_ms)
    except Exception:  # Playwright's TimeoutError: nothing was drawn.
        return 0
    if page.get_by_text("Graph visualization failed").is_visible():
        return 0
    return page.locator("g.node").count()


def train_briefly(app: str, logdir: str) -> None:
    """A short run of an app, long enough for curves to have a shape."""
    from apps.conditional_dropout import train as dropout_train
    from apps.mnist_mlp import train as mnist_train
    from apps.regression_tape import train as regression_train
    from apps.vae_timeseries import train as vae_train

    runs = {
        "mnist_mlp": lambda: mnist_train.train_and_evaluate(
            mnist_train.Config(
                num_steps=600, dataset="mnist_sample", eval_every_steps=100, profile=True
            ),
            logdir,
        ),
        "regression_tape": lambda: regression_train.train_and_evaluate(
            regression_train.Config(num_steps=1000, eval_every_steps=100), logdir
        ),
        "conditional_dropout": lambda: dropout_train.train_and_evaluate(
            dropout_train.Config(num_steps=600, dropout_off_at_step=300), logdir
        ),
        "vae_timeseries": lambda: vae_train.train_and_evaluate(
            vae_train.Config(num_steps=1000, kl_warmup_steps=500, eval_every_steps=250), logdir
        ),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        runs[app]()


def train_diverging(logdir: str) -> str:
    """A regression_tape run made to overflow with --debugger on; returns its Debugger V2 dump."""
    from apps.regression_tape import train as regression_train
    from common import errors

    diverging = regression_train.Config(
        num_steps=4, batch_size=8, steps_per_loop=2, learning_rate=1e10, debugger=True
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(errors.NonFiniteLossError):
        regression_train.train_and_evaluate(diverging, logdir)
    # Debugger V2 reads only the folder TensorBoard is pointed at: the one dump, not the logdir.
    [dump] = pathlib.Path(logdir, "debugger").iterdir()
    return str(dump)


# Each wait below is for an element that exists only once the dashboard has drawn its data, so a
# screenshot is never of a spinner or an empty card; Playwright's CSS and text selectors reach into
# the Polymer and Angular components' open shadow roots.
DASHBOARD_TIMEOUT_MS = 60_000


def wait_for_text_in_any_frame(page, text: str, timeout_ms: int = DASHBOARD_TIMEOUT_MS):
    """Returns the first element showing `text` in the page or any of its frames, once visible.

    The Projector and Profile dashboards run as apps of their own inside frames.

    Raises:
        RuntimeError: no frame shows it within `timeout_ms`.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        for frame in page.frames:
            for element in frame.get_by_text(text).all():
                if element.is_visible():
                    return element
        time.sleep(0.5)
    raise RuntimeError(f"no frame showed {text!r} within {timeout_ms} ms")


def show_custom_scalars(page, url: str) -> None:
    """The Custom Scalars tab, once a chart has its data (it counts the tags its regex matched)."""
    page.goto(f"{url}/#custom_scalars")
    page.wait_for_selector("text=/Matches \\([1-9]/", timeout=DASHBOARD_TIMEOUT_MS)


def show_images(page, url: str) -> None:
    """The Images tab, once its first image has loaded (the others load with it)."""
    page.goto(f"{url}/#images")
    images = page.locator("tf-image-loader img")
    deadline = time.monotonic() + DASHBOARD_TIMEOUT_MS / 1000
    while not images.count():
        if time.monotonic() > deadline:
            raise RuntimeError("the Images dashboard loaded no image")
        time.sleep(0.5)


def show_projector(page, url: str) -> None:
    """The Projector tab, once it has read the embedding and projected it (PCA, by default)."""
    page.goto(f"{url}/#projector")
    wait_for_text_in_any_frame(page, "Total variance described")


def show_profile_trace(page, url: str) -> None:
    """The Profile tab's trace viewer (the overview page has no step breakdown to show on this
    host's CPU-only trace, while the timeline of ops does)."""
    page.goto(f"{url}/#profile")
    wait_for_text_in_any_frame(page, "Performance Summary")
    wait_for_text_in_any_frame(page, "Overview Page").click()  # Opens the tools menu.
    wait_for_text_in_any_frame(page, "Trace Viewer").click()
    wait_for_text_in_any_frame(page, "Expand All")  # The timeline's processes toolbar,
    wait_for_text_in_any_frame(page, "/host:CPU")  # then the trace's process, once it is read.


def show_pr_curves(page, url: str) -> None:
    """The PR Curves tab, once a run's curve is drawn (its legend names the step)."""
    page.goto(f"{url}/#pr_curves")
    page.wait_for_selector("text=is at", timeout=DASHBOARD_TIMEOUT_MS)


def show_debugger_alerts(page, url: str) -> None:
    """Debugger V2 with its NaN/Inf alerts open: the graph executions scroll to the first
    non-finite tensor's op (regression_tape's squared error)."""
    page.goto(f"{url}/#debugger-v2")
    page.get_by_text("NaN/∞").click(timeout=DASHBOARD_TIMEOUT_MS)
    page.get_by_text("Square:0").first.wait_for(timeout=DASHBOARD_TIMEOUT_MS)


# Dashboards beyond Graphs, Scalars and Text, per app: the file name's suffix and how to show it.
EXTRA_DASHBOARDS = {
    "mnist_mlp": {
        "images": show_images,
        "custom_scalars": show_custom_scalars,
        "projector": show_projector,
        "profile": show_profile_trace,
    },
    "conditional_dropout": {"pr_curves": show_pr_curves},
    "vae_timeseries": {"images": show_images},
}


def screenshot_app(app: str, logdir: str, output: pathlib.Path, page) -> list[pathlib.Path]:
    """Screenshots of one app's dashboards; returns the files written."""
    written = []
    with tensorboard_server(logdir) as url:
        nodes = rendered_graph_nodes(page, url)
        if not nodes:
            raise RuntimeError(f"{app}: the Graphs dashboard drew no graph")
        time.sleep(1)
        written.append(output / f"{app}_graphs.png")
        page.screenshot(path=written[-1])
        for dashboard in ["scalars", "text"]:
            page.goto(f"{url}/#{dashboard}")
            page.wait_for_load_state("networkidle")
            time.sleep(3)  # Charts and images draw after their data arrive.
            written.append(output / f"{app}_{dashboard}.png")
            page.screenshot(path=written[-1])
        for dashboard, show in EXTRA_DASHBOARDS.get(app, {}).items():
            show(page, url)  # Not "networkidle": the Projector and Profile keep polling.
            time.sleep(3)  # Lines, images and points finish drawing after their element appears.
            written.append(output / f"{app}_{dashboard}.png")
            page.screenshot(path=written[-1])
    return written


def screenshot_debugger(logdir: str, output: pathlib.Path, page) -> pathlib.Path:
    """Debugger V2's alerts on a diverging regression_tape run; returns the file written."""
    dump = train_diverging(logdir)
    with tensorboard_server(dump, graph_runs=0) as url:  # A dump has no graphs to wait for.
        show_debugger_alerts(page, url)
        time.sleep(3)
        path = output / "regression_tape_debugger_v2.png"
        page.screenshot(path=path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--apps", default="mnist_mlp,regression_tape,conditional_dropout,vae_timeseries"
    )
    parser.add_argument(
        "--no-debugger",
        dest="debugger",
        action="store_false",
        help="Skip the diverging regression_tape run shown in Debugger V2.",
    )
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as logs, browser_page() as page:
        for app in args.apps.split(","):
            logdir = os.path.join(logs, app)
            train_briefly(app, logdir)
            for path in screenshot_app(app, logdir, args.output, page):
                print(f"wrote {path}", flush=True)
        if args.debugger:
            path = screenshot_debugger(os.path.join(logs, "diverging"), args.output, page)
            print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
