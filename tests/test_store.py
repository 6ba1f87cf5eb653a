"""Several processes starting together on a new SQLite store: each gets its run, none crashes."""

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
PROCESSES = 4
# Imports first, then wait until every process is ready: the store's first use happens at once.
STARTER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from orchestrator.store.tracking import Tracker
folder = Path({tmp!r})
(folder / "ready-{index}").touch()
while len(list(folder.glob("ready-*"))) < {processes}:
    time.sleep(0.01)
Tracker.start("sqlite:///" + str(folder / "mlflow.db"), run_name="run-{index}").finish()
"""


def test_processes_starting_together_on_a_new_store_all_succeed(tmp_path):
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER.format(repo=str(REPO), tmp=str(tmp_path), index=i, processes=PROCESSES)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    errors = [p.communicate(timeout=120)[1] for p in starters]
    assert [p.returncode for p in starters] == [0] * PROCESSES, errors
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run-{i}" for i in range(PROCESSES)]
    assert all(r.info.status == "FINISHED" for r in runs)
