"""The benchmark runner's bookkeeping (`orchestrator.engine.bench`, `ddorch bench`): resume by settings,
the load guard, the budget, one run at a time, the generated tables, the rows file, and one real (tiny)
row through run_trial into MLflow."""

import json
import os
import signal
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ddcore.errors import DDError
from ddcore.hardware import machine
from ddcore.methods import get_method, list_methods
from orchestrator.engine import bench as suite
from orchestrator.engine.bench import BenchFolder, Row, RunOptions
from orchestrator.store.trial_cache import TrialCache
from orchestrator.views import bench_tables

ROOT = Path(__file__).resolve().parents[1]
REPO = BenchFolder(ROOT / "benchmarks")  # the repository's rows, results and tables
ROWS = suite.load_rows(REPO.rows)

TINY = Row(
    "tiny_digits",
    "digits",
    preset="paper",
    ipc=1,
    iterations=2,
    eval_model="ConvNetD1",
    eval_seeds=2,
    eval_epochs=2,
    group="tiny",
)


TINY_TOML = """
[[row]]
name = "tiny_digits"
dataset = "digits"
preset = "paper"
ipc = 1
iterations = 2
eval_model = "ConvNetD1"
eval_seeds = 2
eval_epochs = 2
group = "tiny"

[[row]]
name = "tiny_random"
dataset = "digits"
method = "random"
ipc = 1
settings = { seed = 1 }
"""


def write_rows(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "rows.toml").write_text(text)
    return path


def invoke(*args: str):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    return CliRunner().invoke(app, ["bench", *args], env={"COLUMNS": "200"})


@pytest.fixture
def folder(tmp_path):
    """A benchmark folder of the test's own (results, lock and a trial row's parts)."""
    return BenchFolder(tmp_path)


def args(**overrides):
    return RunOptions(**{"device": "cpu", **overrides})


def minutes_left(row, parts):
    """The row's estimate on a machine with no results yet."""
    return suite.work_left(row, [], "here", parts).minutes(row.eval_seeds)


def fake_runner(row, tracking_uri, device, deadline=None):
    return {"protocol": "dc", "per_seed": [0.5, 0.7], "distill_seconds": 1.0, "eval_seconds": 2.0}


def test_rows_already_measured_are_skipped_unless_rerun(tmp_path, folder):
    results = folder.results
    first = suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    again = suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    renamed = Row(**{**suite.asdict(TINY), "name": "same_settings_other_name"})
    assert len(first) == 1 and again == [] and suite.pending([renamed], suite.load_results(results)) == []
    assert (
        len(
            suite.run_suite(
                [TINY], args(rerun=frozenset({TINY.name})), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner
            )
        )
        == 1
    )
    other = Row(**{**suite.asdict(TINY), "ipc": 2})
    assert suite.pending([other], suite.load_results(results)) == [other]
    line = json.loads(results.read_text().splitlines()[0])
    assert line["mean"] == pytest.approx(0.6) and line["seeds"] == 2 and line["key"] == TINY.key()
    assert {"commit", "machine", "torch", "load_start", "load_end", "wall_seconds"} <= set(line)


def test_load_guard_refuses_busy_cores_and_records_an_override(tmp_path, folder):
    results = folder.results
    with pytest.raises(DDError, match="load average 0.90 is above 0.5"):
        suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.9, 0, 0), runner=fake_runner)
    assert not results.exists() or results.read_text() == ""
    (line,) = suite.run_suite([TINY], args(ignore_load=True), folder, loadavg=lambda: (0.9, 0, 0), runner=fake_runner)
    assert line["ignored_load"] is True and line["load_start"] == 0.9


def test_budget_skips_rows_that_would_not_finish_but_distils_a_long_trial_until_it_ends(
    tmp_path, folder, capsys, monkeypatch
):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    full = Row("full", "mnist", kind="baseline", eval_seeds=1)  # a 70-min seed: no piece of it fits
    big = Row("big", "mnist", preset="paper", iterations=20000)
    assert minutes_left(big, folder.parts) > 60
    ran = []

    def runner(row, tracking_uri, device, deadline=None):
        ran.append((row.name, row.eval_seeds, deadline))
        return fake_runner(row, tracking_uri, device)

    calls = dict(loadavg=lambda: (0.1, 0, 0), runner=runner)
    assert suite.run_suite([full, big], args(budget_minutes=5), folder, **calls) == []
    shown = capsys.readouterr().out
    assert "skip full: estimate" in shown and "the distillation until the budget ends, its set kept" in shown
    ((name, seeds, deadline),) = ran
    assert (name, seeds) == ("big", 0) and 0 < deadline - time.monotonic() <= 5 * 60


