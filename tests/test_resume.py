"""Kill a sweep's driver mid-way, resume it: finished trials stay, no duplicate or RUNNING runs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
DRIVER = """
import sys, ray
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.test_sweep import sweep, tiny_preset
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
preset = tiny_preset(num_samples=4, max_concurrent=1, fixed={{"iterations": 20, "ipc": 2, "batch_real": 8, "model": "ConvNetD2"}})
sweep(Path({tmp!r}), preset, '[lr_images]\\ntype = "choice"\\nvalues = [1.0]\\n', "resumable", resume={resume})
"""


def start(tmp_path: Path, resume: bool) -> subprocess.Popen:
    code = DRIVER.format(repo=str(REPO), tmp=str(tmp_path), resume=resume)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def child_runs(client):
    experiment = client.get_experiment_by_name("ddorch")
    return [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]


def test_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    driver = start(tmp_path, resume=False)
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline and not finished:
        time.sleep(2)
        if (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("ddorch"):
            finished = [r for r in child_runs(client) if r.info.status == "FINISHED"]
    assert finished, "no trial finished before the deadline"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    driver.wait()
    first = finished[0]

    resumed = start(tmp_path, resume=True)
    assert resumed.wait(timeout=400) == 0

    runs = child_runs(client)
    assert len(runs) == 4  # one child run per trial, none duplicated
    left = [
        (r.info.status, r.data.tags.get("ddorch.failure"), r.data.tags.get("ddorch.trial_id"))
        for r in runs
        if r.info.status not in ("FINISHED", "KILLED")
    ]
    assert not left, left
    again = client.get_run(first.info.run_id)
    assert again.info.end_time == first.info.end_time  # the finished trial was not rerun
    parents = [
        r
        for r in client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
        if "ddorch.sweep" in r.data.tags
    ]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
