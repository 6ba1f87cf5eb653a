"""The `ddorch run` command that reproduces a trial, built from the params the trial logged.

Below the CLI (engine and views both write it: `describe()` into a run's tags, the report into its
Reproduce section), so the option names are a table here, not read from the command; a test checks
the table against `ddorch run`'s options, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import json
import shlex
from dataclasses import fields

from ddcore.errors import DDError

# `ddorch run`'s options by the trial param they set, in the command's order: `--name-with-dashes`
# unless spelled otherwise (the paper's symbol for DataDAM's weight; `--set` for any method setting).
_SPELLED_OTHERWISE = {"mmd_weight": "--lambda", "settings": "--set"}
RUN_FLAGS = {
    name: _SPELLED_OTHERWISE.get(name, "--" + name.replace("_", "-"))
    for name in (
        "dataset method ipc init model preset iterations lr_images batch_real mmd_weight attention_power "
        "dsa_strategy bf16 settings seed distill_seeds eval_models eval_seeds eval_protocol eval_epochs "
        "eval_batch_size eval_precision force_bf16 selection checkpoint_eval_every baseline tracking_uri experiment "
        "output_dir data_root image_size device"
    ).split()
}
NOT_REPRODUCED = {"device", "log_every"}  # where it ran and how often it logged: no effect on the numbers


def command_from_params(params: dict[str, str]) -> tuple[str, list[str]]:
    """The `ddorch run` command of a trial's params as logged: a flag for each setting `ddorch run` has
    one for, `--set name=value` for method settings that differ from the preset. The second value lists
    settings that could not be checked against the preset (none when it resolves)."""
    from ddcore.methods import get_method

    flags = RUN_FLAGS
    parts = ["ddorch", "run"]
    params = {**params, "preset": str(_preset(params))}
    for name, flag in flags.items():
        value = params.get(name, params.get(f"method_config.{name}", "None"))
        if name in SPECIAL_FLAGS or value == "None":
            continue
        parts += [flag, value]
    if params.get("eval_models"):
        parts += [flags["eval_models"], ",".join(ast.literal_eval(params["eval_models"]))]
    if params.get("method_config.bf16") == "True":
        parts.append("--bf16")
    if params.get("force_bf16") == "True":
        parts.append(flags["force_bf16"])
    if params.get("baseline") == "False":
        parts.append("--no-baseline")
    try:
        preset = get_method(params["method"]).config(
            _preset(params), params["dataset"], int(params["method_config.ipc"])
        )
    except (DDError, KeyError, ValueError):
        return shlex.join(parts), ["the method's preset could not be resolved: settings not compared"]
    for spec in fields(preset):
        value = params.get(f"method_config.{spec.name}")
        if (
            spec.name in flags
            or spec.name in NOT_REPRODUCED
            or value is None
            or value == str(getattr(preset, spec.name))
        ):
            continue
        parts += ["--set", f"{spec.name}={_toml_value(value, spec.type)}"]
    return shlex.join(parts), []


def _preset(params: dict[str, str]) -> str | None:
    """The preset the run logged, or None (the method's default) where its method has only one preset,
    under another name: random logged other methods' preset names before it had its own (`default`)."""
    from ddcore.methods import get_method

    logged = params.get("preset")
    try:
        presets = get_method(params.get("method", "")).presets
    except DDError:
        return logged
    return None if len(presets) == 1 and logged not in presets else logged


# Options rendered apart (lists, switches) or not part of what a trial computes.
SPECIAL_FLAGS = {
    "eval_models",
    "bf16",
    "force_bf16",
    "baseline",
    "settings",
    "tracking_uri",
    "experiment",
    "output_dir",
    "data_root",
    "device",
}


def _toml_value(text: str, annotation: str) -> str:
    """A logged value as `--set` reads it (TOML): booleans lower-case, strings quoted."""
    if annotation == "bool":
        return text.lower()
    if annotation == "str":
        return json.dumps(text)
    return text
