"""Studies (`orchestrator.engine.study`, `ddorch study`): a rows file with a header, run by the benchmark runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from mlflow.tracking import MlflowClient

from orchestrator.engine import bench
from orchestrator.engine.study import find_study, load_study, on_gpu_only, plan, select_parts, study_folder
from orchestrator.views.bench_tables import SCALE_OUT

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[study]
name = "tiny"
title = "A tiny study"
[[study.section]]
id = "sets"
title = "Sets"
[[study.section]]
id = "checks"
title = "Checks"

[[row]]
name = "tiny_cross"
kind = "analysis"
of = "tiny_random"
analysis = "cross_arch"
settings = { models = ["ConvNetD3"], seeds = 1, epochs = 2 }
group = "checks"

[[row]]
name = "tiny_random"
dataset = "digits"
method = "random"
ipc = 2
eval_seeds = 1
eval_epochs = 2
group = "sets"
"""


def write_study(presets: Path, text: str = TINY, name: str = "tiny") -> Path:
    folder = presets / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def invoke(*args: str, env: dict[str, str]):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    return CliRunner().invoke(app, ["study", *args], env={"COLUMNS": "200", **env})


@pytest.fixture
def presets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray ./mlflow.db or ./ddorch-studies/ would be this test's
    monkeypatch.setenv("DDORCH_PRESETS", str(tmp_path / "presets"))
    write_study(tmp_path / "presets")
    return tmp_path / "presets"


def test_an_analysis_comes_after_the_trial_it_reads_and_its_key_holds_that_trials(presets):
    study = load_study(find_study("tiny"))
    trial, analysis = study.rows
    assert [trial.name, analysis.name] == ["tiny_random", "tiny_cross"]
    assert (analysis.dataset, analysis.ipc, analysis.of_key) == ("digits", 2, trial.key())
    text = TINY.replace("eval_epochs = 2", "eval_epochs = 3")
    changed = load_study(write_study(presets, text)).rows
    assert changed[1].key() != analysis.key()  # a changed trial re-runs its analyses
    assert [s.id for s in study.sections] == ["sets", "checks"]
    assert select_parts(study, "tiny_cross") == list(study.rows)  # --only takes what a part reads


