"""`resolve_trial`: one precedence for every caller, recorded per setting, and every value checked."""

from dataclasses import fields

import pytest

from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method
from orchestrator.engine.resolve import PRECEDENCE, Layers, resolve_trial
from orchestrator.engine.trial import TrialConfig, trial_key

EVAL = EvalSpec(("ConvNetD1",), seeds=1, epochs=2)


def resolve(layers: Layers, preset: str | None = "paper", ipc: int | None = None) -> TrialConfig:
    return resolve_trial("datadam", "digits", preset, ipc, EVAL, layers)


def test_the_precedence_is_named_once_by_the_layers_order():
    assert PRECEDENCE == ("preset", "fixed", "sampled", "flags", "--set")
    assert len(PRECEDENCE) == 1 + len(fields(Layers))


@pytest.mark.parametrize("top", range(len(fields(Layers))))
def test_each_layer_overrides_the_ones_before_it(top):
    """Layers 0..top all set `iterations` (layer i to 10 + i): the highest given wins and is recorded."""
    names = [f.name for f in fields(Layers)]
    trial = resolve(Layers(**{name: {"iterations": 10 + i} for i, name in enumerate(names[: top + 1])}))
    assert trial.method_config.iterations == 10 + top
    assert trial.sources == {"iterations": PRECEDENCE[top + 1]}


def test_a_layer_not_given_or_none_keeps_the_one_below():
    preset = get_method("datadam").config("paper", "digits")
    trial = resolve(Layers(fixed={"iterations": 7}, flags={"iterations": None}))
    assert trial.method_config.iterations == 7 and trial.sources == {"iterations": "fixed"}
    plain = resolve(Layers())
    assert plain.method_config == preset and plain.sources == {}


def test_only_values_that_differ_from_the_preset_are_recorded():
    preset = get_method("datadam").config("paper", "digits")
    trial = resolve(Layers(flags={"seed": 0, "device": "cpu", "iterations": preset.iterations + 1}))
    assert trial.sources == {"device": "flags", "iterations": "flags"}


def test_the_preset_per_ipc_defaults_follow_the_ipc_that_wins():
    """DataDAM's images lr is 10 from IPC 100 up: a layer's IPC picks it, as the caller's IPC does."""
    assert resolve(Layers(), ipc=100).method_config.lr_images == 10.0
    trial = resolve(Layers(settings={"ipc": 100}), ipc=2)
    assert (trial.method_config.ipc, trial.method_config.lr_images) == (100, 10.0)
    assert trial.sources == {"ipc": "--set"}  # lr_images came with the preset, not from a layer


def test_no_eval_models_means_the_network_distilled_with():
    trial = resolve_trial("datadam", "digits", None, 1, EvalSpec(), Layers(flags={"model": "ConvNetD1"}))
    assert trial.eval.models == ("ConvNetD1",) and trial.preset == "paper"  # the method's first preset


def test_the_key_of_a_fixed_config_is_unchanged():
    """Hashed before the resolver and EvalSpec existed (the same trial as test_eval_precision's)."""
    trial = resolve_trial("datadam", "digits", "paper", 2, EvalSpec(("ConvNetD3",), epochs=3))
    assert trial_key(trial) == "f480a7caf95ddacf39ec"
    params = trial.to_dict()
    assert params["eval_models"] == ["ConvNetD3"] and params["eval_epochs"] == 3 and "eval" not in params
    assert "sources" not in params


@pytest.mark.parametrize(
    "method, preset, layers, message",
    [
        ("random", "paper", Layers(), "unknown preset 'paper' for random; known: default"),
        ("datadam", None, Layers(flags={"model": "NoSuchNet"}), "unknown model 'NoSuchNet'"),
        ("datadam", None, Layers(settings={"ipc": "ten"}), "ipc must be an integer, got 'ten'"),
        ("datadam", None, Layers(sampled={"lr_images": -1.0}), "lr_images must be positive"),
        ("datadam", None, Layers(fixed={"colour": 1}), "unknown setting(s) colour"),
    ],
)
def test_bad_values_are_one_line_errors(method, preset, layers, message):
    with pytest.raises(DDError) as error:
        resolve_trial(method, "digits", preset, None, EVAL, layers)
    assert message in str(error.value)


def test_bad_evaluation_and_image_size_are_refused_without_the_data():
    with pytest.raises(DDError, match="unknown model 'NoSuchNet'"):
        resolve_trial("datadam", "digits", None, 1, EvalSpec(("ConvNetD1", "NoSuchNet")))
    with pytest.raises(DDError, match="unknown evaluation protocol 'weekly'"):
        resolve_trial("datadam", "digits", None, 1, EvalSpec(protocol="weekly"))
    with pytest.raises(DDError, match="--image-size must be a positive number of pixels, got -5"):
        resolve_trial("datadam", "digits", None, 1, EVAL, image_size=-5)


def test_random_has_one_preset_and_takes_it_when_none_is_named():
    trial = resolve_trial("random", "digits", None, 3, EVAL, Layers(flags={"iterations": 50}))
    assert trial.preset == "default" and trial.method_config.iterations == 1  # picking is one step
    assert trial.sources == {}  # its config ignores `iterations`: nothing differs from the preset
