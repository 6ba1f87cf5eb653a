"""One place that builds a trial: `resolve_trial`, for `ddorch run`, sweeps, lossless searches and the
benchmark rows alike.

A trial's method settings come in layers, each overriding the ones before it (`PRECEDENCE`, the field
order of `Layers`):

    preset < fixed < sampled < flags < --set

- preset: the method's named defaults for the data set and IPC (`Method.config`);
- fixed: an experiment preset's `[fixed]` table (`experiments/*.toml`);
- sampled: a sweep trial's point of its search space;
- flags: the command's own options (`ddorch run --iterations`, a lossless search's `--model`, the device);
- --set: `--set name=value` of `ddorch run` and `ddorch sweep`.

None in a layer means "not given". The preset's per-IPC defaults (DataDAM's images lr) are those of
the IPC that wins. Each trial records which layer set every setting that differs from its preset's
(`Tag.SETTINGS_FROM`). Everything that can be checked without the data is checked here, so a bad
value is one line before any MLflow run exists; `check_data` then checks what needs the data (the
data root, the image size, IPC against class sizes), where the trials run on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from ddcore.data import get_spec
from ddcore.data.prep import resolve_size
from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method
from orchestrator.engine.trial import TrialConfig, check_models, load_cached

if TYPE_CHECKING:
    from ddcore.data.base import RealDataset


@dataclass(frozen=True)
class Layers:
    """A trial's method settings by layer; a later field overrides an earlier one (see the module)."""

    fixed: dict[str, Any] = field(default_factory=dict)
    sampled: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # `--set name=value`

    def given(self) -> list[tuple[str, dict[str, Any]]]:
        """(layer name, its values less the ones not given), lowest precedence first."""
        return [
            (_LABELS.get(f.name, f.name), {k: v for k, v in getattr(self, f.name).items() if v is not None})
            for f in fields(self)
        ]


_LABELS = {"settings": "--set"}
PRECEDENCE = ("preset", *(_LABELS.get(f.name, f.name) for f in fields(Layers)))


def resolve_trial(
    method: str,
    dataset: str,
    preset: str | None,
    ipc: int | None,
    eval: EvalSpec,
    layers: Layers = Layers(),
    *,
    checkpoint_eval_every: int | None = None,
    baseline: bool = True,
    cross_arch_models: tuple[str, ...] = (),
    data_root: str | None = None,
    image_size: int | None = None,
    force_bf16: bool = False,
    selection: str = "test",
    max_eval_seeds: int | None = None,
) -> TrialConfig:
    """The trial of `method` on `dataset`: its `preset` (None: the method's default) for `ipc` (None: the
    preset's), overridden by `layers` in `PRECEDENCE` order, evaluated as `eval` says (no models: the
    network it distils with); every value checked (`check_trial`). One-line `DDError`s."""
    chosen = get_method(method)
    given = layers.given()
    merged = {name: value for _, values in given for name, value in values.items()}
    preset = preset or chosen.default_preset
    requested = chosen.config(preset, dataset, ipc)
    ipc = requested.with_overrides(**merged).ipc  # typed and checked before the preset reads it
    method_config = chosen.config(preset, dataset, ipc).with_overrides(**merged)
    sources = {name: label for label, values in given for name in values}  # a later layer overwrites
    trial = TrialConfig(
        dataset=dataset,
        method=method,
        method_config=method_config,
        preset=preset,
        eval=eval if eval.models else replace(eval, models=(method_config.model,)),
        checkpoint_eval_every=checkpoint_eval_every,
        baseline=baseline,
        cross_arch_models=list(cross_arch_models),
        data_root=data_root,
        image_size=image_size,
        force_bf16=force_bf16,
        selection=selection,
        max_eval_seeds=max_eval_seeds,
        sources={k: v for k, v in sources.items() if getattr(method_config, k) != getattr(requested, k)},
    )
    check_trial(trial)
    return trial


def check_trial(trial: TrialConfig) -> None:
    """What can be checked without the data: the method's settings, the evaluation protocol, the image
    size, and every network (distilling, evaluated, cross-architecture) at that size."""
    trial.method_config.validate()  # class sizes: `check_data`
    trial.protocol()
    spec = get_spec(trial.dataset)
    size = resolve_size(trial.image_size, spec.image_size)
    models = [trial.method_config.model, *trial.eval.models, *trial.cross_arch_models]
    check_models(models, spec.channels, spec.num_classes, size)


def check_data(trials: list[TrialConfig]) -> RealDataset:
    """The trials' data set (one data set, root, size and selection for all), loaded as their trial will
    load it (a missing data set is one line), with every trial's IPC checked against its class sizes."""
    first = trials[0]
    data = load_cached(first.dataset, first.data_root, first.image_size, first.selection)
    for trial in trials:
        trial.method_config.validate(data.class_counts())
    return data
