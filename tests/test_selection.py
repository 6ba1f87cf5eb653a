"""Choices on held-out validation data (issue 36): the split, what learns from it (nothing), what reads it."""

from pathlib import Path

import pytest
import torch

from ddcore.baseline import full_data_baseline
from ddcore.data import load_dataset
from ddcore.data.base import RealDataset, stratified_sample
from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec, evaluate, get_protocol


def rows(images: torch.Tensor) -> set[bytes]:
    """The images as byte strings: digits holds no two equal images across its split (checked below)."""
    return {image.numpy().tobytes() for image in images}


@pytest.fixture(scope="module")
def digits() -> RealDataset:
    return load_dataset("digits").with_validation()


def test_split_is_stratified_fixed_and_disjoint(digits):
    whole = load_dataset("digits")
    assert len(digits.val_labels) == 252 and len(digits.train_labels) == 1258 - 252
    assert digits.val_labels.bincount().tolist() == [25, 26, 25, 26, 26, 25, 25, 25, 24, 25]
    assert load_dataset("digits").with_validation().val_digest == digits.val_digest  # drawn once, the same
    assert len(rows(digits.val_images)) == 252
    assert not rows(digits.val_images) & rows(digits.train_images)
    assert not rows(digits.val_images) & rows(whole.test_images)
    assert torch.equal(digits.test_images, whole.test_images)
    assert digits.training_part.startswith("digits-without-val252-")
    assert digits.with_validation() is digits


def test_stratified_sample_takes_exactly_the_size():
    labels = torch.tensor([0] * 7 + [1] * 2 + [2])
    picked = stratified_sample(labels, 5, seed=0)
    assert len(picked) == 5 and labels[picked].bincount().tolist() == [4, 1]
    with pytest.raises(DDError, match="does not fit"):
        stratified_sample(labels, 10, seed=0)


def test_evaluate_reports_validation_beside_test(digits):
    protocol = get_protocol("full", epochs=1)
    picked = digits.sample_per_class(2).flatten()
    result = evaluate("MLP", digits.train_images[picked], digits.train_labels[picked], digits, protocol, (0, 1), "cpu")
    assert all(0 <= run.val_accuracy <= 1 for run in result.runs)
    assert result.val_accuracy_mean is not None and result.val_accuracy_mean != result.accuracy_mean
    whole = evaluate(
        "MLP", torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), load_dataset("digits"), protocol, (0,), "cpu"
    )
    assert whole.val_accuracy_mean is None and whole.runs[0].val_accuracy is None


def test_baseline_learns_only_the_training_part(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path))
    import ddcore.baseline

    seen = []
    real = ddcore.baseline.train_and_test
    monkeypatch.setattr(
        ddcore.baseline, "train_and_test", lambda m, images, *a, **k: seen.append(images) or real(m, images, *a, **k)
    )
    result, _ = full_data_baseline(digits, "MLP", protocol=get_protocol("full", epochs=1), device="cpu")
    assert len(seen[0]) == 1006 and not rows(seen[0]) & rows(digits.val_images)
    assert result.runs[0].val_accuracy is not None
    assert digits.training_part in str(next(tmp_path.rglob("*.json")))  # cached apart from the whole-set baseline


# --- what learns: distillation, PAD's experts and difficulty scores, the baseline, through the real paths ---