def test_a_tiny_study_runs_end_to_end_then_a_rerun_reuses_every_part(presets, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "out"
    args = ["run", "tiny", "--device", "cpu", "--tracking-uri", uri, "--folder", str(folder)]
    first = invoke(*args, env={})
    assert first.exit_code == 0, first.output
    lines = bench.load_results(folder / "results.jsonl")
    trial, analysis = lines
    assert analysis["source_run"] == trial["mlflow_run"] and analysis["mlflow_run"] != trial["mlflow_run"]
    assert analysis["table"]["rows"] and analysis["of_key"] == trial["key"]
    client = MlflowClient(uri)  # the study's own experiment; the analysis a child of the run it read
    experiment = client.get_experiment_by_name("study-tiny").experiment_id
    trial_run, analysis_run = (client.get_run(line["mlflow_run"]) for line in lines)
    assert trial_run.info.experiment_id == analysis_run.info.experiment_id == experiment
    assert analysis_run.data.tags["mlflow.parentRunId"] == trial["mlflow_run"]
    assert client.get_experiment_by_name(bench.EXPERIMENT) is None
    again = invoke(*args, env={})
    assert again.exit_code == 0, again.output
    assert "0 part(s) run now, 2 done in all of 2" in again.output
    assert len(bench.load_results(folder / "results.jsonl")) == 2
    dry = invoke(*args, "--dry-run", env={})
    assert dry.output.count(" done ") == 2, dry.output
    dry = invoke(*args, "--dry-run", "--rerun", "--only", "tiny_cross", env={})
    assert dry.output.count(" done ") == 1 and "tiny_cross                         pending" in dry.output, dry.output
    rerun = invoke(*args, "--rerun", "--only", "tiny_cross", env={})
    assert "row 1 of 1: tiny_cross" in rerun.output and "1 part(s) run now, 2 done in all of 2" in rerun.output
    *_, last = bench.load_results(folder / "results.jsonl")
    assert last["key"] == analysis["key"] and last["mlflow_run"] != analysis["mlflow_run"]  # the report's line


def test_the_dry_run_prints_cpu_and_gpu_estimates_and_what_the_budget_leaves_out(presets, tmp_path):
    result = invoke("run", "tiny", "--dry-run", "--device", "cpu", "--folder", str(tmp_path / "out"), env={})
    assert result.exit_code == 0, result.output
    assert "here ~" in result.output and "GPU ~" in result.output
    assert "leave out: none" in result.output
    assert not (tmp_path / "out").exists() and not Path("mlflow.db").exists()  # nothing run, no run created


def test_gpu_parts_are_left_out_on_a_cpu_unless_named(presets):
    study = load_study(write_study(presets, TINY.replace('method = "random"', 'method = "random"\nhardware = "gpu"')))
    assert on_gpu_only(list(study.rows), None, gpus=False) == [study.rows[0]]
    assert on_gpu_only(list(study.rows), "tiny_random", gpus=False) == []
    assert on_gpu_only(list(study.rows), None, gpus=True) == []


def test_a_part_over_the_budget_or_without_an_estimate_is_left_out_of_the_plan(presets, tmp_path):
    text = TINY.replace('analysis = "cross_arch"', 'analysis = "continual"').replace(
        'settings = { models = ["ConvNetD3"], seeds = 1, epochs = 2 }', "settings = { seeds = 1 }"
    )
    study = load_study(write_study(presets, text))
    lines = plan(list(study.rows), study_folder(study, tmp_path / "out"), 10.0, [])
    assert lines[0].note == ""
    assert lines[1].note.startswith("left out: over the budget") and "no time model" in lines[1].text()


def test_a_trial_over_the_budget_distils_until_it_ends_in_the_plan(presets, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.CPU_UNIT_SECONDS, "datadam_iteration", 600.0)  # 20 iterations: 200 min
    text = TINY.replace('method = "random"', 'method = "datadam"\niterations = 20')
    study = load_study(write_study(presets, text))
    lines = plan(list(study.rows), study_folder(study, tmp_path / "out"), 30.0, [])
    trial = next(line for line in lines if line.row.name == "tiny_random")
    assert trial.note == "its distillation until the budget ends (30 min), kept for the next run"
    assert next(line for line in lines if line.row.name == "tiny_cross").note.startswith("left out: over the budget")


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (["show", "nowhere"], TINY, "unknown study 'nowhere'; known studies: "),
        (["run", "tiny", "--only", "nope"], TINY, "no part nope in study tiny"),
        (
            ["run", "tiny"],
            TINY.replace('dataset = "digits"\n', ""),
            "row 2 (tiny_random): a trial row needs dataset (missing)",
        ),
        (["run", "tiny"], TINY.replace('of = "tiny_random"', 'of = "tiny_cross"'), "a cycle in `of`: tiny_cross"),
        (["run", "tiny"], TINY.replace('group = "sets"', 'group = "elsewhere"'), "group 'elsewhere' names no section"),
        (["run", "tiny"], TINY.replace("seeds = 1,", "sedes = 1,"), "row tiny_cross: "),
        (["run", "tiny", "--address", "auto", "--budget-hours", "1"], TINY, "--budget-hours is for a run on this"),
        (
            ["run", "tiny", "--address", "auto"],
            TINY.replace("eval_epochs = 2", 'eval_epochs = 2\neval_model = "NoSuchNet"'),
            "row tiny_random: unknown model 'NoSuchNet'",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_nothing_runs(presets, tmp_path, args, text, message):
    path = write_study(presets, text)
    result = invoke(*args, "--folder", str(tmp_path / "out"), env={}) if args[0] == "run" else invoke(*args, env={})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert args[0] != "run" or str(path) in lines[0] or "--budget-hours" in lines[0]
    assert not (tmp_path / "out").exists() and not Path("mlflow.db").exists()


def test_project_a_loads_and_every_part_resolves():
    from ddcore.models.registry import list_models

    study = load_study(ROOT / "studies" / "project_a.toml")
    assert study.name == "project-a" and find_study("project-a") == ROOT / "studies" / "project_a.toml"
    assert {section.id for section in study.sections} == {row.group for row in study.rows}
    models = set(list_models())
    for row in study.rows:
        if row.kind == "trial":
            bench.trial_config(row)  # the resolver's checks: preset, settings, protocol
        if row.kind in ("trial", "baseline"):
            assert row.eval_model in models
        if row.kind == "analysis":
            config = bench.analysis_config(row)
            assert set(getattr(config, "models", ())) | set(getattr(config, "pool", ())) <= models
    assert {row.dataset for row in study.rows if row.hardware == "gpu"} == {"mhist"}
    assert all(bench.gpu_seconds(row) < bench.UNKNOWN for row in study.rows)


def test_studies_ship_as_package_data_like_the_experiments():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.toml" in package_data["orchestrator.presets.studies"]
    assert '"studies")' in (ROOT / "setup.py").read_text()


def test_every_benchmark_result_keeps_its_rows_key():
    rows = bench.load_rows(ROOT / "benchmarks" / "rows.toml")
    keys = {row.key() for row in rows}
    lines = bench.load_results(ROOT / "benchmarks" / "results.jsonl")
    results = [line for line in lines if line["kind"] != SCALE_OUT]  # a measurement of a sweep, not of a row
    assert results and all(line["key"] in keys for line in results)
    benchmarks = load_study(ROOT / "benchmarks" / "rows.toml")
    assert benchmarks.name == "benchmarks" and len(benchmarks.rows) == len(rows)
