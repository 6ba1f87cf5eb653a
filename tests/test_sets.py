"""Several distilled sets: the variance components by hand, the comparison interval, and `ddorch run
--distill-seeds` (a parent run, one child per set, the result over sets) read by compare and report
beside a single-set run."""

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ddcore.spread import BETWEEN, WITHIN, difference, over_sets
from ddcore.synthetic import SyntheticSet
from orchestrator.cli import app
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Tag

# Network j trained on set i: set means 0.92 and 0.96, grand mean 0.94.
MATRIX = [[0.90, 0.92, 0.94], [0.95, 0.96, 0.97]]


def test_variance_components_match_a_hand_computation():
    s = over_sets(MATRIX)
    # within: squares about the set means (4 + 0 + 4) + (1 + 0 + 1) = 10e-4, over a (n - 1) = 2 x 2
    assert s.within_set_var == pytest.approx(10e-4 / 4)
    # MSB = n sum (m_i - M)^2 / (a - 1) = 3 x (4e-4 + 4e-4) / 1 = 24e-4; between = (MSB - MSW) / n
    assert s.between_set_var == pytest.approx((24e-4 - 2.5e-4) / 3)
    assert s.set_means == pytest.approx((0.92, 0.96)) and s.sets == 2 and s.networks == 3
    assert s.mean_over_sets == pytest.approx(0.94) == s.mean_over_networks
    assert s.std_over_sets == pytest.approx(0.02)  # population std of 0.92 and 0.96
    # all six about 0.94: (16 + 4 + 0 + 1 + 4 + 9) e-4 / 6
    assert s.std_over_networks == pytest.approx((34e-4 / 6) ** 0.5)


def test_components_the_data_cannot_tell_are_unknown_and_a_negative_between_is_zero():
    assert over_sets([[0.9, 0.92]]).between_set_var is None  # one set
    assert over_sets([[0.9], [0.92]]).within_set_var is None  # one network per set
    # Set means vary less than the networks predict: the ANOVA estimate (MSB - MSW) / n < 0 is set to 0.
    assert over_sets([[0.90, 0.96], [0.91, 0.95]]).between_set_var == 0.0
    with pytest.raises(ValueError):
        over_sets([[0.9, 0.92], [0.9]])


def test_a_difference_uses_the_between_set_spread_and_says_when_it_cannot():
    wide = difference(MATRIX + [[0.93, 0.94, 0.95]], [[0.90, 0.91, 0.92]] * 3)
    assert wide.basis == BETWEEN and wide.value == pytest.approx(0.94 - 0.91)
    # Welch on the set means 0.92, 0.96, 0.94 (sd 0.02) and 0.91 x 3 (sd 0): 2 degrees of freedom, t = 4.3027
    assert wide.low == pytest.approx(0.03 - 4.302653 * 0.02 / 3**0.5) and wide.within_noise
    noisy = difference([[0.95], [0.90], [0.97]], [[0.94], [0.92], [0.93]])
    assert noisy.within_noise and "between sets: within noise" in noisy.text()
    single = difference([[0.9703, 0.9690, 0.9720]], [[0.9658, 0.9655, 0.9661]])
    assert single.basis == WITHIN and not single.within_noise
    assert "one set per row: the distillation seed's spread is not in it" in single.text()
    assert difference([[0.97]], [[0.96]]).text() == "+1.00 points (interval unknown: one set and one network on a side)"


RUN = [
    "run",
    "--dataset",
    "digits",
    "--ipc",
    "1",
    "--iterations",
    "2",
    "--model",
    "ConvNetD1",
    "--eval-seeds",
    "2",
    "--eval-epochs",
    "2",
    "--no-baseline",
    "--device",
    "cpu",
]


