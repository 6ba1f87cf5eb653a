"""MLflow's web UI in headless Chromium, for the UI test and benchmarks/ui_screenshots.py: a tiny sweep
logged the way ddorch logs one, `mlflow server` on a free local port, and a Chromium driven over the
DevTools protocol (a pipe: no extra package), which can click, wait for text and take screenshots."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tests.test_server import free_port, healthy

REPLY_TIMEOUT_S = 60
EXPANDER = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'  # a parent run's "show child runs"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Counts the page's images and the broken ones once it has loaded, beside a control image that must be broken.
PROBE = """<img class="probe-control" src="no-such-image.png">
<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = (list) => list.filter((img) => !img.complete || img.naturalWidth === 0).length;
  const report = images.filter((img) => !img.classList.contains("probe-control"));
  document.body.setAttribute("data-images", report.length);
  document.body.setAttribute("data-broken", broken(report));
  document.body.setAttribute("data-control-broken", broken(images) - broken(report));
});</script>"""


def rendered(html: str, folder: Path) -> tuple[str, dict[str, int]]:
    """A report page as headless Chromium leaves it, and the probe's counts (images, broken, control-broken);
    the calling test is skipped where Chromium is missing. The page is a copy in `folder`: embedded images
    must not need the report's own folder."""
    import pytest

    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    page = folder / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    counts = {name: int(value) for name, value in re.findall(r'data-(images|broken|control-broken)="(\d+)"', dom)}
    return dom, counts


def log_tiny_sweep(uri: str, folder: Path) -> dict[str, str]:
    """A sweep parent and three trials on digits (two finished, one stopped early at iteration 20), tagged
    and named as a sweep's trials are, with `eval_accuracy` and the class-labelled grid at each evaluation
    (real digits, noisier at earlier steps: no training). Returns the run ids by role: parent, finished, stopped."""
    from ddcore.data import load_dataset
    from ddcore.synthetic import SyntheticSet
    from ddcore.visualize import class_grid
    from orchestrator.store import run_schema as schema
    from orchestrator.store.run_schema import Tag
    from orchestrator.store.tracking import Tracker

    data = load_dataset("digits")
    labels = torch.as_tensor(data.train_labels)
    chosen = torch.cat([torch.nonzero(labels == c)[:2, 0] for c in range(data.num_classes)])
    images, generator = torch.as_tensor(data.train_images)[chosen], torch.Generator().manual_seed(0)
    parent = Tracker.start(uri, run_name="digits-datadam-sweep", tags={Tag.SWEEP: "digits-datadam-sweep"})
    ids = {"parent": parent.run_id}
    for number, (lr, stop_at) in enumerate(((1.0, None), (0.5, None), (0.05, 20))):
        name = schema.run_name("digits", "datadam", 2, {"lr_images": lr})
        trial = Tracker.start(uri, run_name=name, parent_run_id=parent.run_id, tags={Tag.TRIAL_ID: f"t{number}"})
        trial.log_params({"dataset": "digits", "method": "datadam", "method_config": {"ipc": 2, "lr_images": lr}})
        for step in (10, 20, 30) if stop_at is None else (10, 20):
            trial.log_metrics({schema.EVAL_ACCURACY: 0.5 + lr * step / 100}, step=step)
            noisy = images + torch.randn(images.shape, generator=generator) * 3 / step
            path = folder / f"grid_{trial.run_id}_{step}.png"
            class_grid(SyntheticSet.of(data, noisy, labels[chosen], "datadam", {})).save(path)
            trial.log_image(path, schema.GRID_IMAGE, step)
        stopped = "stopped early by the scheduler" if stop_at else None
        trial.finish(stopped=stopped, stopped_at=stop_at)
        ids["stopped" if stop_at else "finished"] = trial.run_id
    parent.finish()
    return ids


@contextlib.contextmanager
def mlflow_ui(uri: str, folder: Path, timeout_s: float = 30):
    """`mlflow server` for the store `uri` on a free 127.0.0.1 port; yields its URL (None if it did not
    answer within `timeout_s`) and stops it and its workers afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", uri]
    quiet = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=quiet, cwd=folder
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while not healthy(url) and time.time() < deadline and server.poll() is None:
        time.sleep(0.5)
    try:
        yield url if healthy(url) else None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe (fds 3 and 4 in the browser)."""

    def __init__(self, binary: str, width: int = 1400, height: int = 900):
        commands, self._replies = os.pipe(), os.pipe()
        # Copies above 10, so that moving them to 3 and 4 in the child cannot overwrite one another.
        into, out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands[0], self._replies[1]))
        # Chromium's helpers may still write to the profile as the browser ends: a late file must not fail a test.
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
            + [f"--window-size={width},{height}", f"--user-data-dir={self._profile.name}", "about:blank"],
            preexec_fn=lambda: (os.dup2(into, 3), os.dup2(out, 4)),
            close_fds=False,
            start_new_session=True,  # its helper processes in one group, ended together
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (into, out, commands[0], self._replies[1]):
            os.close(fd)
        self._send, self._buffer, self._next_id = commands[1], b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events in between are skipped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if getattr(self, "_session", None):
            message["sessionId"] = self._session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                if not select.select([self._replies[0]], [], [], REPLY_TIMEOUT_S)[0]:  # a hung browser fails the test
                    raise TimeoutError(f"chromium did not answer {method} within {REPLY_TIMEOUT_S} s")
                chunk = os.read(self._replies[0], 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, wait_for: str, timeout_s: float = 30) -> str:
        """Load `url` and wait until the page's text contains `wait_for`; the page's text."""
        self.call("Page.navigate", url=url)
        return self.wait_for(wait_for, timeout_s)

    def wait_for(self, text: str, timeout_s: float = 30) -> str:
        deadline = time.time() + timeout_s
        while True:
            shown = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if text in shown or time.time() > deadline:
                return shown
            time.sleep(0.3)

    def click(self, selector: str) -> int:
        """Click every element `selector` matches; how many there were."""
        return self.evaluate(f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.click()).length")

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        for fd in (self._send, self._replies[0]):
            os.close(fd)
        self._profile.cleanup()

    def click_at(self, selector: str, fraction: float) -> None:
        """A real mouse click `fraction` of the way across the element `selector` (sliders), at mid-height."""
        box = self.evaluate(
            f"(r => [r.left, r.top, r.width, r.height])(document.querySelector({json.dumps(selector)}).getBoundingClientRect())"
        )
        x, y = box[0] + fraction * box[2], box[1] + box[3] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def wait_until(self, expression: str, timeout_s: float = 30):
        """Poll a JavaScript expression until it is truthy (or time runs out); its last value."""
        deadline = time.time() + timeout_s
        while not (value := self.evaluate(expression)) and time.time() < deadline:
            time.sleep(0.3)
        return value

    def screenshot(self, path: Path, selector: str | None = None, scale: float = 1) -> Path:
        """The viewport, or only the element `selector` (magnified by `scale`), as a PNG."""
        clip = {}
        if selector:
            box = self.evaluate(
                f"(r => ({{x: r.left, y: r.top, width: r.width, height: r.height}}))"
                f"(document.querySelector({json.dumps(selector)}).getBoundingClientRect())"
            )
            clip = {"clip": {**box, "scale": scale}}
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", **clip)["data"]))
        return path