def test_only_one_suite_run_at_a_time(tmp_path):
    with suite.exclusive(tmp_path / "lock"):
        with pytest.raises(DDError, match="another benchmark run holds"):
            with suite.exclusive(tmp_path / "lock"):
                pass


def test_tables_are_generated_from_the_results_file(tmp_path, folder):
    results = folder.results
    suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\nhand-written part\n")
    bench_tables.update_results_md(suite.load_results(results), [TINY], md)
    bench_tables.update_results_md(suite.load_results(results), [TINY], md)  # regenerating replaces, never duplicates
    text = md.read_text()
    assert text.count(bench_tables.TABLE_BEGIN) == 1 and "hand-written part" in text
    assert "### tiny" in text and "**60.00 ± 10.00**" in text and "50.00, 70.00" in text
    assert "--rows NAME --rerun" in text


def test_a_table_names_the_settings_beyond_the_preset_and_the_wall_time(tmp_path, folder):
    results = folder.results
    bf16 = replace(TINY, name="tiny_bf16", settings={"bf16": True})
    suite.run_suite([bf16], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    (line,) = suite.load_results(results)
    text = bench_tables.render_tables([line], [bf16])
    wall = f"{line['wall_seconds'] / 60:.1f}"
    assert "| datadam (paper) bf16=True | 1 |" in text and f"| 0.0 / 0.0 / {wall} |" in text


def test_one_measurement_fills_every_row_with_its_settings(tmp_path, folder):
    results = folder.results
    suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    twin = replace(TINY, name="tiny_twin", group="twins")  # same settings, another table
    other = replace(TINY, name="tiny_other", ipc=2, group="twins")  # not measured
    text = bench_tables.render_tables(suite.load_results(results), [TINY, twin, other])
    assert "### tiny" in text and "### twins" in text
    assert "| `tiny_twin` (measured as `tiny_digits`) |" in text and "tiny_other" not in text
    retired = bench_tables.render_tables(suite.load_results(results), [other])  # a row no longer listed
    assert "### tiny" in retired and "| `tiny_digits` |" in retired


def test_each_row_starts_with_a_status_line(tmp_path, folder, capsys):
    second = Row("tiny_digits_ipc2", "digits", preset="paper", ipc=2, iterations=2, eval_seeds=2, eval_epochs=2)
    suite.run_suite(
        [TINY, second],
        args(budget_minutes=600),
        folder,
        loadavg=lambda: (0.1, 0, 0),
        runner=fake_runner,
        sleep=lambda seconds: None,
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("row ")]
    assert len(lines) == 2
    assert lines[0].startswith("row 1 of 2: tiny_digits (estimate ") and lines[1].startswith(
        "row 2 of 2: tiny_digits_ipc2"
    )
    assert lines[0].endswith("suite elapsed 0 min, 600 min of the budget left")
    assert suite.status_line(3, 4, second, 61.2, 95.4, None, 0.05) == (
        "row 3 of 4: tiny_digits_ipc2 (estimate 61 min, load 0.05); suite elapsed 95 min, no budget"
    )


def test_a_tiny_row_runs_through_run_trial_into_mlflow(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (line,) = suite.run_suite([TINY], args(tracking_uri=uri), folder, loadavg=lambda: (0.0, 0, 0))
    shown = capsys.readouterr()
    assert "row 1 of 1: tiny_digits" in shown.out
    assert "distil datadam" in shown.err and "train dc" in shown.err  # the trial's own progress, as it runs
    assert line["seeds"] == 2 and len(line["per_seed"]) == 2 and 0 <= line["mean"] <= 1
    assert line["protocol"] == "dc-2ep" and line["network"] == "ConvNetD3" and line["iterations"] == 2
    client = MlflowClient(uri)
    run = client.get_run(line["mlflow_run"])
    assert run.info.status == "FINISHED" and run.data.tags["ddorch.benchmark"] == "tiny_digits"
    assert client.get_experiment(run.info.experiment_id).name == "benchmarks"


def test_every_row_has_a_unique_name_and_valid_settings():
    assert len({row.name for row in ROWS}) == len(ROWS)
    for row in ROWS:
        if row.kind == "trial":
            config = get_method(row.method).config(row.preset, row.dataset, row.ipc).with_overrides(**row.settings)
            config.validate([5000] * 10)  # e.g. PAD's start-epoch window within its experts' epochs


def test_a_second_row_waits_for_the_load_the_first_one_left(tmp_path, folder):
    """The 1-minute load counts the finished row's own threads: the next row waits for it to decay."""
    second = suite.Row("tiny_second", "digits", ipc=2, eval_seeds=1, eval_epochs=1)
    loads = iter([0.1, 1.9, 1.9, 1.2, 0.4, 0.4, 0.4])  # row 1 start/end, waiting, row 2 start/end
    slept = []
    lines = suite.run_suite(
        [TINY, second],
        args(),
        folder,
        loadavg=lambda: (next(loads), 0, 0),
        runner=fake_runner,
        sleep=slept.append,
    )
    assert [line["name"] for line in lines] == [TINY.name, "tiny_second"]
    assert slept == [15, 15] and lines[1]["load_start"] == 0.4


def test_fp32_rows_keep_the_keys_recorded_before_eval_precision_existed():
    """The rows measured in results.jsonl (fp32, before the field) still find their lines: they are
    not rerun. A line's settings columns hold measured values (the preset run, its iterations), so the
    row is taken from ROWS by name; a bf16 row of the same settings is another measurement."""
    recorded = {line["name"]: line["key"] for line in suite.load_results(REPO.results) if "eval_precision" not in line}
    measured = [row for row in ROWS if row.name in recorded]
    assert "mnist_random_ipc10" in {row.name for row in measured}
    assert next(r for r in measured if r.name == "mnist_random_ipc10").key() == "92ef718ab75f3533"
    for row in measured:
        assert row.key() == recorded[row.name], row.name
        assert replace(row, eval_precision="bf16").key() != recorded[row.name]


def test_a_baseline_longer_than_the_budget_goes_on_seed_by_seed(tmp_path, folder, monkeypatch, capsys):
    """Each suite run trains the seeds that fit and caches them; the row is recorded once, whole."""
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    row = Row("digits_full", "digits", kind="baseline", eval_model="ConvNetD1", eval_seeds=3)
    ran = []

    def runner(part, tracking_uri, device, deadline=None):  # trains seeds 0..part.eval_seeds-1, caching new ones
        from ddcore.baseline import _cache_file, baseline_protocol, cached_runs

        for seed in set(range(part.eval_seeds)) - set(cached_runs("digits", "ConvNetD1", (0, 1, 2))):
            ran.append(seed)
            run = {"seed": seed, "accuracy": 0.9, "balanced_accuracy": 0.9, "train_seconds": 60.0 * 75}
            path = _cache_file("digits", 1, 10, 8, "ConvNetD1", baseline_protocol("digits"), seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"run": run}))
        return {**fake_runner(part, tracking_uri, device), "per_seed": [0.9] * part.eval_seeds}

    results = folder.results
    assert minutes_left(row, folder.parts) == pytest.approx(3 * 70)
    calls = dict(loadavg=lambda: (0.1, 0, 0), runner=runner, sleep=lambda s: None)
    assert suite.run_suite([row], args(budget_minutes=150), folder, **calls) == []
    assert ran == [0, 1] and "partial digits_full: 2 of 3 seeds cached" in capsys.readouterr().out
    assert minutes_left(row, folder.parts) == pytest.approx(75)  # as fast as the cached seeds
    assert suite.run_suite([row], args(budget_minutes=70), folder, **calls) == []  # not one seed fits
    assert "skip digits_full" in capsys.readouterr().out
    (line,) = suite.run_suite([row], args(budget_minutes=80), folder, **calls)
    assert ran == [0, 1, 2] and line["seeds"] == 3 and suite.load_results(results) == [line]


