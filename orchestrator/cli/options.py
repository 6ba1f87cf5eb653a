"""Options and helpers shared by the commands: one definition per flag, so every command spells it alike."""

from __future__ import annotations

import enum
import functools
import inspect
import tempfile
import typing
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass, field, fields, make_dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

import tomllib
import typer

from ddcore.data import DATASET_NAMES, DATASETS
from ddcore.errors import DDError
from orchestrator.views.tables import console

DataRootOption = typer.Option(
    None, "--data-root", help="Folder holding the data sets (default: $DDORCH_DATA_ROOT, then ~/.cache/ddorch/data)."
)


def _device_name(value: str) -> str:
    """The device's name checked here (a GPU may live on the cluster's workers, not on this driver)."""
    from ddcore.runtime import DEVICE_CHOICES

    if value.split(":")[0] not in DEVICE_CHOICES:
        raise typer.BadParameter(f"unknown device '{value}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    return value


def _writable_folder(path: Path) -> Path:
    """A folder that exists or can be made, and takes files: probed with a temporary folder, left as it was."""
    existing = next(p for p in (path.resolve(), *path.resolve().parents) if p.exists())
    try:
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as error:
        raise typer.BadParameter(f"cannot write under {existing} ({error.strerror})") from None
    return path


DeviceOption = typer.Option("auto", "--device", callback=_device_name, help="auto (GPU when visible), cpu or cuda.")


ImageSizeOption = typer.Option(
    None, "--image-size", help="Resize images to this square size (default: the data set's own)."
)


TrackingUriOption = typer.Option(
    None, "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, then sqlite:///mlflow.db here)."
)


ExperimentOption = typer.Option("ddorch", "--experiment", help="MLflow experiment name.")


OutputDirOption = typer.Option(
    Path("runs"), "--output-dir", callback=_writable_folder, help="Local copy of each run's artefacts."
)


EXPERT_BATCHES = ", ".join(f"{name} {spec.full_data_batch}" for name, spec in DATASETS.items())


DatasetOption = typer.Option("digits", "--dataset", help=f"One of: {DATASET_NAMES} (`ddorch datasets`).")


DownloadOption = typer.Option(
    False, "--download", help="Download MNIST / Fashion-MNIST with torchvision if missing (needs internet)."
)


# ddcore.evaluate.PROTOCOLS, spelled out here so that `--help` does not import torch.
PROTOCOL_CHOICES = (
    "dc (DC/DM: 1000 epochs, batch 256, lr 0.01, DSA), dc-aug (as dc, with DC's own crop/scale/rotate in place "
    "of DSA), datadam (DataDAM's script: 1800 epochs, batch 64), "
    "datm (DATM/PAD: 1000 epochs, batch 128, the set's learned lr) or full (20 epochs, cosine, no DSA)"
)


EvalProtocolOption = typer.Option(
    None,
    "--eval-protocol",
    help=f"How networks are trained on the set: {PROTOCOL_CHOICES}; default: the data set's (dc for all four).",
)


EvalEpochsOption = typer.Option(
    None, "--eval-epochs", help="Override the protocol's epochs, for quick runs (default: the protocol's)."
)
EvalBatchSizeOption = typer.Option(
    None, "--eval-batch-size", min=1, help="Override the protocol's batch size (default: the protocol's)."
)


AddressOption = typer.Option(
    None,
    "--address",
    help="Ray cluster to join: HOST:PORT, auto (the one `ray start` runs on this machine) or ray://... "
    "(default: $RAY_ADDRESS, else a local instance of its own on 127.0.0.1).",
)


VerboseOption = typer.Option(False, "--verbose", help="Ray's and MLflow's own log lines and the workers' output.")


class EvalPrecision(str, enum.Enum):
    """ddcore.evaluate.PRECISIONS, spelled out here so that `--help` does not import torch."""

    fp32 = "fp32"
    bf16 = "bf16"


NATIVE_BF16 = (
    "needs native bf16 (a CPU with AVX512-BF16 or AMX, a GPU of compute capability 8.0+; `ddorch env`): "
    "refused elsewhere unless --force-bf16"
)


EvalPrecisionOption = typer.Option(
    EvalPrecision.fp32,
    "--eval-precision",
    help="Evaluation networks' forwards: fp32 (the papers') or bf16 autocast (faster where bf16 is; "
    f"the protocol is then named e.g. dc-bf16, so results never mix); bf16 {NATIVE_BF16}.",
)


class Selection(str, enum.Enum):
    """What chooses trials, IPCs and checkpoints (orchestrator.store.run_schema.SELECTIONS)."""

    test = "test"
    val = "val"


def selection_option(default: Selection) -> typer.models.OptionInfo:
    """--selection with a command's default (`run`: test, the papers' protocol; `sweep`, `lossless`: val)."""
    return typer.Option(
        default,
        "--selection",
        help="What chooses: val holds the data set's validation part (DatasetSpec.val_size, fixed) out of "
        "everything that learns and decides on it, reporting the chosen one's test accuracy; test decides on "
        "the test set, the training part being the whole training set (the papers' protocol).",
    )


ForceBf16Option = typer.Option(
    False,
    "--force-bf16",
    help="Run bf16 even where the processor lacks native bf16 (emulated: measured 27x slower than fp32 on an "
    "AVX2-only CPU); the run records it (tag ddorch.bf16_forced).",
)


DryRunOption = typer.Option(
    False,
    "--dry-run",
    help="Print the plan and a wall-time estimate from a short calibration here; start nothing, log nothing.",
)


def option_field(option: typer.models.OptionInfo):
    """An option group's field, `option` (`option_field(DeviceOption)`); the option's default is the field's."""
    return field(default=option.default, metadata={"option": option})


class OptionGroup:
    """Options several commands share, passed to a command as one object (see `option_groups`)."""

    panel: ClassVar[str | None]  # their heading in `--help` (None: typer's own "Options")


FLAGS = resources.files(__package__) / "flags.toml"  # package data (pyproject.toml)
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "path": Path}
OPTION_KEYS = {"type", "flag", "default", "min", "max", "help"}
# What help texts in flags.toml name as {NAME}: computed from the code, so not written there.
HELP_VALUES = {"NATIVE_BF16": NATIVE_BF16, "EXPERT_BATCHES": EXPERT_BATCHES}