def invoke(args):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One single-set run (as ever) and one of 2 sets, in a store of their own; (folder, client, single, parent)."""
    import os

    folder = tmp_path_factory.mktemp("sets")
    before = os.getcwd()
    os.chdir(folder)
    os.environ["DDORCH_CACHE_DIR"] = str(folder / "cache")
    try:
        single = invoke(RUN)
        several = invoke([*RUN, "--distill-seeds", "2"])
    finally:
        os.chdir(before)
        del os.environ["DDORCH_CACHE_DIR"]
    assert single.exit_code == 0 and several.exit_code == 0, single.output + several.output
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    parent = next(r for r in runs if Tag.DISTILL_SETS in r.data.tags)
    single_run = next(r for r in runs if Tag.PARENT not in r.data.tags and r is not parent)
    return folder, client, single_run, parent, several.output


def test_the_default_is_one_run_without_children_or_set_metrics(store):
    _, client, single, parent, _ = store
    runs = client.search_runs([single.info.experiment_id])
    assert len(runs) == 4  # the single run, the parent and its two sets
    assert not [r for r in runs if r.data.tags.get(Tag.PARENT) == single.info.run_id]
    assert "distill_seeds" not in single.data.params and schema.DISTILL_SETS not in single.data.metrics
    assert schema.acc_mean("ConvNetD1") in single.data.metrics


def test_seeds_give_distinct_sets_each_a_child_run(store, tmp_path):
    folder, client, _, parent, output = store
    children = sorted(
        client.search_runs([parent.info.experiment_id], schema.tag_filter(Tag.PARENT, parent.info.run_id)),
        key=lambda r: r.data.tags[Tag.DISTILL_SEED],
    )
    assert [c.data.params["method_config.seed"] for c in children] == ["0", "1"]
    assert all(c.info.status == "FINISHED" and c.info.run_name.endswith(f"seed={i}") for i, c in enumerate(children))
    first, second = (
        SyntheticSet.load(client.download_artifacts(c.info.run_id, "synthetic.pt", str(tmp_path / str(i))))
        for i, c in enumerate(children)
    )
    assert not (first.images == second.images).all()
    # The parent: the over-sets summaries, never a single-set headline that could be mistaken for one.
    metrics = parent.data.metrics
    means = [c.data.metrics[schema.acc_mean("ConvNetD1")] for c in children]
    assert metrics[schema.DISTILL_SETS] == 2 and parent.data.params["distill_seeds"] == "2"
    assert metrics[schema.acc_mean_over_sets("ConvNetD1")] == pytest.approx(sum(means) / 2)
    assert metrics[schema.acc_std_over_sets("ConvNetD1")] == pytest.approx(abs(means[0] - means[1]) / 2, abs=1e-6)
    assert {schema.between_set_var("ConvNetD1"), schema.within_set_var("ConvNetD1")} <= set(metrics)
    assert schema.acc_mean("ConvNetD1") not in metrics and schema.acc_std("ConvNetD1") not in metrics
    assert "--distill-seeds 2" in parent.data.tags[Tag.NOTE] and "over 2 sets" in output
    summary = json.loads((folder / "runs" / parent.info.run_id / "summary.json").read_text())
    assert [s["run_id"] for s in summary["sets"]] == [c.info.run_id for c in children]
    assert summary["over_sets"]["ConvNetD1"]["sets"] == 2 and "ANOVA" in summary["over_sets"]["ConvNetD1"]["estimator"]


def test_compare_and_report_show_sets_and_read_a_single_set_run_as_one(store, tmp_path):
    from orchestrator.views.report import build_report

    folder, _, single, parent, _ = store
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ids = [single.info.run_id[:8], parent.info.run_id[:8]]
    result = invoke(["compare", *ids, "--tracking-uri", uri, "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "distilled sets" in result.output and "over networks, 1 set" in result.output
    assert "over 2 sets" in result.output and "ConvNetD1 variance between sets %²" in result.output
    report = build_report(ids, tmp_path / "report", uri)
    text = report.markdown_path.read_text()
    assert "Runs over several distilled sets" in text and "| sets |" in text
    assert any(f"| {parent.info.run_id[:8]} | ConvNetD1 | 2 |" in line for line in text.splitlines())
    assert "images/" in text  # the several-set run shows its first set's grid
    runs = invoke(["runs", "--tracking-uri", uri])
    assert runs.exit_code == 0 and parent.info.run_id[:8] in runs.output


def test_results_of_a_sweep_recorded_before_the_sets_column_read_as_one_set(tmp_path):
    from orchestrator.store.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = Tracker.start(uri, run_name="old", tags={Tag.SWEEP: "old"})
    csv = tmp_path / "results.csv"
    csv.write_text("trial_id,accuracy,iteration,status,child_run_id,error,param.ipc\nt1,0.9,4,finished,,,1\n")
    parent.log_artifact(csv)
    result = invoke(["results", "old", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    header, row = [line for line in result.output.splitlines() if line.strip()][-2:]
    assert header.split() == [
        "trial_id",
        "accuracy",
        "iteration",
        "status",
        "child_run_id",
        "error",
        "distill_sets",
        "val_accuracy",
        "selected_by",
        "param.ipc",
    ]
    assert row.split()[-4:] == ["1", "None", "test", "1"] and "ranked on the test set" in result.output