def test_a_trial_longer_than_the_budget_goes_on_in_parts(tmp_path, folder, monkeypatch, capsys):
    """Each suite run does the part that fits and keeps it in the row's cache: the distillation alone (here
    one the formula says takes longer than the budget: it runs until the budget ends, and this tiny one ends
    first, with no time left for a seed), then one seed; the last run reads them, runs the rest and records
    the whole row (its wall time unknown: "-"), then drops the cache."""
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    # The formula then says: distillation 2 x 1500 s = 50 min, one seed 2 epochs x 10 images x 120 s = 40 min.
    monkeypatch.setitem(suite.CPU_UNIT_SECONDS, "datadam_iteration", 1500.0)
    monkeypatch.setattr(suite, "CPU_EVAL_EPOCH_IMAGE", 120.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = dict(loadavg=lambda: (0.1, 0, 0), sleep=lambda s: None)
    assert minutes_left(TINY, folder.parts) == pytest.approx(50 + 2 * 40)
    assert suite.run_suite([TINY], args(budget_minutes=30, tracking_uri=uri), folder, **calls) == []
    shown = capsys.readouterr().out
    assert "the distillation until the budget ends, its set kept" in shown
    assert "tiny_digits: the distilled set and 0 of 2 seeds cached;" in shown
    cache = suite._trial_cache(TINY, folder.parts)[0]
    assert cache.folder.parent == folder.parts  # the repository's benchmarks/parts/ outside tests
    assert cache.has_distilled() and minutes_left(TINY, folder.parts) == pytest.approx(2 * 40)
    assert suite.work_left(TINY, [], "here", folder.parts).kept(2) == "set kept"
    assert suite.run_suite([TINY], args(budget_minutes=50, tracking_uri=uri), folder, **calls) == []
    assert "tiny_digits: the distilled set and 1 of 2 seeds cached (" in capsys.readouterr().out
    assert suite.work_left(TINY, [], "here", folder.parts).kept(2) == "set + 1 of 2 seeds kept"
    assert minutes_left(TINY, folder.parts) < 1  # as fast as the cached seed, no distillation left
    (line,) = suite.run_suite([TINY], args(budget_minutes=100, tracking_uri=uri), folder, **calls)
    assert line["from_cache"] and line["seeds"] == 2 and not cache.folder.exists()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    first, *_, last = sorted(runs, key=lambda run: run.info.start_time)
    assert last.data.metrics["distill_seconds"] == first.data.metrics["distill_seconds"] == line["distill_seconds"]
    assert f"/ {line['eval_seconds'] / 60:.1f} / - |" in bench_tables.render_tables([line], [TINY])


def test_a_pad_row_counts_its_experts_until_the_command_it_names_has_trained_them(
    tmp_path, folder, monkeypatch, capsys
):
    """Stage 1 is in the estimate while the cache lacks it; a budget it does not fit gets the
    `ddorch experts` command that trains it alone, and once that has run only the distillation is left.
    The row sets every setting the command has a flag for, so a flag that reached another setting than
    the row's would leave the row's experts untrained."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    expert_settings = {"lr_teacher": 0.02, "expert_batch": 64, "difficulty_score": "grand", "seed": 3}
    settings = {"model": "MLP", "num_experts": 2, "trajectory_epochs": 3, "syn_steps": 2, **expert_settings}
    assert set(suite.EXPERT_FLAGS) <= set(settings)
    row = Row("tiny_pad", "digits", method="pad", ipc=1, iterations=2, eval_model="ConvNetD1", settings=settings)
    work = suite.work_left(row, [], "here", folder.parts)
    # 2 experts x 3 epochs, and the difficulty scores' 2 networks x 2 epochs that order their data
    seconds = 6 * suite.CPU_UNIT_SECONDS["expert_epoch"] + 4 * suite.CPU_UNIT_SECONDS["difficulty_epoch"]
    assert work.prepare == pytest.approx(seconds / 60)
    assert work.upfront == pytest.approx(work.prepare + 2 * 2 * suite.CPU_UNIT_SECONDS["pad_student_step"] / 60)
    assert suite.run_suite([row], args(budget_minutes=work.upfront - 1), folder, runner=fake_runner) == []
    command = suite.experts_command(row)
    assert f"{work.prepare:.0f} min of it trains the experts, alone: {command}" in capsys.readouterr().out
    assert command == (
        "ddorch experts --dataset digits --model MLP --num-experts 2 --epochs 3 --lr 0.02 --batch-size 64"
        " --score grand --seed 3 --in-process --device cpu"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trained = CliRunner().invoke(app, [*command.split()[1:], "--tracking-uri", uri])
    assert trained.exit_code == 0, trained.output
    work = suite.work_left(row, [], "here", folder.parts)
    assert work.prepare == 0 and work.upfront == pytest.approx(2 * 2 * suite.CPU_UNIT_SECONDS["pad_student_step"] / 60)


def test_a_kill_unwinds_the_suite_like_ctrl_c(tmp_path, monkeypatch):
    """So a trial's MLflow run ends FAILED (run_trial's BaseException branch), not left RUNNING: `bench run`
    turns SIGTERM into KeyboardInterrupt, which the command line ends as Ctrl-C (exit status 130)."""
    from orchestrator.cli import bench as bench_cli

    def killed(rows, options, folder):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(bench_cli, "run_suite", killed)
    write_rows(tmp_path, TINY_TOML)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = invoke("run", "--folder", str(tmp_path))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 130  # as Ctrl-C ends a command (typer), where SIGTERM would end the process
    assert not (tmp_path / "RESULTS.md").exists()  # ended where the kill came


def test_the_distill_seeds_field_keeps_every_recorded_key_and_old_lines_render_as_one_set():
    recorded = {line["name"]: line["key"] for line in suite.load_results(REPO.results) if "distill_seeds" not in line}
    assert recorded and all(row.key() == recorded[row.name] for row in ROWS if row.name in recorded)
    assert replace(TINY, distill_seeds=3).key() != TINY.key() == replace(TINY, distill_seeds=1).key()
    table = bench_tables.render_tables(suite.load_results(REPO.results), ROWS)
    assert "| **97.36 ± 0.11** | 1 | 97.50, 97.24, 97.35 |" in table  # mnist_datadam_ipc10, one set
    assert "1 set, ± is the spread of the networks trained on that one set" in table


def test_a_row_of_three_sets_records_the_result_over_sets_and_goes_on_set_by_set(tmp_path, folder, monkeypatch, capsys):
    """Three sets of seeds 0, 1, 2, each a child of one parent run; a budget that fits one set runs that set
    alone (kept in its parts), the next suite run reads it and records the row: mean and std over the sets."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    row = replace(TINY, name="tiny_sets", distill_seeds=3)
    assert [suite.trial_config(one).method_config.seed for one in suite.set_rows(row)] == [0, 1, 2]
    assert suite.set_rows(row)[0].key() == TINY.key()  # its first set is the one-set row's measurement
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = dict(loadavg=lambda: (0.1, 0, 0), sleep=lambda s: None)
    monkeypatch.setitem(suite.CPU_UNIT_SECONDS, "datadam_iteration", 600.0)  # 20 min per set's distillation
    monkeypatch.setattr(suite, "CPU_EVAL_EPOCH_IMAGE", 1e-3)
    assert suite.row_minutes(row, [], "here", folder.parts) == pytest.approx(3 * 20, rel=0.01)
    assert suite.run_suite([row], args(budget_minutes=30, tracking_uri=uri), folder, **calls) == []
    assert "partial tiny_sets: the set of distillation seed 0: seeds 0-1 of 2 cached" in capsys.readouterr().out
    assert suite.row_minutes(row, [], "here", folder.parts) < 45  # the first set is kept
    (line,) = suite.run_suite([row], args(tracking_uri=uri), folder, **calls)
    assert "over 3 sets" in capsys.readouterr().out
    assert line["distill_seeds"] == 3 and line["set_seeds"] == [0, 1, 2] and len(line["set_seconds"]) == 3
    assert len(line["per_set"]) == 3 and line["per_seed"] == [a for s in line["per_set"] for a in s]
    means = [sum(s) / 2 for s in line["per_set"]]
    assert line["set_means"] == pytest.approx(means) and line["mean"] == pytest.approx(sum(means) / 3)
    assert line["std"] == pytest.approx(statistics.pstdev(means)) and line["seeds"] == 2
    assert line["between_set_var"] is not None and line["within_set_var"] is not None
    client = MlflowClient(uri)
    children = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    assert sum(c.data.tags.get("mlflow.parentRunId") == line["mlflow_run"] for c in children) == 3
    assert not list(folder.parts.glob("tiny_sets-*"))  # every set's parts dropped once recorded
    table = bench_tables.render_tables([line], [row])
    assert f"| 3 | {', '.join(f'{100 * m:.2f}' for m in means)} |" in table


