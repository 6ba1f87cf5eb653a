"""`ddorch study run NAME --address ADDR` (`orchestrator.engine.study_cluster`): a study's parts as Ray tasks,
several at once, each after the part it reads; lines appended as parts end; a failed part reported while the
others go on (exit 1); a rerun runs nothing. The scheduling with a stand-in pool (fast), then a tiny digits
study on a local Ray instance (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ddcore import hardware
from ddcore.errors import DDError
from orchestrator.engine import bench, study_cluster
from orchestrator.engine.study import load_study, study_folder
from tests.test_study import invoke, write_study

STUDY = """
[study]
name = "tiny"
title = "Two sets and an analysis"

[[row]]
name = "tiny_a"
dataset = "digits"
method = "random"
ipc = 2
eval_model = "ConvNetD1"
eval_seeds = 1
eval_epochs = 2

[[row]]
name = "tiny_a_cross"
kind = "analysis"
of = "tiny_a"
analysis = "cross_arch"
settings = { models = ["ConvNetD1"], seeds = 1, epochs = 2 }

[[row]]
name = "tiny_b"
dataset = "digits"
method = "random"
ipc = 3
eval_model = "ConvNetD1"
eval_seeds = 1
eval_epochs = 2
"""
BROKEN = STUDY.replace("ipc = 3", "ipc = 500")  # resolves, and fails once it runs: digits' classes are smaller


class InlinePool:
    """A `TaskPool` stand-in: tasks end in the order they started, with made-up results; `fail` names
    the parts that fail. Records how many ran at once."""

    def __init__(self, fail: set[str]) -> None:
        self.fail, self.running, self.widest = fail, [], 0

    def __len__(self) -> int:
        return len(self.running)

    def submit(self, function, tag, *args, gpus=None) -> None:
        self.running.append(tag)
        self.widest = max(self.widest, len(self.running))

    def wait_settled(self):
        row = self.running.pop(0)
        if row.name in self.fail:
            return row, None, DDError("boom")
        measured = {"mlflow_run": f"run-{row.name}"}
        return row, measured if row.kind == "analysis" else {**measured, "per_seed": [0.5]}, None

    def interrupt(self) -> None:
        self.running.clear()


def schedule(monkeypatch, tmp_path, fail: set[str], max_concurrent: int = 2):
    monkeypatch.setenv("DDORCH_PRESETS", str(tmp_path / "presets"))
    study = load_study(write_study(tmp_path / "presets", STUDY))
    pool = InlinePool(fail)
    monkeypatch.setattr(study_cluster, "TaskPool", lambda cpus: pool)
    said: list[str] = []
    folder = study_folder(study, tmp_path / "out")
    options = bench.RunOptions(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", device="cpu")
    cluster = study_cluster.ClusterRun("127.0.0.1:1", max_concurrent)
    appended, failed = study_cluster.run_on_cluster(list(study.rows), options, folder, cluster, said.append)
    return [line["name"] for line in appended], failed, said, pool


def test_an_analysis_starts_once_its_trial_has_its_line_and_parts_run_side_by_side(monkeypatch, tmp_path):
    names, failed, said, pool = schedule(monkeypatch, tmp_path, fail=set())
    assert names == ["tiny_a", "tiny_b", "tiny_a_cross"] and failed == []
    assert said[:2] == ["start tiny_a (1 CPU; 1 running)", "start tiny_b (1 CPU; 2 running)"]
    assert said.index("start tiny_a_cross (1 CPU; 2 running)") > said.index(
        next(s for s in said if "done tiny_a:" in s)
    )
    assert pool.widest == 2
    lines = bench.load_results(tmp_path / "out" / "results.jsonl")
    assert [line["name"] for line in lines] == names and all(line["ray_cluster"] == "127.0.0.1:1" for line in lines)


def test_a_failed_part_is_reported_its_analysis_skipped_and_the_others_recorded(monkeypatch, tmp_path):
    names, failed, said, _ = schedule(monkeypatch, tmp_path, fail={"tiny_a"}, max_concurrent=1)
    assert names == ["tiny_b"] and failed == ["tiny_a", "tiny_a_cross"]
    assert "failed tiny_a: boom" in said and "skip tiny_a_cross: it reads tiny_a, which failed" in said


def test_cluster_lines_do_not_price_later_runs_here():
    row = bench.Row(name="r", dataset="digits", method="random", ipc=2)
    here = hardware.machine()
    line = {"key": row.key(), "machine": here, "wall_seconds": 1.0, "distill_seconds": 0.0}
    assert bench._earlier(row, [line], here) is line
    assert bench._earlier(row, [{**line, "ray_cluster": "head:6379"}], here) is None


@pytest.fixture
def local_ray(workspace):
    """A local Ray instance of 2 CPUs (its workers import this checkout); its address, as --address names it."""
    import ray

    from orchestrator.engine.cluster import connect

    connect(None, num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.slow
def test_a_study_on_a_local_ray_runs_its_parts_as_tasks_and_a_failed_one_leaves_the_others(local_ray, tmp_path):
    presets, uri, folder = tmp_path / "presets", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out"
    env = {"DDORCH_PRESETS": str(presets)}
    args = ["run", "tiny", "--address", local_ray, "--device", "cpu", "--tracking-uri", uri, "--folder", str(folder)]
    write_study(presets, BROKEN)
    first = invoke(*args, env=env)
    assert first.exit_code == 1, first.output
    assert "failed tiny_b: " in first.output and "ipc 500 is more than" in first.output
    trial, analysis = bench.load_results(folder / "results.jsonl")  # in the order they ended
    assert (trial["name"], analysis["name"]) == ("tiny_a", "tiny_a_cross")
    assert analysis["source_run"] == trial["mlflow_run"] and trial["ray_cluster"] == local_ray
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("study-tiny").experiment_id
    statuses = sorted(run.info.status for run in client.search_runs([experiment]))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]  # the failed part's run ended, none left RUNNING

    write_study(presets, STUDY)
    second = invoke(*args, env=env)
    assert second.exit_code == 0, second.output
    assert "start tiny_b" in second.output and "start tiny_a" not in second.output.replace("start tiny_b", "")
    assert "1 part(s) run now, 3 done in all of 3" in second.output
    third = invoke(*args, env=env)
    assert third.exit_code == 0 and "0 part(s) run now, 3 done in all of 3" in third.output, third.output
    assert "start" not in third.output
    assert len(bench.load_results(Path(folder) / "results.jsonl")) == 3
