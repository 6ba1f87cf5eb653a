"""The `Method` contract (ddcore/methods/base.py), checked for every registered method, as timm's
tests/test_models.py runs every name of `list_models()`: presets and config defaults, preparation,
the loop's reports, the set it returns, snapshots that are copies, and resuming part-way."""

import math
from dataclasses import fields

import pytest
import torch

from ddcore.data import load_dataset
from ddcore.methods import MethodConfig, StepReport, get_method, list_methods
from ddcore.synthetic import SyntheticSet

IPC, ITERATIONS = 1, 2
# What makes each method tiny beyond IPC and iterations (a method not named here runs its preset as is).
TINY = {
    "datadam": {"batch_real": 8},
    "pad": {
        "model": "ConvNetD1",
        "data_schedule": False,  # no difficulty scores to train for (tests/test_pad.py covers the schedule)
        "num_experts": 1,
        "trajectory_epochs": 2,
        "expert_epochs": 1,
        "min_start_epoch": 0,
        "current_max_start_epoch": 1,
        "max_start_epoch": 1,
        "syn_steps": 2,
        "expert_batch": 256,
        "dsa_strategy": "none",
    },
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_config(name: str) -> MethodConfig:
    method = get_method(name)
    common = {"iterations": ITERATIONS, "device": "cpu", "log_every": 1}
    return method.config(None, "digits", IPC).with_overrides(**common, **TINY.get(name, {}))


def distil(name: str, data, config: MethodConfig, **resume) -> tuple[SyntheticSet, list[StepReport], list]:
    """The set, every report, and per report two snapshots taken inside the callback."""
    reports, snapshots = [], []

    def callback(report: StepReport) -> None:
        reports.append(report)
        snapshots.append((report.snapshot(), report.snapshot()))

    return get_method(name).distill(data, config, callback=callback, **resume), reports, snapshots


@pytest.mark.parametrize("name", list_methods())
def test_presets_and_config_defaults(name, digits):
    method = get_method(name)
    assert method.name == name and issubclass(method.config_class, MethodConfig)
    assert {f.name for f in fields(MethodConfig)} <= {f.name for f in fields(method.config_class)}
    assert method.default_preset == next(iter(method.presets))
    default = method.config(None, "digits", IPC)
    assert default == method.config(method.default_preset, "digits", IPC)
    for preset in method.presets:
        config = method.config(preset, "digits", IPC)
        assert type(config) is method.config_class and config.ipc == IPC
        config.validate(digits.class_counts())
        # No override keeps every value; the logged dict builds the same config back (resume, reproduce).
        assert config.with_overrides() == config
        assert method.config_class(**config.to_dict()) == config


@pytest.mark.parametrize("name", list_methods())
def test_a_tiny_distillation_keeps_the_contract(name, digits, workspace):
    method, config = get_method(name), tiny_config(name)
    prepared = method.prepare(digits, config)
    assert all(path.is_file() for path in prepared.artefacts)
    assert all(math.isfinite(value) for value in prepared.metrics.values())

    synthetic, reports, snapshots = distil(name, digits, config)

    # Reports every `log_every` iterations and after the last, with finite mean losses.
    assert [r.iteration for r in reports] == list(range(1, config.iterations + 1))
    assert all(math.isfinite(value) for r in reports for value in r.losses.values())
    # The set: the data set's classes and image shape, IPC images per class (class-major class indices,
    # or soft labels, which validate checks: finite, one per class).
    synthetic.validate(name)
    synthetic.check_matches(digits)
    assert (synthetic.method, synthetic.dataset, synthetic.ipc) == (name, "digits", IPC)
    if synthetic.labels.dim() == 1:
        assert torch.equal(synthetic.labels, torch.arange(digits.num_classes).repeat_interleave(IPC))
    assert synthetic.images.device.type == "cpu"
    assert synthetic.config == config.to_dict()  # exactly the settings it ran with, defaults included
    assert synthetic.learned_lr is None or synthetic.learned_lr > 0
    # Snapshots are copies: changing one changes neither the next one nor the run.
    first, second = snapshots[-1]
    first.images.add_(1.0)
    assert not torch.equal(first.images, second.images) and torch.equal(second.images, synthetic.images)


@pytest.mark.parametrize("name", list_methods())
def test_a_distillation_resumes_part_way(name, digits, workspace):
    config = tiny_config(name)
    if config.iterations < 2:
        pytest.skip(f"{name} runs one iteration: nothing to resume")
    get_method(name).prepare(digits, config)
    _, _, snapshots = distil(name, digits, config)
    halfway = snapshots[0][0]
    resumed, reports, _ = distil(name, digits, config, start=halfway, start_iteration=1)
    assert [r.iteration for r in reports] == [config.iterations]
    resumed.validate(name)
    resumed.check_matches(digits)
