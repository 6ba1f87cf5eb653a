"""The lossless-IPC search: decisions, grid + bisection against an accuracy oracle, reuse from MLflow,
"not reached", the budget, the random-subset method, and one tiny end-to-end `ddorch lossless` on digits."""

import math
from dataclasses import replace

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ddcore.baseline import full_data_baseline
from ddcore.data import load_dataset
from ddcore.data.base import RealDataset
from ddcore.methods import get_method
from ddcore.methods.datadam import initial_images
from orchestrator.cli import app
from orchestrator.engine.ipc_search import IPCSearch, decide, geometric_grid
from orchestrator.engine.lossless import LosslessConfig, TrialOutcome, resolve_target, search_lossless


def run_oracle(search: IPCSearch, lossless_from: int, parallel: int = 1) -> list[int]:
    """Drive a search with `parallel` evaluations in flight; IPC k is lossless iff k >= lossless_from."""
    evaluated, running = [], []
    while not search.done:
        while len(running) < parallel and (ipc := search.next_ipc(running)) is not None:
            running.append(ipc)
        ipc = running.pop(0)
        search.record(ipc, ipc >= lossless_from)
        evaluated.append(ipc)
    return evaluated


def test_geometric_grid_ends_at_max_ipc():
    assert geometric_grid(50) == [1, 2, 5, 10, 20, 50]
    assert geometric_grid(30) == [1, 2, 5, 10, 20, 30]
    assert geometric_grid(1) == [1]


def test_bisection_finds_planted_threshold_in_minimum_evaluations():
    search = IPCSearch(max_ipc=50)
    assert run_oracle(search, lossless_from=13) == [1, 2, 5, 10, 20, 15, 12, 13]  # grid to 20, then 3 halvings
    assert search.smallest_lossless == 13
    for planted in range(1, 51):
        search = IPCSearch(max_ipc=50)
        evaluated = run_oracle(search, planted)
        grid_part = [ipc for ipc in geometric_grid(50) if ipc < planted] + [
            min(g for g in geometric_grid(50) if g >= planted)
        ]
        lo, hi = (grid_part[-2] if len(grid_part) > 1 else 0), grid_part[-1]
        # grid up to the first lossless point, then at most ceil(log2(hi - lo)): hi - lo candidates remain
        assert search.smallest_lossless == planted
        assert len(evaluated) <= len(grid_part) + (math.ceil(math.log2(hi - lo)) if hi - lo > 1 else 0)
        assert len(set(evaluated)) == len(evaluated)  # nothing evaluated twice
        parallel = IPCSearch(max_ipc=50)
        run_oracle(parallel, planted, parallel=3)
        assert parallel.smallest_lossless == planted


def test_not_reached_when_every_ipc_is_lossy():
    search = IPCSearch(max_ipc=30)
    assert run_oracle(search, lossless_from=31) == [1, 2, 5, 10, 20, 30]
    assert search.done and search.smallest_lossless is None


def test_tolerance_and_seed_count_change_the_decision():
    # mean 98.9 %, target 99.2 %: lossy with no tolerance, lossless with 0.5 points of tolerance
    strict = decide(0.989, 0.002, seeds=3, threshold=0.992)
    tolerant = decide(0.989, 0.002, seeds=3, threshold=0.992 - 0.005)
    assert not strict.lossless and tolerant.lossless
    # same mean and spread: 2 seeds give a wide t-interval that straddles the threshold, 20 seeds do not
    few = decide(0.993, 0.002, seeds=2, threshold=0.992)
    many = decide(0.993, 0.002, seeds=20, threshold=0.992)
    assert few.lossless and many.lossless
    assert few.within_noise and not many.within_noise
    assert few.high - few.low > 5 * (many.high - many.low)
    # t-interval: mean ± t(0.975, n-1) * s / sqrt(n), s the sample std (population std * sqrt(n/(n-1)))
    assert many.high - many.mean == pytest.approx(2.093 * 0.002 * math.sqrt(20 / 19) / math.sqrt(20), rel=1e-3)
    assert decide(0.999, 0.0, seeds=1, threshold=0.5).within_noise  # one seed: no interval, always noise