def test_a_val_trial_learns_nothing_from_the_validation_part(workspace, monkeypatch):
    import ddcore.baseline
    from ddcore.methods import get_method
    from orchestrator.engine.trial import TrialConfig, run_trial
    from orchestrator.store.tracking import Tracker

    held = load_dataset("digits").with_validation()
    datadam = type(get_method("datadam"))
    seen = {}
    distill, train = datadam.distill, ddcore.baseline.train_and_test
    monkeypatch.setattr(
        datadam, "distill", lambda self, data, *a, **k: seen.setdefault("distil", data) and distill(self, data, *a, **k)
    )
    monkeypatch.setattr(
        ddcore.baseline,
        "train_and_test",
        lambda m, images, *a, **k: seen.setdefault("baseline", images) is None or train(m, images, *a, **k),
    )
    method_config = (
        get_method("datadam")
        .config("paper", "digits", 1)
        .with_overrides(iterations=2, batch_real=8, model="MLP", init="real", device="cpu", log_every=1)
    )
    trial = TrialConfig(
        "digits", "datadam", method_config, "paper", EvalSpec(("MLP",), seeds=2, epochs=1), selection="val"
    )
    monkeypatch.setattr(
        ddcore.baseline, "baseline_protocol", lambda dataset, batch=None: get_protocol("full", epochs=1)
    )
    tracker = Tracker.start(f"sqlite:///{workspace / 'mlflow.db'}", run_name="val")
    result = run_trial(trial, tracker, progress=False, output_dir=workspace / "runs", report_every=1)
    assert len(seen["distil"].train_labels) == 1006 and not rows(seen["distil"].train_images) & rows(held.val_images)
    assert len(seen["baseline"]) == 1006 and not rows(seen["baseline"]) & rows(held.val_images)
    run = tracker.client.get_run(result.run_id)
    assert run.data.params["val_size"] == "252" and run.data.params["val_digest"] == held.val_digest
    assert {"val_acc_MLP_mean", "val_acc_MLP_std", "baseline_val_acc_MLP", "acc_MLP_mean"} <= run.data.metrics.keys()
    assert run.data.params["selection"] == "val" and run.data.metrics["eval_networks"] == 2
    steps = tracker.client.get_metric_history(result.run_id, "val_eval_accuracy")
    assert [m.step for m in steps] == [1, 2]  # the quick evaluation and the final set


def test_pad_experts_and_difficulty_never_see_the_validation_part(digits, tmp_path, monkeypatch):
    import importlib
    from dataclasses import replace

    import ddcore.methods.pad.difficulty as difficulty

    experts = importlib.import_module("ddcore.methods.pad.experts")  # the package's `experts` is a function

    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path))
    seen = []
    train, score = experts.train_expert, difficulty.train_network
    monkeypatch.setattr(
        experts, "train_expert", lambda data, *a, **k: seen.append(data.train_images) or train(data, *a, **k)
    )
    monkeypatch.setattr(
        difficulty, "train_network", lambda net, images, *a, **k: seen.append(images) or score(net, images, *a, **k)
    )
    config = experts.ExpertConfig.for_dataset("digits", 8, "MLP", epochs=1, batch_size=64, dsa_strategy="none")
    config = replace(config, difficulty=replace(config.difficulty, networks=1, epochs=1))
    bank = experts.obtain_experts(digits, config, 1, device="cpu")
    # a Ray task loads the data set itself: it holds the same part out, by the config's digest
    experts._train_expert_task("digits", None, bank.config, 1, torch.zeros(1006))
    assert len(seen) == 3 and all(len(images) == 1006 and not rows(images) & rows(digits.val_images) for images in seen)
    assert bank.config.holdout == f"252:{digits.val_digest}"
    whole = experts.with_architecture(replace(bank.config, holdout=""), 1, 10)
    assert whole.key() != bank.config.key()  # experts of the whole training set are cached apart


# --- what chooses: ASHA's metric, the sweep's best, the lossless decision ---------------------------


def fake_evaluate(val_of, test_of):
    """`evaluate` without training: seed s scores val_of(s) on the validation part, test_of(s) on the test set."""
    from ddcore.evaluate import EvalResult, SeedRun

    def evaluate(model, images, labels, data, protocol, seeds, *args, **kwargs):
        runs = [SeedRun(s, test_of(s), test_of(s), 0.0, val_of(s)) for s in seeds]
        return EvalResult(model, protocol.name, 0, runs)

    return evaluate