def test_comparing_two_lines_uses_the_sets_when_both_have_several():
    one = {"per_seed": [0.9703, 0.9690, 0.9720]}
    other = {"per_seed": [0.9658, 0.9655, 0.9661]}
    assert "one set per row" in suite.compare_lines(one, other).text()
    three = {"per_set": [[0.97, 0.971], [0.966, 0.965], [0.969, 0.968]], "per_seed": []}
    assert suite.compare_lines(three, {**three}).basis == "between sets"
    assert suite.compare_lines(three, three).within_noise


def test_rows_come_from_the_rows_file_in_order_and_unknown_keys_are_refused(tmp_path):
    rows = suite.load_rows(write_rows(tmp_path, TINY_TOML) / "rows.toml")
    assert rows == [TINY, Row("tiny_random", "digits", method="random", ipc=1, settings={"seed": 1})]
    write_rows(tmp_path, TINY_TOML.replace("eval_seeds = 2", "eval_seed = 2"))
    with pytest.raises(DDError, match=r"rows.toml, row 1 \(tiny_digits\): unknown key\(s\) eval_seed; known: "):
        suite.load_rows(tmp_path / "rows.toml")
    write_rows(tmp_path, TINY_TOML.replace('name = "tiny_random"', 'name = "tiny_digits"'))
    with pytest.raises(DDError, match="row name.s. tiny_digits given more than once"):
        suite.load_rows(tmp_path / "rows.toml")


