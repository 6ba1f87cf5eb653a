"""Named experiment presets (`experiments/*.toml`) and search spaces (`tune_spaces/*.toml`).

Both are edited in the checkout's top-level folders of those names; the wheel ships them as package
data `orchestrator/presets/<folder>` (setup.py maps them there; read with `importlib.resources`, so
a non-editable install has them). A user folder named by `$DDORCH_PRESETS` (holding `experiments/`
and/or `tune_spaces/`) is looked at first, so a preset there adds to or replaces a shipped one.

A preset file is validated into `ExperimentPreset`; its space into `SearchSpace`, a list of typed
`Distribution`s that map onto Ray Tune's samplers. Nothing string-keyed travels further: a trial
receives the preset and a dict of sampled method-config values, checked against the method's
config class before any trial starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tomllib

import orchestrator
from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method

PRESETS_ENV = "DDORCH_PRESETS"
EXPERIMENTS, SPACES = "experiments", "tune_spaces"
KINDS = ("loguniform", "uniform", "choice", "grid", "randint")


@dataclass(frozen=True)
class Distribution:
    """One searched method-config field: `kind` with `low`/`high` or `values`."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    def to_tune(self):
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "randint":
            return tune.randint(int(self.low), int(self.high))
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        return tune.choice(list(self.values))

    def examples(self) -> list[Any]:
        """Values it can produce, for checks before a sweep starts: every listed value, or both ends."""
        if self.values:
            return list(self.values)
        if self.kind == "randint":  # tune.randint excludes `high`
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    source: str
    distributions: tuple[Distribution, ...]

    def to_tune(self) -> dict[str, Any]:
        return {d.name: d.to_tune() for d in self.distributions}

    def names(self) -> list[str]:
        return [d.name for d in self.distributions]

    def trial_count(self, num_samples: int) -> int:
        """Trials Tune creates: every grid combination, `num_samples` times."""
        return num_samples * math.prod(len(d.values) for d in self.distributions if d.kind == "grid")


@dataclass(frozen=True)
class AshaSettings:
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass(frozen=True)
class ExperimentPreset:
    name: str
    dataset: str
    method: str
    space: str
    preset: str | None = None  # the method's preset; None: its default
    num_samples: int = 8
    max_concurrent: int = 2
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    eval: EvalSpec = EvalSpec(models=("ConvNetD3",))  # the file's `eval_models`, `eval_seeds`, ... keys
    report_every: int = 100
    cross_arch_models: tuple[str, ...] = ()  # finished trials also train these on their set (ddorch cross-arch)
    selection: str = "val"  # what ASHA and the ranking read (run_schema.SELECTIONS): the validation part by default
    fixed: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # `ddorch sweep --set`: over every trial's values
    asha: AshaSettings = AshaSettings()


def shipped_folder(kind: str) -> Traversable:
    """The `kind` folder that comes with ddorch: the wheel's package data, else (a checkout, editable
    or on PYTHONPATH) the checkout's top-level folder, where presets are edited."""
    packaged = files("orchestrator") / "presets" / kind
    return packaged if packaged.is_dir() else Path(orchestrator.__file__).resolve().parents[1] / kind


# The file's keys for the evaluation (`eval_models = [...]`, flat as a trial's params): EvalSpec's fields.
EVAL_KEYS = {f"eval_{f.name}": f.name for f in fields(EvalSpec)}


def preset_folders(kind: str) -> list[Traversable]:
    """Where `kind` ("experiments" or "tune_spaces") files are looked for: the user's folder, then the shipped one."""
    shipped = shipped_folder(kind)
    user = os.environ.get(PRESETS_ENV)
    return [Path(user).expanduser() / kind, shipped] if user else [shipped]


def _find(kind: str, file_name: str) -> Traversable | None:
    return next((folder / file_name for folder in preset_folders(kind) if (folder / file_name).is_file()), None)


def _read_toml(path: Traversable) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise DDError(f"{path}: not valid TOML ({error})") from None


def list_experiments() -> list[str]:
    names = {
        f.name.removesuffix(".toml")
        for folder in preset_folders(EXPERIMENTS)
        if folder.is_dir()
        for f in folder.iterdir()
        if f.name.endswith(".toml")
    }
    return sorted(names)


