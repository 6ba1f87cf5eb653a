"""Cross-architecture matrix: every cell with mean and std, fair random row, MLflow records, CLI errors."""

import math
import statistics
from dataclasses import replace

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

import ddcore.analyses.cross_arch as cross_arch_module
from ddcore.analyses.cross_arch import (
    RANDOM_ROW,
    CrossArchConfig,
    check_cross_arch,
    cross_architecture,
    random_real_like,
)
from ddcore.data import load_dataset
from ddcore.errors import DDError
from ddcore.synthetic import SyntheticSet
from orchestrator.cli import app
from orchestrator.engine.analyses import ANALYSIS_TAG, COMMAND_TAG, SOURCE_TAG, command_line

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def real_images_as_synthetic(data, ipc=2, **extra):
    picked = data.sample_per_class(ipc, torch.Generator().manual_seed(7)).flatten()
    return SyntheticSet(
        data.train_images[picked],
        data.train_labels[picked],
        "digits",
        "datadam",
        data.class_names,
        data.mean,
        data.std,
        config={"model": "ConvNetD2", "dsa_strategy": "none"},
        **extra,
    )


def test_matrix_has_every_cell_with_mean_and_std(digits, tmp_path):
    models = ("MLP", "ConvNetD1")
    matrix = cross_architecture(
        real_images_as_synthetic(digits), digits, CrossArchConfig(models, seeds=2, epochs=2, device="cpu")
    )
    assert [label for label, _ in matrix.rows()] == ["datadam on ConvNetD2", RANDOM_ROW]
    for _, row in matrix.rows():
        assert list(row) == list(models)
        for result in row.values():
            accuracies = [run.accuracy for run in result.runs]
            assert [run.seed for run in result.runs] == [0, 1]
            assert result.accuracy_mean == pytest.approx(statistics.fmean(accuracies))
            assert result.accuracy_std == pytest.approx(statistics.pstdev(accuracies))
            assert 0 <= result.accuracy_mean <= 1 and math.isfinite(result.accuracy_std)
    metrics = matrix.metrics()
    assert {
        f"xarch_{row}_{m}_{stat}" for row in ("synthetic", "random") for m in models for stat in ("mean", "std")
    } == set(metrics)
    table = matrix.table()
    assert table.columns[1:] == list(models) and len(table.rows) == 4  # two rows, the gain, the training time
    assert all("±" in cell for row in table.rows[:2] for cell in row[1:])
    seconds = [statistics.fmean(run.train_seconds for run in matrix.synthetic[m].runs) for m in models]
    assert table.rows[3] == ["training s per network (set)", *(f"{s:.1f}" for s in seconds)]
    assert matrix.save_plots(tmp_path)[0].stat().st_size > 0


def test_random_row_matches_class_sizes_and_varies_with_seed(digits):
    synthetic = real_images_as_synthetic(digits, ipc=3)
    images0, labels0 = random_real_like(synthetic, digits, seed=0)
    images1, _ = random_real_like(synthetic, digits, seed=1)
    assert torch.bincount(labels0, minlength=10).tolist() == [3] * 10
    assert images0.shape == synthetic.images.shape and not torch.equal(images0, images1)