@functools.cache
def _catalogue() -> dict:
    return tomllib.loads(FLAGS.read_text())


def group(name: str, table: dict | None = None) -> type[OptionGroup]:
    """The option group of flags.toml's table `name` (or of `table`): a frozen dataclass named e.g.
    `MethodSettings`, one field per option, in the table's order. A group with methods subclasses it.

    Made with `dataclasses.make_dataclass(cls_name, fields, bases=..., namespace=..., frozen=...)`
    (https://docs.python.org/3/library/dataclasses.html#dataclasses.make_dataclass); the file is read as
    package data with `importlib.resources.files` (https://docs.python.org/3/library/importlib.resources.html).
    """
    table = dict(_catalogue()[name] if table is None else table)
    panel = table.pop("panel", None)
    made = []
    for key, entry in table.items():
        if not isinstance(entry, dict):
            raise DDError(f"flags.toml [{name}]: unknown key '{key}' (a table has a panel and one table per option)")
        kind, option = _option(f"{name}.{key}", entry)
        made.append((key, kind, option_field(option)))
    return make_dataclass(
        f"{name.title()}Settings", made, bases=(OptionGroup,), namespace={"panel": panel}, frozen=True
    )


def flag(name: str, key: str) -> typer.models.OptionInfo:
    """The option of flags.toml's `[name.key]` alone, for a command that offers it outside its group."""
    return _option(f"{name}.{key}", _catalogue()[name][key])[1]


def _option(where: str, entry: dict) -> tuple[type, typer.models.OptionInfo]:
    """(the field's type, its option) of one flags.toml entry, refused with one line naming it if malformed."""
    for problem, keys in (
        ("unknown", entry.keys() - OPTION_KEYS),
        ("missing", {"type", "flag", "help"} - entry.keys()),
    ):
        if keys:
            raise DDError(f"flags.toml [{where}]: {problem} key '{min(keys)}'")
    spelled = entry["type"]
    if spelled.removesuffix("?") not in TYPES:
        raise DDError(f"flags.toml [{where}]: unknown type '{spelled}' (one of {', '.join(TYPES)}, optionally with ?)")
    kind, optional = TYPES[spelled.removesuffix("?")], spelled.endswith("?")
    if "default" not in entry and not optional:
        raise DDError(f"flags.toml [{where}]: missing key 'default' (only a type ending in ? defaults to None)")
    default = entry.get("default")
    try:
        text = entry["help"].format_map(HELP_VALUES)
    except KeyError as error:
        raise DDError(f"flags.toml [{where}]: unknown name {{{error.args[0]}}} in help") from None
    option = typer.Option(
        kind(default) if kind is Path and default is not None else default,
        entry["flag"],
        min=entry.get("min"),
        max=entry.get("max"),
        help=text,
    )
    return (kind | None if optional else kind), option


IterationsOption = flag("method", "iterations")  # also `lossless`'s, outside its Method settings panel


@dataclass(frozen=True)
class Setup(OptionGroup):
    """Where a command reads its data, computes and records: the settings most commands share."""

    panel = "Data, device and MLflow"
    tracking_uri: str | None = option_field(TrackingUriOption)
    experiment: str = option_field(ExperimentOption)
    output_dir: Path = option_field(OutputDirOption)
    data_root: Path | None = option_field(DataRootOption)
    image_size: int | None = option_field(ImageSizeOption)
    device: str = option_field(DeviceOption)


