"""Bad files and names are caught where they are read: synthetic sets, cached baselines, MLflow filters."""

import json

import pytest
import torch

from ddcore.baseline import full_data_baseline
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.synthetic import SyntheticSet
from orchestrator.store.run_schema import Tag, tag_filter


def tiny_set(**changes) -> SyntheticSet:
    values = {
        "images": torch.randn(4, 1, 8, 8),
        "labels": torch.tensor([0, 0, 1, 1]),
        "dataset": "digits",
        "method": "datadam",
        "class_names": ["a", "b"],
        "mean": (0.0,),
        "std": (1.0,),
    }
    return SyntheticSet(**{**values, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images": torch.full((4, 1, 8, 8), float("nan"))}, "NaN or infinite"),
        ({"labels": torch.tensor([0, 0, 1, 42])}, "class indices in 0..1"),
        ({"labels": torch.tensor([0, 1])}, "2 labels for 4 images"),
        ({"labels": torch.full((4, 3), 0.5)}, "soft labels must be finite, 2 per image"),
        ({"images": torch.zeros(4, 8, 8, dtype=torch.uint8)}, r"float \(N, C, H, W\)"),
    ],
)
def test_a_bad_synthetic_file_is_one_line(tmp_path, changes, message):
    path = tiny_set(**changes).save(tmp_path / "synthetic.pt")
    with pytest.raises(DDError, match=message):
        SyntheticSet.load(path)


def test_a_synthetic_file_without_labels_is_one_line(tmp_path):
    path = tiny_set().save(tmp_path / "synthetic.pt")
    payload = torch.load(path, weights_only=True)
    del payload["labels"]
    torch.save(payload, path)
    with pytest.raises(DDError, match="cannot read synthetic set .*labels"):
        SyntheticSet.load(path)


@pytest.mark.parametrize(
    "content",
    ["", "{", '{"run": {}}', '{"run": {"seed": 0, "accuracy": 5.0, "balanced_accuracy": 0.5, "train_seconds": 1.0}}'],
)
def test_a_broken_or_edited_baseline_cache_entry_is_retrained(tmp_path, monkeypatch, content):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path))
    images, labels = torch.randn(20, 1, 8, 8), torch.arange(2).repeat(10)
    data = RealDataset("digits", images, labels, images[:6], labels[:6], ["a", "b"], (0.0,), (1.0,))
    first, _ = full_data_baseline(data, "MLP", device="cpu")
    (entry,) = (tmp_path / "baselines").glob("*.json")
    entry.write_text(content)
    with pytest.warns(UserWarning, match="ignoring the cached baseline"):
        again, from_cache = full_data_baseline(data, "MLP", device="cpu")
    assert from_cache == [False] and again.runs[0].accuracy == first.runs[0].accuracy
    assert json.loads(entry.read_text())["run"]["accuracy"] <= 1


def test_mlflow_filters_refuse_quotes():
    assert tag_filter(Tag.SWEEP, "digits_datadam") == "tags.`ddorch.sweep` = 'digits_datadam'"
    with pytest.raises(DDError, match="cannot contain quotes"):
        tag_filter(Tag.SWEEP, "a'b")


def test_the_cache_folder_is_given_as_a_value(tmp_path, monkeypatch):
    from ddcore.baseline import cache_dir, caching_in

    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path / "env"))
    with caching_in(tmp_path / "driver"):
        assert cache_dir() == tmp_path / "driver"
        with caching_in(None):  # None leaves it as it is
            assert cache_dir() == tmp_path / "driver"
    assert cache_dir() == tmp_path / "env"


def test_reproduce_flags_are_the_run_commands_options():
    import typer.main

    from orchestrator.cli import app
    from orchestrator.store.reproduce import RUN_FLAGS, _toml_value

    command = typer.main.get_command(app).commands["run"]
    options = {p.name: p.opts[0] for p in command.params if p.opts and p.opts[0].startswith("--")}
    assert RUN_FLAGS == options  # same names, same spellings, same order
    assert list(RUN_FLAGS) == list(options)
    assert RUN_FLAGS["mmd_weight"] == "--lambda" and RUN_FLAGS["eval_protocol"] == "--eval-protocol"
    assert (
        _toml_value("True", "bool") == "true"
        and _toml_value("0,1", "str") == '"0,1"'
        and _toml_value("2", "int") == "2"
    )


def test_a_random_run_logged_with_another_methods_preset_name_reproduces_with_its_own():
    """Before random had one preset (`default`) it answered to official/paper/course, and runs logged those."""
    from orchestrator.store.reproduce import command_from_params

    params = {"dataset": "digits", "method": "random", "preset": "official", "method_config.ipc": "2"}
    command, unchecked = command_from_params(params)
    assert command == "ddorch run --dataset digits --method random --ipc 2" and unchecked == []
    command, _ = command_from_params({**params, "method": "datadam"})  # a preset it has: kept
    assert "--preset official" in command