def test_soft_labels_and_learned_lr_reach_training(digits, monkeypatch):
    calls = []
    real_evaluate = cross_arch_module.evaluate

    def recording(model, images, labels, *args, **kwargs):
        calls.append((labels.dim(), kwargs.get("lr")))
        return real_evaluate(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(cross_arch_module, "evaluate", recording)
    synthetic = real_images_as_synthetic(digits, learned_lr=0.003)
    synthetic.labels = torch.nn.functional.one_hot(synthetic.labels, 10).float() * 0.9 + 0.01
    cross_architecture(synthetic, digits, CrossArchConfig(("MLP",), seeds=1, epochs=1, device="cpu"))
    assert calls == [(2, 0.003), (1, None)]  # synthetic row: soft labels, learned lr; random row: hard, protocol lr


def test_protocol_is_chosen_by_name(digits, amx_cpu):
    config = CrossArchConfig(("MLP",), seeds=1, epochs=1, device="cpu", eval_protocol="datadam", eval_batch_size=16)
    assert cross_architecture(real_images_as_synthetic(digits), digits, config).protocol == "datadam-bs16-1ep"
    bf16 = replace(config, eval_precision="bf16")
    assert cross_architecture(real_images_as_synthetic(digits), digits, bf16).protocol == "datadam-bs16-1ep-bf16"


def test_bf16_the_cpu_lacks_is_refused_unless_forced(digits, avx2_cpu):
    config = CrossArchConfig(("MLP",), seeds=1, epochs=1, device="cpu", eval_precision="bf16")
    with pytest.raises(DDError, match=r"^bf16 evaluation asked for on AMD EPYC \(AVX2\), which lacks"):
        check_cross_arch(real_images_as_synthetic(digits), digits, config)
    check_cross_arch(real_images_as_synthetic(digits), digits, replace(config, force_bf16=True))
    assert command_line("cross_arch", "abc", replace(config, force_bf16=True)).endswith(
        "--eval-precision bf16 --force-bf16"
    )
    assert "--force-bf16" not in command_line("cross_arch", "abc", config)


def test_cli_records_a_child_run_and_errors_are_one_line(tiny_runs, tmp_path):
    uri, run_ids, _ = tiny_runs
    args = [  # a run id prefix, and the flags' old spellings (--models, --seeds) still parse
        "cross-arch",
        run_ids[0][:8],
        "--models",
        "MLP,ConvNetD1",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--tracking-uri",
        uri,
        "--output-dir",
        str(tmp_path),
    ]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "random real" in result.output and "gain over random" in result.output
    client = MlflowClient(uri)
    child = client.search_runs(
        [client.get_run(run_ids[0]).info.experiment_id], f"tags.`{SOURCE_TAG}` = '{run_ids[0]}'"
    )[0]
    assert child.info.status == "FINISHED" and child.data.tags[ANALYSIS_TAG] == "cross_arch"
    assert child.data.tags["mlflow.parentRunId"] == run_ids[0]
    assert child.data.tags[COMMAND_TAG].startswith(
        f"ddorch cross-arch {run_ids[0]} --eval-models MLP,ConvNetD1 --eval-seeds 2 --epochs 1"
    )
    assert "xarch_random_ConvNetD1_std" in child.data.metrics
    assert {a.path for a in client.list_artifacts(child.info.run_id, "cross_arch")} == {
        "cross_arch/table.json",
        "cross_arch/result.json",
        "cross_arch/heatmap.png",
    }

    for bad, message in (
        (["--models", "Nope"], "unknown model 'Nope'"),
        (["--epochs", "0"], "eval epochs must be positive"),
        (["--eval-protocol", "weekly"], "unknown evaluation protocol 'weekly'"),
    ):
        failed = runner.invoke(app, [*args, *bad], env={"COLUMNS": "200"})
        assert failed.exit_code == 2 and message in failed.output and "Traceback" not in failed.output
    missing = runner.invoke(app, ["cross-arch", "no-such-run", "--tracking-uri", uri], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.output
    # bad settings are caught before an analysis run is recorded
    assert len(client.search_runs([child.info.experiment_id], f"tags.`{SOURCE_TAG}` = '{run_ids[0]}'")) == 1


def test_a_trial_can_record_its_own_matrix(tiny_runs):
    uri, run_ids, _ = tiny_runs
    client = MlflowClient(uri)
    run = client.get_run(run_ids[1])  # made with cross_arch_models=["MLP"] (a sweep preset's field)
    assert "xarch_synthetic_MLP_mean" in run.data.metrics and "xarch_random_MLP_std" in run.data.metrics
    assert "cross_arch/heatmap.png" in {a.path for a in client.list_artifacts(run_ids[1], "cross_arch")}