def test_every_measured_row_of_the_rows_file_keeps_the_key_of_its_line():
    """No row needs rerunning: each row with a line of its name in results.jsonl finds that line by its
    settings (a row measured under another name, `measured as`, finds it by the same key)."""
    lines = suite.load_results(REPO.results)
    by_name = {line["name"]: line["key"] for line in lines}
    measured = [row for row in ROWS if row.name in by_name]
    assert len(measured) >= 25
    assert all(row.key() == by_name[row.name] for row in measured), [
        r.name for r in measured if r.key() != by_name[r.name]
    ]
    assert suite.pending(ROWS, lines) == [row for row in ROWS if row.key() not in {line["key"] for line in lines}]


def test_the_table_command_regenerates_the_committed_results_md_byte_for_byte(tmp_path):
    for name in ("rows.toml", "results.jsonl", "RESULTS.md"):
        (tmp_path / name).write_bytes((REPO.path / name).read_bytes())
    result = invoke("table", "--folder", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"regenerated from {len(suite.load_results(REPO.results))} result line(s)" in result.output
    assert (tmp_path / "RESULTS.md").read_bytes() == REPO.results_md.read_bytes()


def test_bench_list_and_table_on_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    write_rows(tmp_path, TINY_TOML)
    listed = invoke("list", "--folder", str(tmp_path), "--device", "cpu")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[:2] for line in listed.output.splitlines()] == [
        ["tiny_digits", "pending"],
        ["tiny_random", "pending"],
    ]
    assert "tiny" in listed.output.splitlines()[0]
    suite.run_suite([TINY], args(), BenchFolder(tmp_path), loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    assert invoke("list", "--folder", str(tmp_path), "--rows", "tiny_digits").output.split()[1] == "done"
    tabled = invoke("table", "--folder", str(tmp_path))
    assert tabled.exit_code == 0 and "from 1 result line(s)" in tabled.output
    assert "| `tiny_digits` | digits | datadam (paper) |" in (tmp_path / "RESULTS.md").read_text()


def test_bench_refuses_bad_input_in_one_line(tmp_path):
    missing = invoke("list", "--folder", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and missing.output.strip().startswith("error: no rows file ")
    write_rows(tmp_path, TINY_TOML)
    for command in (["list", "--rows", "tiny_digits,nosuch"], ["run", "--rows", "nosuch"]):
        result = invoke(*command, "--folder", str(tmp_path))
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert result.output.startswith("error: ")
    # --device is every command's option, checked by its callback as everywhere (typer's usage error).
    result = invoke("run", "--device", "tpu", "--folder", str(tmp_path))
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output, result.output
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "RESULTS.md").exists()


# Minutes `benchmarks/suite.py` estimated before the runner became `ddorch bench` (its SECONDS_PER and
# per-method branches), on a machine with no results and an empty cache: the method's `cost` gives the same.
ESTIMATES_BEFORE = {
    "mnist_full_data": 210.0,
    "mnist_datadam_ipc1": 67.25,
    "mnist_datadam_ipc50": 197.86,
    "mnist_random_ipc10": 22.5,
    "mnist_datadam_ipc10_3sets": 262.5,
    "mnist_pad_ipc10": 241.83,
}


def test_estimates_are_those_of_the_former_suite(tmp_path, monkeypatch):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    by_name = {row.name: row for row in ROWS}
    for name, minutes in ESTIMATES_BEFORE.items():
        assert suite.row_minutes(by_name[name], [], "here", tmp_path / "parts") == pytest.approx(minutes, abs=0.01), (
            name
        )


@pytest.mark.parametrize("name", list_methods())
def test_each_method_states_its_cost_in_units_the_runner_prices(name):
    from ddcore.methods import Cost

    config = get_method(name).config(None, "digits", 2)
    cost = get_method(name).cost(config, "digits")
    assert isinstance(cost, Cost) and cost.images_per_iteration >= config.ipc
    assert suite.priced(cost.per_iteration) >= 0 and suite.priced(cost.preparation) >= 0


def test_a_unit_without_a_price_is_one_line():
    with pytest.raises(DDError, match="no seconds per novel_iteration in the benchmark time model"):
        suite.priced({"novel_iteration": 1.0})
    datadam = get_method("datadam")
    config = datadam.config("paper", "mnist", 50)
    assert datadam.cost(config, "mnist").images_per_iteration == 50 + config.batch_real  # synthetic + real batch


def test_a_scale_out_line_gets_its_own_table_and_leaves_the_accuracy_tables_alone(tmp_path, folder):
    suite.run_suite([TINY], args(), folder, loadavg=lambda: (0.1, 0, 0), runner=fake_runner)
    trial = {"node": "aaaa", "seconds": 10.0}
    line = {
        "name": "scale_out_digits_sweep", "key": "scale_out_digits_sweep", "kind": bench_tables.SCALE_OUT,
        "sweep": "digits_datadam", "one_node_seconds": 200.0, "two_nodes_seconds": 110.0, "ratio": 200 / 110,
        "two_nodes_trials": [trial, {**trial, "node": "bbbb"}], "second_node_trials": 1,
        "pad_second_node_experts_trained": 0, "pad_second_node_prepare_seconds": [0.4, 0.5],
        "machine": "m", "load_start": 0.1, "load_end": 1.5, "commit": "c",
    }  # fmt: skip
    text = bench_tables.render_tables([*suite.load_results(folder.results), line], [TINY])
    assert (
        "### scale out" in text and "| `digits_datadam` | 200.0 | 110.0 | **1.82x** | 1 of 2 | 0 / 0.4, 0.5 |" in text
    )
    assert text.count("| `tiny_digits` |") == 1 and "scale_out_digits_sweep" not in text  # not an accuracy row


def test_a_distillation_longer_than_the_budget_runs_until_it_ends_and_the_next_run_goes_on(
    tmp_path, folder, monkeypatch, capsys
):
    """No piece of the row fits the budget: its distillation runs until the budget ends, keeps its set
    part-way (its MLflow run KILLED, saying so), and the next run distils on from that set and records the row."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    row = replace(TINY, name="tiny_long", iterations=30, eval_seeds=1)  # reported every 10 iterations
    monkeypatch.setitem(suite.CPU_UNIT_SECONDS, "datadam_iteration", 600.0)  # 300 min of distillation
    calls = dict(loadavg=lambda: (0.1, 0, 0), sleep=lambda s: None)
    assert suite.run_suite([row], args(budget_minutes=1e-3, tracking_uri=uri), folder, **calls) == []
    shown = capsys.readouterr().out
    assert "the distillation until the budget ends, its set kept" in shown
    assert "partial tiny_long: paused at iteration 10 of 30" in shown
    assert suite.kept_text(row, [], "here", folder.parts) == "the set at iteration 10 of 30 kept"
    assert suite.row_minutes(row, [], "here", folder.parts) < minutes_left(replace(row, name="other"), tmp_path / "x")
    (kept,) = folder.parts.glob("tiny_long-*")
    _, seconds, on = TrialCache(kept, "").progress_reached()
    here = machine()  # where the set was kept: the rest is priced at its pace, not at the formula's 200 min
    assert on == here and suite.work_left(row, [], here, folder.parts).upfront == pytest.approx(2 * seconds / 60)
    client = MlflowClient(uri)
    (paused,) = client.search_runs([client.get_experiment_by_name("benchmarks").experiment_id])
    assert paused.info.status == "KILLED" and "paused at iteration 10" in paused.data.tags["ddorch.stopped"]
    (line,) = suite.run_suite([row], args(tracking_uri=uri), folder, **calls)
    resumed = client.get_run(line["mlflow_run"])
    assert resumed.data.tags["ddorch.resumed_from"] == f"{paused.info.run_id} at iteration 10"
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "loss")] == [20, 30]
    assert line["distill_seconds"] > 0 and not list(folder.parts.glob("tiny_long-*"))


def test_a_distillation_priced_over_the_budget_that_ends_in_time_evaluates_in_the_time_left(
    tmp_path, folder, monkeypatch, capsys
):
    """The time model says the distillation does not fit, so it runs until the budget ends; it ends well
    before: the same run evaluates the seeds that fit in what is left and, here all of them, records the row."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    row = replace(TINY, name="tiny_priced_long", iterations=30, eval_seeds=1)
    monkeypatch.setitem(suite.CPU_UNIT_SECONDS, "datadam_iteration", 600.0)  # 300 min of distillation
    options = args(budget_minutes=10.0, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (line,) = suite.run_suite([row], options, folder, loadavg=lambda: (0.1, 0, 0), sleep=lambda s: None)
    shown = capsys.readouterr().out
    assert "the distillation until the budget ends, its set kept" in shown and "partial" not in shown
    assert line["seeds"] == 1 and line["distill_seconds"] > 0 and f"done {row.name}" in shown


def test_a_distillation_that_fits_alone_and_ends_sooner_than_priced_evaluates_in_the_time_left(
    tmp_path, folder, monkeypatch, capsys
):
    """The budget fits the distillation (priced at 25 min) but no seed after it (9 min each): the part is
    the distillation alone; it ends in seconds, so the same run evaluates both seeds and records the row
    (as PAD's project-a part would have: its experts took 53 of the 128 minutes priced)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(suite.CPU_UNIT_SECONDS, "datadam_iteration", 750.0)  # 2 iterations: 25 min
    monkeypatch.setattr(suite, "CPU_EVAL_EPOCH_IMAGE", 27.0)  # 2 epochs x 10 images: 9 min a seed
    row = replace(TINY, name="tiny_fits_alone")
    assert minutes_left(row, folder.parts) == pytest.approx(25 + 2 * 9)
    options = args(budget_minutes=30.0, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (line,) = suite.run_suite([row], options, folder, loadavg=lambda: (0.1, 0, 0), sleep=lambda s: None)
    shown = capsys.readouterr().out
    assert "the distillation now" in shown and "partial" not in shown and f"done {row.name}" in shown
    assert line["seeds"] == 2 and not list(folder.parts.glob("tiny_fits_alone-*"))


def test_with_failed_given_a_failing_row_is_named_and_the_others_go_on(folder, capsys):
    broken = replace(TINY, name="tiny_broken", ipc=3)

    def runner(row, tracking_uri, device, deadline=None):
        if row.name == broken.name:
            raise RuntimeError("the worker died")
        return fake_runner(row, tracking_uri, device)

    calls = dict(loadavg=lambda: (0.1, 0, 0), runner=runner, sleep=lambda s: None)
    with pytest.raises(RuntimeError):  # without `failed`, the first failure stops the suite
        suite.run_suite([broken, TINY], args(), folder, **calls)
    failed = []
    (line,) = suite.run_suite([broken, TINY], args(), folder, failed=failed, **calls)
    assert line["name"] == TINY.name and failed == [broken.name]
    assert "failed tiny_broken: RuntimeError: the worker died" in capsys.readouterr().out