@dataclass(frozen=True)
class EvalOptions(OptionGroup):
    """How the evaluation networks are trained on a set: the protocol and what may override it."""

    panel = "Evaluation protocol"
    eval_protocol: str | None = option_field(EvalProtocolOption)
    eval_epochs: int | None = option_field(EvalEpochsOption)
    eval_batch_size: int | None = option_field(EvalBatchSizeOption)
    eval_precision: EvalPrecision = option_field(EvalPrecisionOption)
    force_bf16: bool = option_field(ForceBf16Option)

    def spec(self, models: tuple[str, ...], seeds: int):
        """ddcore's `EvalSpec` of these settings (imported here: `--help` does not import torch)."""
        from ddcore.evaluate import EvalSpec

        return EvalSpec(
            models=models,
            seeds=seeds,
            protocol=self.eval_protocol,
            epochs=self.eval_epochs,
            batch_size=self.eval_batch_size,
            precision=self.eval_precision.value,
        )


@dataclass(frozen=True)
class RayOptions(OptionGroup):
    """The Ray cluster a command's work runs on, and whether Ray's and MLflow's own output is shown."""

    panel = "Ray cluster"
    address: str | None = option_field(AddressOption)
    verbose: bool = option_field(VerboseOption)

    def announce(self) -> None:
        """One line when the cluster comes from $RAY_ADDRESS: without --address a command runs locally."""
        from orchestrator.engine.cluster import requested_address

        joined, source = requested_address(self.address)
        if source == "RAY_ADDRESS":
            console.print(f"joining the Ray cluster at {joined} from RAY_ADDRESS", soft_wrap=True, markup=False)

    def quiet(self) -> None:
        """Only ddorch's own lines on the terminal, unless --verbose."""
        if not self.verbose:
            quiet_libraries()


class Offer:
    """The options of a group a command offers, in the group's order (`Annotated[Setup, Offer("device")]`);
    the others keep their defaults. A group typed alone offers all of them."""

    def __init__(self, *names: str) -> None:
        self.names = names


def option_groups(command: Callable) -> Callable:
    """Expand each parameter typed as an option group (`Setup`, `EvalOptions`) into the group's options, in
    its place and in the group's help panel, and call the command with one object of the group.

    Typer reads a command's parameters with `inspect.signature` (typer/utils.py, get_params_from_function,
    typer 0.29), which returns a function's `__signature__` when it has one (Python docs, inspect.signature);
    help panels: https://typer.tiangolo.com/tutorial/options/help/#cli-options-help-panels
    """
    hints = typing.get_type_hints(command, include_extras=True)
    parameters, groups = [], {}
    for parameter in inspect.signature(command).parameters.values():
        group, offer = _group_of(hints[parameter.name])
        if group is None:
            parameters.append(parameter.replace(annotation=hints[parameter.name]))
            continue
        offered = [f for f in fields(group) if offer is None or f.name in offer.names]
        group_hints = typing.get_type_hints(group)
        groups[parameter.name] = (group, [f.name for f in offered])
        parameters += [
            inspect.Parameter(
                f.name,
                parameter.kind,
                default=_in_panel(f.metadata["option"], group.panel),
                annotation=group_hints[f.name],
            )
            for f in offered
        ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        for name, (group, offered) in groups.items():
            kwargs[name] = group(**{option: kwargs.pop(option) for option in offered})
        return command(**kwargs)

    wrapper.__signature__ = inspect.Signature(parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _group_of(annotation) -> tuple[type | None, Offer | None]:
    """(the option group, its `Offer` or None) of a parameter's annotation; (None, None) for a plain one."""
    kind, *extras = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Annotated else (annotation,)
    if not (isinstance(kind, type) and issubclass(kind, OptionGroup)):
        return None, None
    return kind, next((extra for extra in extras if isinstance(extra, Offer)), None)


def _in_panel(option: typer.models.OptionInfo, panel: str) -> typer.models.OptionInfo:
    shown = copy(option)
    shown.rich_help_panel = panel
    return shown


def as_command(function: Callable) -> Callable:
    """What the app makes of each command function: its option groups expanded, a `DDError` as one line."""
    return option_groups(friendly_errors(function))


def friendly_errors(command: Callable) -> Callable:
    """Turn a `DDError` into one `error: ...` line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DDError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def split_names(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


def quiet_libraries() -> None:
    """Only ddorch's own lines on the terminal (`--verbose` keeps Ray's and MLflow's)."""
    import logging

    import mlflow  # noqa: F401  (it sets its loggers' levels on import: import it first)

    from orchestrator.engine.cluster import quiet_ray

    quiet_ray()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