class OracleExecutor:
    """Runs nothing: answers from an accuracy curve, logging what `run_trial` logs into the child run."""

    def __init__(self, accuracy_at, std: float = 0.001):
        self.accuracy_at, self.std = accuracy_at, std
        self.queue, self.submitted = [], []

    def submit(self, request):
        self.submitted.append((request.method, request.ipc))
        self.queue.append(request)

    def wait_one(self):
        request = self.queue.pop(0)
        mean = self.accuracy_at(request.method, request.ipc)
        if mean is None:  # the trial fails, as `execute` reports a failure
            request.tracker.finish(failure="ValueError: boom")
            return request, TrialOutcome("failed", note="ValueError: boom")
        model = request.trial.eval.models[0]
        request.tracker.log_metrics({f"acc_{model}_mean": mean, f"acc_{model}_std": self.std})
        request.tracker.finish()
        return request, TrialOutcome("finished", mean, self.std)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One MLflow database for the oracle tests (creating one takes seconds); each test its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def oracle_config(store: str, experiment: str, **changes) -> LosslessConfig:
    values = dict(
        dataset="digits",
        methods=("datadam", "random"),
        max_ipc=50,
        target_accuracy=98.0,
        eval_seeds=3,
        max_eval_seeds=3,  # fixed seeds, decided on the test set: what these tests were written for
        selection="test",
        max_concurrent=1,
        iterations=10,
        device="cpu",
        tracking_uri=store,
        experiment=experiment,
    )
    values.update(changes)
    return LosslessConfig(**values)


def planted(method: str, ipc: int) -> float:
    """DataDAM lossless from IPC 13, random from 40 (accuracies as fractions)."""
    return 0.985 if ipc >= (13 if method == "datadam" else 40) else 0.90


def test_at_most_left_bounds_the_evaluations_still_to_come():
    for max_ipc in (1, 7, 50, 100):
        for lossless_from in range(1, max_ipc + 2):
            search = IPCSearch(max_ipc)
            bound = search.at_most_left()
            evaluated = run_oracle(search, lossless_from)
            assert len(evaluated) <= bound and search.at_most_left() == 0
            replay = IPCSearch(max_ipc)
            for done, ipc in enumerate(evaluated, 1):
                replay.record(ipc, ipc >= lossless_from)
                assert len(evaluated) - done <= replay.at_most_left()


def test_a_watched_search_shows_every_launch_and_evaluation(workspace, shared_store):
    from rich.console import Console

    from orchestrator.views.live import IPCState, LosslessProgress, LosslessView

    config = oracle_config(shared_store, "watched", methods=("datadam",), max_ipc=20)
    out = workspace / "view.txt"
    with out.open("w") as file:
        view = LosslessView(LosslessProgress("digits", config.methods, 20, 1), Console(file=file, width=120))
        report = search_lossless(config, executor=lambda: OracleExecutor(planted), watch=view)
    assert view.progress.smallest_lossless("datadam") == report.results["datadam"].smallest_lossless == 13
    assert view.progress.count("datadam", IPCState.RUNNING) == 0 and view.progress.trials_left("datadam") == 0
    assert view.progress.count("datadam", IPCState.LOSSLESS, IPCState.LOSSY) == report.launched
    text = out.read_text()
    assert text.count("datadam IPC") == report.launched and "smallest lossless IPC so far: 13" in text