def test_asha_receives_the_validation_metric_and_the_sweep_chooses_on_it(workspace, monkeypatch):
    from types import SimpleNamespace

    import ray
    from ray import tune

    import orchestrator.engine.trial as trial_module
    from orchestrator.engine.experiments import ExperimentPreset, SearchSpace
    from orchestrator.engine.sweep import SweepContext, _trial, metric, record_in_parent, summarize
    from orchestrator.store.tracking import Tracker

    preset = ExperimentPreset(
        "tiny",
        "digits",
        "datadam",
        "unused",
        eval=EvalSpec(("MLP",), seeds=1, epochs=1),
        report_every=1,
        fixed={"ipc": 1, "iterations": 2, "batch_real": 8, "model": "MLP"},
    )
    assert preset.selection == "val" and metric(preset) == "val_eval_accuracy"
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    parent = Tracker.start(uri, run_name="sweep")
    context = SweepContext(uri, "Default", parent.run_id, str(workspace / "runs"), None, device="cpu")
    reports = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node"))
    evaluated = fake_evaluate(lambda s: 0.95, lambda s: 0.97)
    baseline = lambda data, model, **k: (evaluated(model, None, None, data, get_protocol("full"), (0,)), [True])  # noqa: E731
    monkeypatch.setattr(trial_module, "full_data_baseline", baseline)
    results = []
    for trial_id, (val, test) in {"a": (0.9, 0.5), "b": (0.6, 0.8)}.items():  # the orderings differ
        monkeypatch.setattr(tune, "get_context", lambda t=trial_id: SimpleNamespace(get_trial_id=lambda: t))
        monkeypatch.setattr(trial_module, "evaluate", fake_evaluate(lambda s, v=val: v, lambda s, t=test: t))
        reports.clear()
        _trial({"lr_images": test}, preset, context)
        assert all(report["val_eval_accuracy"] == val for report in reports)
        assert reports[-1]["eval_accuracy"] == test
        assert len(reports) == 2  # iteration 1 (an ASHA rung), then the final set at 2
        results.append(SimpleNamespace(metrics=reports[-1], error=None, path=trial_id, config={"lr_images": test}))
    rows = summarize(results, 1, "val")
    assert [r.val_accuracy for r in rows] == [0.9, 0.6] and rows[0].selected_by == "val"
    record_in_parent(parent, rows, SearchSpace("none", ()), workspace / "runs")
    metrics = parent.client.get_run(parent.run_id).data.metrics
    assert metrics["best_val_eval_accuracy"] == 0.9 and metrics["chosen_trial_test_accuracy"] == 0.5
    assert metrics["max_test_accuracy_of_trials"] == 0.8 and metrics["winners_curse"] == pytest.approx(0.3)


class InProcess:
    """The lossless search's executor, running `execute` here (no Ray)."""

    def __init__(self, output_dir):
        self.output_dir, self.queue = str(output_dir), []

    def submit(self, request):
        self.queue.append(request)

    def wait_one(self):
        from orchestrator.engine.lossless import execute

        request = self.queue.pop(0)
        return request, execute(request, self.output_dir)


def lossless_config(**changes):
    from orchestrator.engine.lossless import LosslessConfig

    values = dict(
        dataset="digits", methods=("random",), model="MLP", max_ipc=1, eval_epochs=1, target_accuracy=90.0,
        early_stop_margin=None, device="cpu",
    )  # fmt: skip
    return LosslessConfig(**{**values, "tracking_uri": f"sqlite:///{Path.cwd() / 'mlflow.db'}", **changes})


@pytest.mark.parametrize(
    "vals, networks",
    [
        ([0.5, 0.52], 2),  # far under the threshold: decided (lossy) on 2 networks
        ([0.95, 0.96, 0.955], 3),  # 2 networks straddle 90 %, 3 do not
        ([0.88, 0.92, 0.89, 0.91, 0.9], 5),  # within noise to the end: up to --max-eval-seeds
    ],
)
def test_lossless_decides_on_validation_adding_seeds_only_while_undecided(workspace, monkeypatch, vals, networks):
    import orchestrator.engine.trial as trial_module
    from orchestrator.engine.lossless import build_request, execute
    from orchestrator.store.tracking import Tracker

    monkeypatch.setattr(trial_module, "evaluate", fake_evaluate(lambda s: vals[s], lambda s: 0.99))
    config = lossless_config()
    assert (config.selection, config.eval_seeds, config.max_eval_seeds) == ("val", 2, 5)
    request = build_request(config, "random", 1, threshold=0.9)
    request.tracker = Tracker.start(config.tracking_uri, run_name="ipc1")
    outcome = execute(request, str(workspace / "runs"))
    assert outcome.seeds == networks and outcome.accuracy_mean == pytest.approx(sum(vals) / len(vals))
    assert outcome.test_accuracy == pytest.approx(0.99)  # reported; lossless by test, it is decided on validation
    metrics = request.tracker.client.get_run(request.tracker.run_id).data.metrics
    assert metrics["eval_networks"] == networks and metrics["val_acc_MLP_mean"] == outcome.accuracy_mean


