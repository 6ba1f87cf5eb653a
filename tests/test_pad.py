"""PAD: difficulty scores, the experts' data schedule and cache, the alignment filter, matching, artefacts."""

import os
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ddcore.data import load_dataset
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, evaluate
from ddcore.methods import get_method
from ddcore.methods.pad import (
    CIFAR10_SETTINGS,
    DATASET_CHOICES,
    MAX_EXPERTS,
    FlatNetwork,
    PADConfig,
    kept_entries,
    matching_loss,
    paper_preset,
)
from ddcore.methods.pad.difficulty import DifficultyConfig, difficulty_scores, easiest_first_by_class
from ddcore.methods.pad.experts import DataSchedule, ExpertConfig, obtain_experts
from ddcore.models import get_model
from ddcore.synthetic import SyntheticSet


def separable_dataset(per_class: int = 20, classes: int = 3, size: int = 8) -> RealDataset:
    """Class c lights up row c of noise images: every sample is easy unless mislabelled."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = 0.3 * torch.randn(len(labels), 1, size, size, generator=g)
    images[torch.arange(len(labels)), 0, labels] += 2.0
    return RealDataset(
        "tiny", images, labels, images[:12], labels[:12], [str(c) for c in range(classes)], (0.0,), (1.0,)
    )


def tiny_pad(**changes) -> PADConfig:
    """An MLP student on 8 px images, one expert epoch matched from epoch 0, no augmentation."""
    values = dict(
        ipc=2,
        model="MLP",
        iterations=20,
        log_every=5,
        num_experts=1,
        trajectory_epochs=2,
        expert_batch=16,
        syn_steps=1,
        expert_epochs=1,
        min_start_epoch=0,
        current_max_start_epoch=1,
        max_start_epoch=1,
        lr_images=10.0,
        dsa_strategy="none",
        device="cpu",
    )
    values.update(changes)
    return PADConfig(**values)


def expert_config(epochs: int = 2) -> ExpertConfig:
    return ExpertConfig.for_dataset("tiny", 8, "MLP", epochs=epochs, batch_size=16, dsa_strategy="none")


def test_schedule_subsets_follow_the_fractions_at_the_scaled_epochs():
    schedule = DataSchedule().scaled(10)  # PAD's 20 / 40 / 60 of 100 epochs -> 2 / 4 / 6
    assert (schedule.add_end_epoch, schedule.remove_first_epoch, schedule.remove_second_epoch) == (2, 4, 6)
    assert DataSchedule().scaled(100) == DataSchedule()
    easiest_first = [torch.arange(100) + 1000 * c for c in range(2)]  # class c: 1000c (easiest) .. 1000c + 99
    expected = {
        0: (0, 75),
        1: (0, 87),
        2: (0, 100),
        4: (0, 100),
        5: (10, 100),
        6: (10, 100),
        7: (20, 100),
        9: (20, 100),
    }
    for epoch, (low, high) in expected.items():
        subset = schedule.subset(easiest_first, epoch)
        assert subset.tolist() == list(range(low, high)) + list(range(1000 + low, 1000 + high)), epoch


def test_el2n_ranks_a_mislabelled_sample_hardest_and_is_cached(workspace):
    data = separable_dataset()
    data.train_labels[7] = 2  # a class-0 image labelled 2
    config = DifficultyConfig(model="MLP", networks=1, epochs=15, batch_size=16)
    scores = difficulty_scores(data, config, device="cpu")
    assert scores.el2n.argmax().item() == 7 and scores.grand.argmax().item() == 7
    order = easiest_first_by_class(scores.el2n, data.train_labels, 3)
    assert order[2][-1].item() == 7 and sorted(order[0].tolist()) == [i for i in range(20) if i != 7]
    cached = list((workspace / "cache" / "difficulty").iterdir())
    assert len(cached) == 1
    assert torch.equal(difficulty_scores(data, config, device="cpu").el2n, scores.el2n)


def test_depth_filter_masks_exactly_the_shallow_parameters():
    student = FlatNetwork(get_model("ConvNetD3", 1, 10, 8))
    total = student.num_parameters
    config = tiny_pad(filter="depth", depth_ratio=0.5)
    kept = kept_entries(torch.zeros(total), config)
    assert kept.tolist() == list(range(total // 2, total))
    masked = dict(student.masked_by_depth(0.5))
    assert sum(masked.values()) == total // 2
    assert list(masked)[:2] == ["blocks.0.0.weight", "blocks.0.0.bias"]  # the first convolution, fully
    assert masked["blocks.0.0.weight"] == 128 * 9 and not any(name.startswith("classifier") for name in masked)
    start, target = torch.zeros(total), torch.ones(total)
    student_params = torch.full((total,), 0.5)
    changed_shallow, changed_deep = student_params.clone(), student_params.clone()
    changed_shallow[: total // 2] = 7.0
    changed_deep[-1] = 7.0
    loss = matching_loss(student_params, start, target, config)
    assert loss.item() == pytest.approx(0.25)
    assert matching_loss(changed_shallow, start, target, config).item() == pytest.approx(loss.item())
    assert matching_loss(changed_deep, start, target, config).item() > loss.item()
    assert kept_entries(torch.zeros(total), tiny_pad(filter="none")).numel() == total


def test_loss_filter_keeps_the_largest_errors():
    errors = torch.tensor([5.0, 1.0, 4.0, 2.0])
    kept = kept_entries(errors, tiny_pad(filter="loss", loss_ratio=0.5))
    assert sorted(kept.tolist()) == [0, 2]


def test_one_step_matching_loss_decreases_and_soft_labels_round_trip(workspace):
    data = separable_dataset()
    losses = []
    synthetic = get_method("pad").distill(
        data, tiny_pad(), callback=lambda report: losses.append(report.losses["loss"])
    )
    assert len(losses) == 4 and losses[-1] < losses[0] < 1.0
    assert synthetic.labels.shape == (6, 3) and synthetic.labels.dtype == torch.float32
    assert torch.allclose(synthetic.labels.sum(1), torch.ones(6))
    assert synthetic.hard_labels().tolist() == [0, 0, 1, 1, 2, 2]
    assert synthetic.learned_lr is not None and synthetic.learned_lr != pytest.approx(0.01)
    path = synthetic.save(workspace / "set.pt")
    raw = torch.load(path, weights_only=True)
    assert torch.equal(raw["labels"], synthetic.labels) and raw["learned_lr"] == synthetic.learned_lr
    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.labels, synthetic.labels) and loaded.learned_lr == synthetic.learned_lr
    result = evaluate(
        "MLP",
        loaded.images,
        loaded.labels,
        data,
        EvalProtocol("quick", epochs=2, lr=0.01),
        lr=loaded.learned_lr,
        device="cpu",
    )
    assert 0 <= result.accuracy_mean <= 1
    resumed = get_method("pad").distill(data, tiny_pad(iterations=22), start=loaded, start_iteration=20)
    assert resumed.learned_lr != loaded.learned_lr and resumed.labels.shape == (6, 3)


def test_experts_are_found_in_the_cache_instead_of_retrained(workspace):
    data = separable_dataset()
    config = expert_config()
    first = obtain_experts(data, config, 2, device="cpu")
    assert first.trained_now == [0, 1] and len(first) == 2
    assert first.trajectory(0).shape == (3, first.num_parameters)
    assert not torch.equal(first.trajectory(0)[0], first.trajectory(1)[0])  # experts have their own seeds
    stamps = [os.stat(path).st_mtime_ns for path in first.files]
    again = obtain_experts(data, config, 2, device="cpu")
    assert again.trained_now == [] and [os.stat(path).st_mtime_ns for path in again.files] == stamps
    more = obtain_experts(data, config, 3, device="cpu")
    assert more.trained_now == [2] and [os.stat(path).st_mtime_ns for path in more.files[:2]] == stamps
    assert obtain_experts(data, expert_config(epochs=3), 1, device="cpu").trained_now == [0]  # another key


def test_expert_progress_shows_done_of_total_with_the_cached_ones(workspace, capsys):
    from ddcore.methods.pad.experts import train_expert

    data = separable_dataset()
    obtain_experts(data, expert_config(), 1, device="cpu", progress=True)
    assert "expert 0 (1 of 1 to train, 0 cached)" in capsys.readouterr().err

    def here(_function, tasks):  # what a Ray task does, with this in-memory data set
        return (train_expert(data, config, index, scores) for _, _, config, index, scores in tasks)

    obtain_experts(data, expert_config(), 3, here, device="cpu", progress=True)
    drawn = capsys.readouterr().err
    assert "experts (2 tasks, 2 epochs)" in drawn and "3/3" in drawn and "<" in drawn


def test_missing_or_corrupt_expert_file_is_named(workspace):
    data = separable_dataset()
    bank = obtain_experts(data, expert_config(), 2, device="cpu")
    bank.files[1].write_bytes(b"not a torch file")
    with pytest.raises(DDError, match=f"expert file {bank.files[1]} is corrupt"):
        obtain_experts(data, expert_config(), 2, device="cpu")
    bank.files[1].unlink()
    with pytest.raises(DDError, match=f"expert file {bank.files[1]} is missing"):
        obtain_experts(data, expert_config(), 2, device="cpu")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"expert_epochs": 5}, "expert_epochs 5 is more than the 2 epochs the experts are trained for"),
        (
            {"max_start_epoch": 2, "current_max_start_epoch": 1},
            "max_start_epoch 2 \\+ expert_epochs 1 is more than the 2 epochs",
        ),
        ({"current_max_start_epoch": 0}, "start epochs must satisfy"),
        ({"filter": "width"}, "filter must be one of depth, loss, none"),
        ({"depth_ratio": 1.0}, "depth_ratio must be within"),
        ({"num_experts": 0}, f"num_experts must be within 1..{MAX_EXPERTS} \\(the official buffer holds 100\\), got 0"),
        ({"num_experts": MAX_EXPERTS + 1}, f"num_experts must be within 1..{MAX_EXPERTS} "),
    ],
)
def test_bad_settings_are_one_line(changes, message):
    with pytest.raises(DDError, match=message) as caught:
        tiny_pad(**changes).validate([20, 20, 20])
    assert "\n" not in str(caught.value)


def test_the_official_100_experts_are_accepted():
    tiny_pad(num_experts=100).validate([20, 20, 20])


def window(config) -> tuple[int, int, int]:
    return config.min_start_epoch, config.current_max_start_epoch, config.max_start_epoch


@pytest.mark.parametrize("ipc, row", [(1, 1), (9, 1), (10, 10), (49, 10), (50, 50), (100, 50)])
def test_paper_preset_takes_the_official_row_at_or_below_the_ipc(ipc, row):
    official = asdict(CIFAR10_SETTINGS[row])
    config = paper_preset("fashion_mnist", ipc)  # no choices of ours there: the official row as it is
    assert config.ipc == ipc and {name: getattr(config, name) for name in official} == official
    digits = paper_preset("digits", ipc)  # 10-epoch experts: the row's window scaled, then our choices
    expected = {**asdict(CIFAR10_SETTINGS[row].scaled(10)), **DATASET_CHOICES["digits"]}
    assert {name: getattr(digits, name) for name in expected} == expected and digits.trajectory_epochs == 10
    digits.validate(load_dataset("digits").class_counts())


def test_official_rows_hold_the_configs_values():
    """Spot checks against configs/CIFAR-10/ConvIN/IPC{1,10,50}.yaml, typed in by hand."""
    one, ten, fifty = (paper_preset("fashion_mnist", ipc) for ipc in (1, 10, 50))
    assert window(one) == (0, 4, 4) and (one.lr_lr, one.lr_y, one.threshold, one.depth_ratio) == (1e-7, 5.0, 1.1, 0.0)
    assert window(ten) == (0, 10, 20) and (ten.expansion_end_iteration, ten.batch_syn, ten.lr_y) == (1000, 500, 2.0)
    assert window(fifty) == (0, 20, 40) and (fifty.expert_epochs, fifty.lr_images, fifty.depth_ratio) == (3, 1000, 0.25)
    assert {config.trajectory_epochs for config in (one, ten, fifty)} == {100}  # the official buffers' length


def test_start_window_scales_like_the_data_schedule():
    ten = CIFAR10_SETTINGS[10]
    assert ten.scaled(100) == ten
    half = ten.scaled(50)
    assert window(half) == (0, 5, 10) and replace(half, current_max_start_epoch=10, max_start_epoch=20) == ten
    assert window(CIFAR10_SETTINGS[500].scaled(50)) == (20, 30, 35)
    assert window(CIFAR10_SETTINGS[1].scaled(10)) == (0, 1, 1)  # 0.4 rounds to 0: kept one epoch wide
    for row, epochs in ((ten, 50), (CIFAR10_SETTINGS[500], 50), (CIFAR10_SETTINGS[1], 10)):
        scaled = row.scaled(epochs)
        bounds = dict(zip(("min_start_epoch", "current_max_start_epoch", "max_start_epoch"), window(scaled)))
        tiny_pad(trajectory_epochs=epochs, expert_epochs=scaled.expert_epochs, **bounds).validate([20, 20, 20])
    # the official IPC 10 window ends where the curriculum stops adding hard samples; so does MNIST's, scaled
    mnist = paper_preset("mnist", 10)
    assert window(mnist) == (0, 2, 4) and DataSchedule().scaled(mnist.trajectory_epochs).add_end_epoch == 4


def test_pad_runs_through_ddorch_and_compares_with_datadam(workspace):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import app

    runner = CliRunner()
    quick = [
        "--dataset",
        "digits",
        "--ipc",
        "1",
        "--iterations",
        "2",
        "--eval-seeds",
        "1",
        "--eval-epochs",
        "2",
        "--device",
        "cpu",
        "--model",
        "MLP",
        "--eval-models",
        "MLP",
        "--no-baseline",
        "--dsa-strategy",
        "none",
    ]
    pad = [
        "--method",
        "pad",
        "--set",
        "num_experts=1",
        "--set",
        "trajectory_epochs=2",
        "--set",
        "max_start_epoch=1",
        "--set",
        "current_max_start_epoch=1",
        "--set",
        "expert_epochs=1",
        "--set",
        "syn_steps=2",
        "--set",
        "log_every=1",
    ]
    bad = runner.invoke(app, ["run", *quick, *pad, "--set", "expert_epochs=3"], env={"COLUMNS": "200"})
    assert (
        bad.exit_code == 2
        and "expert_epochs 3 is more than the 2 epochs" in bad.output
        and "Traceback" not in bad.output
    )
    done = runner.invoke(app, ["run", *quick, *pad], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "prepared in" in done.output and "peak memory" in done.output
    assert runner.invoke(app, ["run", *quick], env={"COLUMNS": "200"}).exit_code == 0  # DataDAM
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id], "attributes.status = 'FINISHED'")
    by_method = {run.data.params["method"]: run for run in runs}
    assert set(by_method) == {"pad", "datadam"}
    assert (
        by_method["pad"].data.metrics["experts_trained_now"] == 1 and "prepare_seconds" in by_method["pad"].data.metrics
    )
    assert "prepared/manifest.json" in [a.path for a in client.list_artifacts(by_method["pad"].info.run_id, "prepared")]
    compared = runner.invoke(
        app,
        [
            "compare",
            by_method["pad"].info.run_id,
            by_method["datadam"].info.run_id,
            "--output-dir",
            str(workspace),
        ],
        env={"COLUMNS": "200"},
    )
    assert compared.exit_code == 0, compared.output
    assert "peak memory MiB" in compared.output and "prepare time s" in compared.output and "pad" in compared.output


@pytest.mark.slow
def test_experts_train_as_parallel_ray_tasks_like_in_process(workspace, monkeypatch):
    from ddcore.data import load_dataset
    from orchestrator.engine.cluster import TaskPool, connect

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # workers import the code under test
    data = load_dataset("digits")
    config = ExpertConfig.for_dataset("digits", 8, "MLP", epochs=1, dsa_strategy="none")
    connect(None, num_cpus=2)
    parallel = obtain_experts(data, config, 2, TaskPool(cpus=1).map_unordered)
    assert parallel.trained_now == [0, 1]
    ray_trajectories = [parallel.trajectory(i).clone() for i in range(2)]
    serial = obtain_experts(data, config, 2, device="cpu", refresh=True)
    for index in range(2):
        assert torch.allclose(serial.trajectory(index), ray_trajectories[index], atol=1e-5)


@pytest.mark.slow
def test_experts_command_trains_once_then_reuses_and_logs_to_mlflow_and_pad_finds_them(workspace):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import app

    runner = CliRunner()
    args = [
        "experts",
        "--dataset",
        "digits",
        "--model",
        "MLP",
        "--num-experts",
        "1",
        "--epochs",
        "1",
        "--in-process",
        "--device",
        "cpu",
    ]
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "1 trained now (in this process), 0 from the cache" in first.output
    # the name it prints is the cache folder's (whose key holds the network's fingerprint)
    named = re.search(r"experts of (\S+):", first.output).group(1)
    assert (workspace / "cache" / "experts" / named / "manifest.json").is_file()
    # Every other setting at its default on both sides: `ddorch run --method pad` finds these experts.
    pad = get_method("pad").config("paper", "digits").with_overrides(model="MLP", num_experts=1, trajectory_epochs=1)
    assert get_method("pad").prepare(load_dataset("digits"), pad).metrics["experts_trained_now"] == 0
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 trained now (in this process), 1 from the cache" in again.output
    on_ray = runner.invoke(app, [a for a in args if a != "--in-process"] + ["--refresh"], env={"COLUMNS": "200"})
    assert on_ray.exit_code == 0 and "1 trained now (as Ray tasks)" in on_ray.output
    assert "experts (1 tasks, 1 epochs)" in on_ray.output and "1/1" in on_ray.output  # not trained here
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert len(runs) == 3 and all(run.info.status == "FINISHED" for run in runs)
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "experts")} == {
        "experts/manifest.json",
        "experts/expert_000.pt",
    }
    help_text = runner.invoke(app, ["experts", "--help"], env={"COLUMNS": "200"}).output
    assert "digits 32" in help_text and "mnist 256" in help_text  # the batches the code uses (DatasetSpec)
    bad = runner.invoke(app, [*args, "--score", "loudness"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "unknown difficulty score 'loudness'" in bad.output