def test_rerun_reuses_finished_trials_and_one_parent_holds_them(workspace, shared_store):
    first = OracleExecutor(planted)
    report = search_lossless(oracle_config(shared_store, "rerun"), executor=lambda: first)
    assert report.results["datadam"].smallest_lossless == 13 and report.results["random"].smallest_lossless == 40
    assert first.submitted.count(("datadam", 13)) == 1 and report.launched == len(first.submitted)
    assert len([m for m, _ in first.submitted if m == "datadam"]) == 8  # grid to 20, then 15, 12, 13
    again = OracleExecutor(planted)
    rerun = search_lossless(oracle_config(shared_store, "rerun"), executor=lambda: again)
    assert again.submitted == [] and rerun.launched == 0
    assert rerun.parent_run_id == report.parent_run_id
    assert all(e.reused for r in rerun.results.values() for e in r.evaluations)
    assert rerun.results["datadam"].smallest_lossless == 13
    client = MlflowClient(report.tracking_uri)
    children = client.search_runs(
        [client.get_experiment_by_name("rerun").experiment_id], f"tags.`mlflow.parentRunId` = '{report.parent_run_id}'"
    )
    assert len(children) == len(first.submitted)
    # a larger tolerance is another search, but its trials are the same: all reused, new decisions
    looser = search_lossless(
        oracle_config(shared_store, "rerun", tolerance=10.0), executor=lambda: OracleExecutor(planted)
    )
    assert looser.launched == 0 and looser.parent_run_id != report.parent_run_id
    assert looser.results["datadam"].smallest_lossless == 1


def test_not_reached_is_reported_with_the_best_accuracy(workspace, shared_store):
    config = oracle_config(shared_store, "not-reached", methods=("random",), max_ipc=20, target_accuracy=99.9)
    report = search_lossless(config, executor=lambda: OracleExecutor(lambda m, ipc: 0.90 + ipc / 1000))
    result = report.results["random"]
    assert result.smallest_lossless is None
    assert result.summary() == "not reached up to max IPC 20 (best: 92.00 % at IPC 20)"
    assert report.plot.is_file() and report.table.is_file()


def test_a_failed_trial_counts_lossy_is_named_and_runs_again_on_rerun(workspace, shared_store):
    config = oracle_config(shared_store, "failed", methods=("datadam",), max_ipc=20)
    report = search_lossless(
        config, executor=lambda: OracleExecutor(lambda m, ipc: None if ipc == 12 else planted(m, ipc))
    )
    result = report.results["datadam"]
    assert result.failed() == [12] and result.smallest_lossless == 13
    assert (
        result.summary()
        == "smallest lossless IPC 13 (98.50 % on 1 set, 3 networks); trial failed at IPC 12, counted lossy"
    )
    again = OracleExecutor(planted)
    rerun = search_lossless(config, executor=lambda: again)
    assert again.submitted == [("datadam", 12)] and rerun.results["datadam"].failed() == []


def test_budget_stops_launching_and_reports_what_is_known(workspace, shared_store):
    ticks = iter(range(0, 100_000, 1000))  # each look at the clock: 1000 s later; budget 1 h
    report = search_lossless(
        oracle_config(shared_store, "budget", methods=("datadam",), budget_hours=1.0),
        executor=lambda: OracleExecutor(planted),
        clock=lambda: next(ticks),
    )
    assert report.budget_spent and 0 < report.launched < 8
    assert report.results["datadam"].summary().startswith("budget spent")


def test_random_subset_is_seeded_real_images_the_same_as_datadams_real_start():
    data = load_dataset("digits")
    method = get_method("random")
    config = method.config(None, "digits", 3).with_overrides(seed=4, iterations=500)  # its one preset
    assert config.iterations == 1  # picking is one step in every budget: one trial, one key
    reports = []
    picked = method.distill(data, config, callback=reports.append)
    again = method.distill(data, config)
    assert torch.equal(picked.images, again.images) and picked.ipc == 3 and len(reports) == 1
    assert picked.labels.tolist() == [c for c in range(10) for _ in range(3)]
    datadam = get_method("datadam").config("paper", "digits", 3).with_overrides(seed=4)
    assert torch.equal(picked.images, initial_images(data, datadam, torch.Generator().manual_seed(4 * 1_000_003)))