def test_lossless_answer_reports_test_and_a_rerun_reuses_the_seeds_it_took(workspace, monkeypatch):
    import orchestrator.engine.trial as trial_module
    from orchestrator.engine.lossless import search_lossless

    monkeypatch.setattr(trial_module, "evaluate", fake_evaluate(lambda s: [0.95, 0.96, 0.955][s], lambda s: 0.99))
    report = search_lossless(lossless_config(), executor=lambda: InProcess(workspace / "runs"))
    summary = report.results["random"].summary()
    assert summary == "smallest lossless IPC 1 (95.50 % on the validation part on 1 set, 3 networks; test 99.00 %)"
    assert report.networks() == (3, 5)
    parent = report.parent_run_id
    from mlflow.tracking import MlflowClient

    assert MlflowClient(report.tracking_uri).get_run(parent).data.metrics["eval_networks_saved"] == 2
    rerun = search_lossless(lossless_config(), executor=None)  # everything reused: no executor is made
    (evaluation,) = rerun.results["random"].evaluations
    assert rerun.launched == 0 and evaluation.reused and evaluation.decision.seeds == 3
    assert evaluation.test_accuracy == pytest.approx(0.99)


# --- what readers show: both columns, which chose; runs recorded before still read --------------------


def fake_run(params: dict, metrics: dict):
    from types import SimpleNamespace

    return SimpleNamespace(
        info=SimpleNamespace(run_id="0123456789"), data=SimpleNamespace(params=params, metrics=metrics)
    )


def test_report_chooses_on_validation_where_every_run_has_it_and_shows_the_winners_curse():
    from orchestrator.views.report import Trial, summary_section, winners_curse

    params = {"eval_models": "['MLP']", "dataset": "digits", "method": "datadam", "method_config.ipc": "1"}
    by_val = Trial(fake_run({**params, "selection": "val"}, {"acc_MLP_mean": 0.80, "val_acc_MLP_mean": 0.90}))
    by_test = Trial(fake_run({**params, "selection": "val"}, {"acc_MLP_mean": 0.85, "val_acc_MLP_mean": 0.70}))
    text = summary_section([by_val, by_test]).text[0]
    assert text.startswith("Best by validation: 80.00 % test accuracy")
    old = Trial(fake_run(params, {"acc_MLP_mean": 0.85}))  # recorded before validation parts: test chose
    assert summary_section([by_val, old]).text[0].startswith("Best: 85.00 %")
    curse = {"best_val_eval_accuracy": 0.9, "chosen_trial_test_accuracy": 0.8, "max_test_accuracy_of_trials": 0.85}
    (line,) = winners_curse(fake_run({}, {**curse, "winners_curse": 0.05}))
    assert "80.00 % test accuracy" in line and "85.00 %" in line and "5.00 points more" in line
    assert winners_curse(fake_run({}, {"best_eval_accuracy": 0.9})) == []  # a sweep ranked on the test set


def test_the_live_view_shows_both_columns_and_says_which_chose():
    from rich.console import Console

    from orchestrator.views.live import SweepProgress

    progress = SweepProgress("s", 2, 10, clock=lambda: 0.0, selection="val")
    progress.result("a", {"lr": 1}, {"iteration": 10, "val_eval_accuracy": 0.9, "eval_accuracy": 0.5})
    progress.result("b", {"lr": 2}, {"iteration": 10, "val_eval_accuracy": 0.6, "eval_accuracy": 0.8})
    assert progress.best().config == {"lr": 1}
    console = Console(width=200, record=True)
    console.print(progress.render())
    text = console.export_text()
    assert (
        "val % (chose)" in text
        and "test %" in text
        and "best so far: 90.00 %" in text
        and "ranked on the validation part" in text
    )


def test_run_with_selection_val_picks_its_checkpoint_on_validation(workspace):
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from orchestrator.cli import app

    args = ["run", "--dataset", "digits", "--ipc", "1", "--iterations", "4", "--model", "ConvNetD1", "--eval-seeds",
            "2", "--eval-epochs", "1", "--device", "cpu", "--no-baseline", "--checkpoint-eval-every", "2"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--selection", "val"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "best checkpoint (ConvNetD1, selected on the validation part):" in result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    metrics = run.data.metrics
    assert "acc_ConvNetD1_best_checkpoint_val_selected" in metrics
    assert "acc_ConvNetD1_best_checkpoint_test_selected" not in metrics
    by_step = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "checkpoint_val_acc_ConvNetD1_mean")}
    best = max(by_step, key=lambda step: (by_step[step], -step))
    assert metrics["acc_ConvNetD1_best_checkpoint_iteration"] == best  # chosen on validation
    bad = CliRunner().invoke(app, [*args, "--selection", "train"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "'train' is not one of" in bad.output