def load_experiment(name: str) -> ExperimentPreset:
    path = _find(EXPERIMENTS, f"{name}.toml")
    if path is None:
        raise DDError(f"unknown experiment '{name}'; known experiments: {', '.join(list_experiments())}")
    raw = _read_toml(path)
    known = {f.name for f in fields(ExperimentPreset)} - {"name", "eval", "settings"} | set(EVAL_KEYS)
    unknown = set(raw) - known
    if unknown:
        raise DDError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    asha = AshaSettings(**raw.pop("asha", {}))
    evaluation = {EVAL_KEYS[key]: raw.pop(key) for key in set(raw) & set(EVAL_KEYS)}
    evaluation["models"] = tuple(evaluation.get("models", ExperimentPreset.eval.models))
    raw["cross_arch_models"] = tuple(raw.get("cross_arch_models", ()))
    preset = ExperimentPreset(name=name, asha=asha, eval=EvalSpec(**evaluation), **raw)
    _check_method_fields(preset.method, preset.fixed, f"{path} [fixed]")
    check_values(preset.method, preset.dataset, [preset.fixed], f"{path} [fixed]", preset.preset)
    check_protocol(preset)
    return preset


def check_protocol(preset: ExperimentPreset) -> None:
    """A one-line error for an unknown protocol or bad epochs, before any trial starts."""
    preset.eval.protocol_for(preset.dataset)


def _check_method_fields(method: str, values: dict[str, Any], where: str) -> None:
    config_fields = {f.name for f in fields(get_method(method).config_class)}
    unknown = set(values) - config_fields
    if unknown:
        raise DDError(
            f"{where}: unknown parameter(s) {', '.join(sorted(unknown))} for {method}; known: {', '.join(sorted(config_fields))}"
        )


def check_values(
    method: str,
    dataset: str,
    candidates: list[dict[str, Any]],
    where: str,
    preset: str | None = None,
    fixed: dict[str, Any] | None = None,
) -> None:
    """Each candidate on the preset's config for `dataset` (with the fixed values): types and the
    config's own checks (IPC >= 1, positive learning rates, ...), before any run or trial starts."""
    try:
        base = get_method(method).config(preset, dataset).with_overrides(**(fixed or {}))
        for overrides in candidates:
            base.with_overrides(**overrides).validate()  # class sizes: when the data is loaded
    except DDError as error:
        raise DDError(f"{where}: {error}") from None


def load_space(
    path_or_name: str | Path,
    method: str,
    dataset: str = "digits",
    preset: str | None = None,
    fixed: dict[str, Any] | None = None,
) -> SearchSpace:
    """A space file by path, or by name among the search spaces (`preset_folders`); every entry checked."""
    path: Traversable | None = Path(path_or_name)
    if not path.is_file():
        path = _find(SPACES, str(path_or_name))
    if path is None:
        where = ", ".join(str(folder) for folder in preset_folders(SPACES))
        raise DDError(f"search space file not found: {path_or_name} (looked in {where} too)")
    raw = _read_toml(path)
    if not raw:
        raise DDError(f"{path}: the search space is empty (no [parameter] tables)")
    _check_method_fields(method, raw, str(path))
    space = SearchSpace(str(path), tuple(_distribution(path, name, spec) for name, spec in raw.items()))
    candidates = [{d.name: value} for d in space.distributions for value in d.examples()]
    check_values(method, dataset, candidates, str(path), preset, fixed)
    return space


def _distribution(path: Path, name: str, spec: Any) -> Distribution:
    where = f"{path}: [{name}]"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise DDError(f"{where} needs type = one of {', '.join(KINDS)}")
    kind = spec["type"]
    if kind in ("choice", "grid"):
        values = tuple(spec.get("values", ()))
        if not values:
            raise DDError(f"{where}: empty values list")
        return Distribution(name, kind, values=values)
    low, high = spec.get("low"), spec.get("high")
    if low is None or high is None or not low < high:
        raise DDError(f"{where}: empty range (need low < high, got low={low}, high={high})")
    if kind == "loguniform" and low <= 0:
        raise DDError(f"{where}: loguniform needs low > 0, got {low}")
    return Distribution(name, kind, low=float(low), high=float(high))


def parse_overrides(pairs: list[str], method: str) -> dict[str, Any]:
    """`--set ipc=10 --set lr_images=0.5` into typed fixed values (TOML literal syntax)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DDError(f"--set expects name=value, got '{pair}'")
        name, text = pair.split("=", 1)
        try:
            values[name.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            values[name.strip()] = text.strip()
    _check_method_fields(method, values, "--set")
    return values