@pytest.mark.slow
def test_cli_end_to_end_on_digits_then_rerun_reuses_everything(workspace, shared_store):
    # the target given (digits' measured ConvNetD3 baseline): training it here would double the test's time
    args = [
        "lossless",
        "--dataset",
        "digits",
        "--method",
        "datadam,random",
        "--model",
        "ConvNetD1",
        "--max-ipc",
        "2",
        "--iterations",
        "4",
        "--eval-epochs",
        "2",
        "--eval-seeds",
        "2",
        "--target-accuracy",
        "98.89",
        "--device",
        "cpu",
        "--tracking-uri",
        shared_store,
        "--experiment",
        "end-to-end",
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "datadam: not reached up to max IPC 2" in result.output  # 2 epochs cannot match the full data
    assert "random: not reached up to max IPC 2" in result.output
    # the live view, printed once at the end off a terminal, after one line per evaluation
    assert result.output.count("Lossless search digits with ConvNetD1 (lossless at 98.89 %)") == 1
    assert "datadam: 0 running, " in result.output and "smallest lossless IPC so far: none" in result.output
    assert result.output.index("datadam IPC 1:") < result.output.index("Lossless search digits")
    client = MlflowClient(shared_store)
    runs = client.search_runs([client.get_experiment_by_name("end-to-end").experiment_id])
    parents = [r for r in runs if "ddorch.lossless" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted((r.data.tags["ddorch.method"], r.data.tags["ddorch.ipc"]) for r in children) == [
        ("datadam", "1"),
        ("datadam", "2"),
        ("random", "1"),
        ("random", "2"),
    ]
    # DataDAM's halfway check (one seed) is far under the threshold: stopped early on purpose, a result
    datadam = [r for r in children if r.data.tags["ddorch.method"] == "datadam"]
    assert {r.info.status for r in datadam} == {"FINISHED"}
    assert {r.data.tags["ddorch.stopped_early"] for r in datadam} == {"true"}
    assert sorted(r.info.run_name for r in children) == [
        "digits-datadam-ipc1",
        "digits-datadam-ipc2",
        "digits-random-ipc1",
        "digits-random-ipc2",
    ]
    assert {r.info.status for r in children if r.data.tags["ddorch.method"] == "random"} == {"FINISHED"}
    assert {"accuracy_vs_ipc.png", "lossless.csv"} <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert (workspace / "runs" / parents[0].info.run_id / "accuracy_vs_ipc.png").stat().st_size > 10_000
    rerun = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert rerun.exit_code == 0, rerun.output
    assert "0 trial(s) run" in rerun.output and "measured elsewhere" in rerun.output


def test_target_is_the_full_data_baseline_trained_once_then_cached(workspace):
    # named after a table row (its full-data batch); 4 classes, so its cache entries are its own
    tiny = RealDataset(
        "digits",
        torch.randn(40, 1, 8, 8),
        torch.arange(4).repeat(10),
        torch.randn(8, 1, 8, 8),
        torch.arange(4).repeat(2),
        ["a", "b", "c", "d"],
        (0.0,),
        (1.0,),
    )
    config = LosslessConfig(dataset="digits", model="ConvNetD1", baseline_seeds=2, device="cpu", selection="test")
    first, again = resolve_target(config, tiny), resolve_target(config, tiny)
    assert "2 seed(s), 0 from the cache" in first.source and "2 seed(s), 2 from the cache" in again.source
    assert (
        first.accuracy == again.accuracy == full_data_baseline(tiny, "ConvNetD1", (0, 1), device="cpu")[0].accuracy_mean
    )
    given = resolve_target(replace(config, target_accuracy=99.49), tiny)
    assert given.accuracy == pytest.approx(0.9949) and "measured elsewhere" in given.source


def test_bad_input_is_one_line(workspace):
    result = CliRunner().invoke(app, ["lossless", "--dataset", "digits", "--max-ipc", "5000"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "max IPC 5000 is more than the smallest class" in result.output
    result = CliRunner().invoke(app, ["lossless", "--method", "datadam,nope"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "unknown method 'nope'" in result.output
