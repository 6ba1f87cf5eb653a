"""Opt-in bf16 evaluation: its own protocol name, bf16 forwards with fp32 weights, and keys of fp32
trials and searches recorded before the setting existed stay what they were."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddcore.errors import DDError
from ddcore.evaluate import DC, PRECISIONS, EvalSpec, architecture_flops, evaluate, get_protocol, without_later_defaults
from ddcore.methods import get_method
from orchestrator.cli.options import EvalPrecision
from orchestrator.engine.lossless import LosslessConfig, search_key
from orchestrator.engine.trial import TrialConfig, trial_key
from tests.test_evaluate import QUICK, toy_dataset


def test_bf16_is_a_distinct_protocol_and_fp32_is_the_published_one():
    assert get_protocol("dc", precision="fp32") == DC and DC.precision == "fp32"
    bf16 = get_protocol("dc", batch_size=32, epochs=5, precision="bf16")
    assert (bf16.name, bf16.precision, bf16.batch_size, bf16.epochs) == ("dc-bs32-5ep-bf16", "bf16", 32, 5)
    with pytest.raises(DDError, match="unknown eval precision 'fp8'"):
        get_protocol("dc", precision="fp8")
    assert [p.value for p in EvalPrecision] == list(PRECISIONS)  # the CLI's copy of the choices


def test_bf16_runs_the_forwards_in_bf16_and_keeps_weights_and_loss_fp32(monkeypatch):
    seen: dict[str, set] = {"logits": set(), "loss input": set(), "grads": set()}
    linear_forward, cross_entropy, sgd_step = nn.Linear.forward, F.cross_entropy, torch.optim.SGD.step

    def linear(self, x):
        out = linear_forward(self, x)
        seen["logits"].add(out.dtype)
        return out

    def loss(logits, *args, **kwargs):
        seen["loss input"].add(logits.dtype)
        return cross_entropy(logits, *args, **kwargs)

    def step(self, *args, **kwargs):
        seen["grads"].update(p.grad.dtype for group in self.param_groups for p in group["params"])
        return sgd_step(self, *args, **kwargs)

    data = toy_dataset()
    architecture_flops("MLP", data.channels, data.num_classes, data.image_size)  # its fp32 trace, cached first
    monkeypatch.setattr(nn.Linear, "forward", linear)
    monkeypatch.setattr(F, "cross_entropy", loss)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    protocol = replace(QUICK, name="quick-bf16", precision="bf16")
    result = evaluate("MLP", data.train_images, data.train_labels, data, protocol, seeds=(0,), device="cpu")
    assert seen["logits"] == {torch.bfloat16}  # training and test forwards
    assert seen["loss input"] == {torch.float32}
    assert seen["grads"] == {torch.float32}  # fp32 weights, gradients and optimizer state
    assert result.protocol == "quick-bf16" and result.accuracy_mean > 0.9


def test_fp32_keys_of_trials_and_searches_are_unchanged():
    """Hashes computed with the code from before `eval_precision` existed (commit 7d478d3)."""
    config = get_method("datadam").config("paper", "digits", 2)
    evaluation = EvalSpec(("ConvNetD3",), epochs=3)
    trial = TrialConfig("digits", "datadam", config, "paper", evaluation)
    assert trial_key(trial) == "f480a7caf95ddacf39ec"
    # A search as they were before validation selection and sequential seeds (3 networks, decided on test).
    old_search = LosslessConfig(dataset="digits", eval_seeds=3, max_eval_seeds=3, selection="test")
    assert search_key(old_search) == "902ebdb208538d345455"
    bf16 = replace(trial, eval=replace(evaluation, precision="bf16"))
    assert trial_key(bf16) != trial_key(trial)
    assert search_key(LosslessConfig(dataset="digits", eval_precision="bf16")) != "902ebdb208538d345455"


def test_only_later_settings_at_their_defaults_are_left_out_of_hashed_settings_and_the_input_is_kept():
    protocol = {"precision": "fp32", "augmentation": "dsa", "epochs": 1000}
    fp32 = {"eval_precision": "fp32", "ipc": 10, "protocol": protocol}
    assert without_later_defaults(fp32) == {"ipc": 10, "protocol": {"epochs": 1000}}
    assert fp32["eval_precision"] == "fp32" and fp32["protocol"] == protocol
    bf16 = {"eval_precision": "bf16", "ipc": 10}
    assert without_later_defaults(bf16) == bf16
    dc_augmentation = {"eval_precision": "bf16", "protocol": {"precision": "bf16", "augmentation": "dc"}}
    assert without_later_defaults(dc_augmentation) == dc_augmentation


def test_lossless_and_sweep_trials_carry_the_precision():
    from orchestrator.engine.lossless import build_request
    from orchestrator.engine.sweep import preset_trial
    from tests.test_sweep import tiny_preset

    request = build_request(LosslessConfig(dataset="digits", eval_epochs=2, eval_precision="bf16"), "datadam", 2, 0.9)
    assert request.trial.protocol().name == "dc-2ep-bf16"
    assert preset_trial(tiny_preset(precision="bf16"), {}, None, "cpu").protocol().name == "dc-2ep-bf16"
    assert preset_trial(tiny_preset(), {}, None, "cpu").protocol().name == "dc-2ep"


def test_seeds_batched_as_one_wide_network_train_and_test_in_bf16_too(monkeypatch):
    """The GPU path (`batch_seeds`): the same autocast around the wide network's train and test forwards."""
    from ddcore.evaluate import train_and_test_seeds
    from ddcore.models.wide import WideNet

    dtypes = set()

    def recording(original):
        def forward(self, x):
            out = original(self, x)
            dtypes.add(out.dtype)
            return out

        return forward

    for name in ("forward", "forward_shared"):
        monkeypatch.setattr(WideNet, name, recording(getattr(WideNet, name)))
    data = toy_dataset(n_per_class=10)
    protocol = replace(QUICK, name="quick-bf16", epochs=1, precision="bf16")
    args = ("ConvNetD1", data.train_images, data.train_labels, data, protocol, (0, 1), torch.device("cpu"))
    runs = train_and_test_seeds(*args, batch_seeds=True)
    assert [r.seed for r in runs] == [0, 1] and dtypes == {torch.bfloat16}
