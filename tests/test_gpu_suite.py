"""The GPU suite's plumbing on the CPU: the smoke end to end, the budget, the bundle, the folder tracker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_bundle  # noqa: E402
import gpu_suite  # noqa: E402
from gpu_suite import Bracket, GpuRow, Outcome, Profile  # noqa: E402

from ddcore.evaluate import EvalSpec  # noqa: E402
from orchestrator.engine import bench  # noqa: E402
from orchestrator.engine.bench import Row  # noqa: E402
from orchestrator.engine.resolve import Layers, resolve_trial  # noqa: E402
from orchestrator.engine.trial import TrialConfig, run_trial  # noqa: E402
from orchestrator.store.run_schema import Status, Tag  # noqa: E402
from orchestrator.store.tracking import FolderTracker, git_commit  # noqa: E402

# The GPU machine's image has neither: the smoke runs as if it were there.
BLOCK_MLFLOW_AND_RAY = """
import sys


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "ray"):
            raise ImportError(name + " is not on the GPU machine")


sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_smoke_runs_every_kind_of_row_and_skips_what_does_not_fit(tmp_path):
    """`gpu_suite.sh --smoke`, as CI runs it, without MLflow and Ray (as on the GPU machine): bundle built,
    each row's line written, the long row skipped."""
    out, block = tmp_path / "out", tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK_MLFLOW_AND_RAY)
    env = {**os.environ, "OUT": str(out), "COLUMNS": "200", "PYTHONPATH": str(block), "PYTHON": sys.executable}
    blocked = subprocess.run([sys.executable, "-c", "import mlflow"], env=env, capture_output=True, text=True)
    assert "not on the GPU machine" in blocked.stderr
    done = subprocess.run(
        ["bash", "benchmarks/gpu_suite.sh", "--smoke", "--budget-seconds", "120"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "a call carries" in done.stdout and "fits" in done.stdout
    lines = {line["name"]: line for line in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    probe = lines["probe_fp32"]["figures"]
    assert probe["its:digits:ipc1"] > 0 and probe["eval_seed_seconds_packed"] > 0
    for name in ("smoke_datadam", "smoke_random"):
        assert lines[name]["kind"] == "trial" and lines[name]["seeds"] == 2
        assert len(lines[name]["per_seed"]) == 2 and lines[name]["cuda"] == torch.version.cuda
    assert "smoke_full_data" in lines, done.stdout
    assert lines["smoke_full_data"]["kind"] == "baseline" and lines["smoke_full_data"]["mean"] > 0.8
    bracket = lines["smoke_lossless"]
    reached = [step["ipc"] for step in bracket["steps"]]
    assert reached and reached == [1, 5][: len(reached)]
    assert bracket["target_mean"] == lines["smoke_full_data"]["mean"]
    assert "| `smoke_lossless` |" in gpu_suite.render_gpu_tables(list(lines.values()))
    assert "smoke_too_long" not in lines
    assert "smoke_too_long" in done.stdout and "skipped" in done.stdout  # the summary says so
    env_json = json.loads((out / "env.json").read_text())
    assert env_json["torch"] == torch.__version__ and env_json["device"] == "cpu"
    with tarfile.open(out / "runs.tar.gz") as archive:
        assert any(name.endswith("params.json") for name in archive.getnames())
    with tarfile.open(out / "sets.tar.gz.00") as archive:  # the sets apart, in pieces that come back
        assert any(name.endswith("synthetic.pt") for name in archive.getnames())
    assert not list(ROOT.joinpath("benchmarks", "parts").glob("smoke_*"))  # the repository's parts untouched


def _row(name: str, batch: str, **settings) -> GpuRow:
    return GpuRow(name, batch, Row(name, "digits", preset="paper", ipc=1, eval_epochs=3, **settings))


def test_budget_starts_no_batch_that_would_end_past_it(tmp_path, monkeypatch):
    """Batches run in order while their estimate fits what is left; a bracket waits for its target."""
    figures = {"its:digits": 10.0, "eval_step": 0.0, "epoch:digits": 0.0}
    rows = (
        _row("short", "a", iterations=10),  # 1 s + start
        _row("long", "b", iterations=10_000),  # 1000 s
        GpuRow("bracket", "c", bracket=Bracket("random", "digits", "never_ran", (1,))),
        _row("short_again", "d", iterations=10),
    )
    profile = Profile("test", "cpu", 100.0, figures, rows)
    started = []

    def fake_batch(batch, profile, out, deadline, figures):
        started.extend(r.name for r in batch)
        return [Outcome(r.name, "done", 0.0) for r in batch]

    monkeypatch.setattr(gpu_suite, "run_batch", fake_batch)
    outcomes = gpu_suite.run_suite(profile, tmp_path, budget=100.0)
    assert started == ["short", "short_again"]
    states = {o.name: (o.state, o.note) for o in outcomes}
    assert states["long"][0] == "skipped" and "left" in states["long"][1]
    assert states["bracket"] == ("skipped", "needs never_ran, which did not run")
    plan = gpu_suite.dry_run(profile, 100.0)
    assert [line.split()[0] for line in plan.splitlines()[1:]] == ["run", "SKIP", "SKIP", "run"]


def test_the_gpu_plan_lists_every_row_with_an_estimate():
    plan = gpu_suite.dry_run(gpu_suite.PROFILES["gpu"], 480.0)
    for row in gpu_suite.PROFILES["gpu"].rows:
        assert row.name in plan
    assert plan.splitlines()[1].split()[0] == "run"  # the probe always fits


def test_the_summary_shows_each_row_its_own_line():
    lines = [
        {"kind": "trial", "name": "ipc10", "mean": 0.97, "std": 0.001, "seeds": 3},
        {"kind": "trial", "name": "ipc10_3sets", "mean": 0.96, "std": 0.002, "seeds": 3},
        {"kind": "probe", "name": "probe_fp32", "row": "probe", "figures": {"eval_step": 0.5}},
    ]
    assert gpu_suite.headline("ipc10", lines).startswith("97.00")  # not the longer name's line
    assert gpu_suite.headline("probe", lines) == "eval_step 0.5"


def test_probe_figures_replace_the_guesses():
    lines = [{"kind": "probe", "precision": "fp32", "figures": {"its:mnist:ipc10": 300.0, "eval_step": 0.001}}]
    figures = gpu_suite.figures_from(lines, bench.GPU_FIGURES)
    row = Row("r", "mnist", preset="paper", ipc=10, iterations=3000, eval_seeds=3)
    assert bench.gpu_seconds(row, figures) == pytest.approx(3000 / 300 + 3 * 1000 * 1 * 0.001)
    assert bench.gpu_seconds(row, bench.GPU_FIGURES) > 3000 / 31  # the H100 figure before the probe


def test_import_sorts_lines_into_the_results_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    trial = json.loads(ROOT.joinpath("benchmarks/results.jsonl").read_text().splitlines()[0])
    trial = {**trial, "name": "gpu_copy", "group": "GPU: test", "key": "gpu0123456789abc"}
    probe = {"kind": "probe", "name": "probe_fp32", "figures": {"eval_step": 0.1}, "precision": "fp32"}
    probe.update(machine="NVIDIA H200", date="2026-12-04 16:00")
    for line in (trial, probe):
        gpu_suite.append_line(line, out)
    results, gpu_results, md = tmp_path / "results.jsonl", tmp_path / "gpu.jsonl", tmp_path / "RESULTS.md"
    assert gpu_suite.import_lines(out, results, gpu_results, md) == 2
    assert gpu_suite.import_lines(out, results, gpu_results, md) == 0  # not twice
    assert json.loads(results.read_text())["name"] == "gpu_copy"
    assert json.loads(gpu_results.read_text())["kind"] == "probe"
    text = md.read_text()
    assert "### GPU: test" in text and "| `eval_step` | 0.1 |" in text
    gpu_suite.import_lines(out, results, gpu_results, md)
    assert md.read_text() == text  # regenerated in place, not appended again


def test_bundle_size_is_printed_and_over_the_limit_refused(tmp_path, capsys):
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    for name, version in gpu_bundle.WHEELS.items():  # present: nothing to build
        (wheels / f"{name}-{version}-py3-none-any.whl").write_bytes(b"0" * 1000)
    gpu_bundle.main(["--smoke", "--out", str(tmp_path / "bundle")])
    assert "fits" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="over its 0.5 MiB"):
        gpu_bundle.main(["--smoke", "--out", str(tmp_path / "bundle"), "--limit-mib", "0.5"])


def test_mhist_travels_as_webp_the_loader_reads(tmp_path):
    """The bundle's MHIST: same names, same sizes, close pixels; the MHIST loader reads it as the release."""
    from ddcore.data.mhist import load_mhist

    release = tmp_path / "release" / "mhist"
    (release / "images").mkdir(parents=True)
    rows = ["Image Name,Majority Vote Label,Number of Annotators who Selected SSA (Out of 7),Partition"]
    ramp = np.linspace(0, 1, 128)
    smooth = [  # smooth tissue-like colour fields, one per image
        np.stack([np.add.outer(ramp * i, ramp), np.add.outer(ramp, ramp * 0.5), np.add.outer(ramp * 0.3, ramp)], -1)
        for i in range(4)
    ]
    smooth = [(255 * field / field.max()).astype(np.uint8) for field in smooth]
    for i, (label, part) in enumerate([("HP", "train"), ("SSA", "train"), ("HP", "test"), ("SSA", "test")]):
        Image.fromarray(smooth[i]).save(release / "images" / f"MHIST_{i}.png")
        rows.append(f"MHIST_{i}.png,{label},{3 * (label == 'SSA')},{part}")
    (release / "annotations.csv").write_text("\n".join(rows) + "\n")
    gpu_bundle.pack_mhist(release.parent, tmp_path / "bundle" / "mhist")
    original, packed = load_mhist(release.parent), load_mhist(tmp_path / "bundle")
    assert packed.train_images.shape == original.train_images.shape == (2, 3, 128, 128)
    assert torch.equal(packed.train_labels, original.train_labels)
    raw = lambda d: d.train_images * torch.tensor(d.std).view(1, -1, 1, 1) + torch.tensor(d.mean).view(1, -1, 1, 1)  # noqa: E731
    assert (raw(packed) - raw(original)).abs().mean() < 3 / 255


def _tiny_trial() -> TrialConfig:
    flags = Layers(flags=dict(iterations=2, batch_real=4, model="ConvNetD1", device="cpu", log_every=1))
    return resolve_trial("datadam", "digits", "paper", 1, EvalSpec(("ConvNetD1",), 1, epochs=1), flags, baseline=False)


def test_a_trial_runs_without_mlflow_into_a_folder(tmp_path):
    """The GPU machine has no MLflow: the same trial, its run written as files."""
    tracker = FolderTracker.start(tmp_path / "runs", "tiny", {Tag.BENCHMARK: "tiny"})
    result = run_trial(_tiny_trial(), tracker, progress=False, output_dir=tmp_path / "out")
    folder = tracker.folder
    meta, tags = json.loads((folder / "meta.json").read_text()), json.loads((folder / "tags.json").read_text())
    assert meta["status"] == Status.FINISHED and meta["run_id"] == result.run_id
    assert tags[Tag.BENCHMARK] == "tiny" and "ddorch run --dataset digits" in tags[Tag.NOTE]
    assert json.loads((folder / "params.json").read_text())["method_config.iterations"] == "2"
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    accuracy = [m["value"] for m in metrics if m["key"] == "acc_ConvNetD1_mean"]
    assert accuracy == [pytest.approx(result.evaluations["ConvNetD1"].accuracy_mean)]
    assert (folder / "artifacts" / "synthetic.pt").is_file() and any((folder / "images").rglob("*.png"))


def test_a_failed_trial_says_why_in_its_folder(tmp_path):
    tracker = FolderTracker.start(tmp_path / "runs", "bad")
    trial = _tiny_trial()
    trial.eval = replace(trial.eval, models=("NoSuchNet",))  # past the resolver's check: the trial's own
    with pytest.raises(Exception, match="NoSuchNet"):
        run_trial(trial, tracker, progress=False, output_dir=tmp_path / "out")
    assert json.loads((tracker.folder / "meta.json").read_text())["status"] == Status.FAILED
    assert "NoSuchNet" in json.loads((tracker.folder / "tags.json").read_text())[Tag.FAILURE]


def test_a_copy_without_git_takes_its_commit_from_the_environment(monkeypatch):
    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.setenv("DDORCH_GIT_COMMIT", "0123456789abcdef")
    assert git_commit() == "0123456" and git_commit(short=False) == "0123456789abcdef"
    monkeypatch.delenv("DDORCH_GIT_COMMIT")
    assert git_commit() == "unknown"
