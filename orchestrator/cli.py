"""The `ddorch` command line: a thin layer over ddcore functions that tests can call directly.

Bad input never shows a traceback: library code raises `DDError` with one line, which every
command prints as `error: ...` before exiting with status 2.
"""

from __future__ import annotations

import enum
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import typer

from ddcore.data import DATASET_NAMES, DATASETS
from ddcore.errors import DDError
from orchestrator import tables
from orchestrator.flags import canonical
from orchestrator.tables import console

app = typer.Typer(
    help="ddorch: distil, evaluate, sweep and report dataset-distillation experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"token_normalize_func": canonical},  # old flag spellings (orchestrator.flags)
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ddorch {version('ddorch')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    """ddorch: distil, evaluate, sweep and report dataset-distillation experiments."""


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


@app.command()
@friendly_errors
def baseline(
    dataset: str = DatasetOption,
    model: str = typer.Option("ConvNetD3", "--model", help="A name from `ddorch models`."),
    eval_seeds: int = typer.Option(1, "--eval-seeds", min=1, help="Networks trained (seeds 0..N-1)."),
    protocol: str = typer.Option(
        "full", "--protocol", help=f"full (the default) or a synthetic-set protocol: {PROTOCOL_CHOICES}."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Training batch size (default: the data set's full-data batch, 256; 32 for digits and mhist).",
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Retrain even if a cached result exists."),
    data_root: Path | None = DataRootOption,
    image_size: int | None = ImageSizeOption,
    device: str = DeviceOption,
    download: bool = DownloadOption,
) -> None:
    """Train MODEL on the whole real training set and test it: the full-data upper bound.

    Example: ddorch baseline --dataset digits --model ConvNetD3 --eval-seeds 3
    """
    from ddcore.baseline import baseline_protocol, cache_dir, full_data_baseline
    from ddcore.data import load_dataset
    from ddcore.evaluate import get_protocol

    chosen_protocol = (
        baseline_protocol(dataset, batch_size) if protocol == "full" else get_protocol(protocol, batch_size)
    )
    data = load_dataset(dataset, data_root, image_size, download)
    console.print(
        f"{data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images, "
        f"{data.channels}x{data.image_size}x{data.image_size}, {data.num_classes} classes"
    )
    result, from_cache = full_data_baseline(
        data, model, tuple(range(eval_seeds)), chosen_protocol, device, refresh=refresh, progress=True
    )
    console.print(
        tables.baseline(
            result, from_cache, f"Full-data baseline: {model} on {dataset} ({chosen_protocol.name} protocol)"
        )
    )
    console.print(
        f"accuracy {100 * result.accuracy_mean:.2f} ± {100 * result.accuracy_std:.2f} %, "
        f"balanced {100 * result.balanced_accuracy_mean:.2f} %, "
        f"{result.flops_per_image / 1e6:.2f} MFLOPs per image (fvcore: 1 multiply-add = 1 FLOP)"
    )
    console.print(f"results cached in {cache_dir() / 'baselines'}")


def _split_names(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


@app.command()
@friendly_errors
def run(
    dataset: str = DatasetOption,
    method: str = typer.Option("datadam", "--method", help="A distillation method (datadam or pad)."),
    ipc: int | None = typer.Option(None, "--ipc", help="Synthetic images per class (default: the preset's, 10)."),
    init: str | None = typer.Option(
        None, "--init", help="real (random real images) or noise (default: the preset's, real)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Network the method distils with (default ConvNetD3; ConvNetD7 for mhist)."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help=(
            "The method's named defaults. DataDAM: official (the released main_DataDAM.py: batch-norm ConvNet, "
            "attention power 1, 20,000 iterations, real batch 64), paper (the paper's table: instance "
            "norm, power 4, 8,000 iterations, lambda 0.01; the default), course (the seed's bi-level setting). PAD: paper. "
            "Default: the method's first."
        ),
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", help="Distillation iterations (default: the preset's)."
    ),
    lr_images: float | None = typer.Option(
        None, "--lr-images", help="Learning rate of the synthetic images (default: the preset's)."
    ),
    batch_real: int | None = typer.Option(
        None, "--batch-real", help="Real images per class per iteration (default: the preset's)."
    ),
    mmd_weight: float | None = typer.Option(
        None, "--lambda", help="Weight of the last-layer (MMD) term (default: the preset's)."
    ),
    attention_power: float | None = typer.Option(
        None, "--attention-power", help="p in sum_c |f_c|^p (default: the preset's)."
    ),
    dsa_strategy: str | None = typer.Option(
        None, "--dsa-strategy", help="e.g. color_crop_cutout_flip_scale_rotate, or none (default: the preset's)."
    ),
    bf16: bool = typer.Option(False, "--bf16", help=f"bf16 autocast for the distillation forwards; {NATIVE_BF16}."),
    settings: list[str] = typer.Option([], "--set", help="Any method setting, e.g. --set syn_steps=20 (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillation (the first one with --distill-seeds)."),
    distill_seeds: int = typer.Option(
        1,
        "--distill-seeds",
        help="Distilled sets (seeds --seed .. --seed + N - 1), each evaluated with --eval-seeds networks; "
        "N > 1: one MLflow run with a child run per set, the result as mean ± std over the sets' means.",
    ),
    eval_models: str | None = typer.Option(
        None,
        "--eval-models",
        help="Comma-separated networks trained on the synthetic set (default: the network distilled with).",
    ),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per architecture."),
    eval_protocol: str = EvalProtocolOption,
    eval_epochs: int | None = typer.Option(
        None, "--eval-epochs", help="Override the protocol's epochs (default: the protocol's)."
    ),
    eval_batch_size: int | None = EvalBatchSizeOption,
    eval_precision: EvalPrecision = EvalPrecisionOption,
    force_bf16: bool = ForceBf16Option,
    checkpoint_eval_every: int | None = typer.Option(
        None,
        "--checkpoint-eval-every",
        min=1,
        help="Also evaluate the first eval model (all seeds) every N iterations and log the best mean "
        "(selected on the test set, as DataDAM's and PAD's scripts report; not comparable with the final mean). Default: off.",
    ),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Compare with the cached full-data baseline."),
    tracking_uri: str | None = TrackingUriOption,
    experiment: str = ExperimentOption,
    output_dir: Path = OutputDirOption,
    data_root: Path | None = DataRootOption,
    image_size: int | None = ImageSizeOption,
    device: str = DeviceOption,
) -> None:
    """Distil one synthetic set, evaluate it, compare with the full-data baseline, log it all to MLflow.

    Example: ddorch run --dataset digits --method datadam --ipc 10 --iterations 200
    """
    import sys

    from ddcore.methods import get_method
    from orchestrator.experiments import parse_overrides
    from orchestrator.run_schema import run_name
    from orchestrator.sets import distill_seeds as check_distill_seeds
    from orchestrator.tracking import Tracker
    from orchestrator.trial import TrialConfig, check_precision, run_trial

    check_distill_seeds(seed, distill_seeds)
    chosen = get_method(method)
    flags = dict(
        init=init,
        model=model,
        iterations=iterations,
        lr_images=lr_images,
        batch_real=batch_real,
        mmd_weight=mmd_weight,
        attention_power=attention_power,
        dsa_strategy=dsa_strategy,
        bf16=bf16 or None,
        seed=seed,
        device=device,
    )
    overrides = parse_overrides(settings, method)
    preset, method_config = chosen.configure(preset, dataset, ipc, {**flags, **overrides})
    trial = TrialConfig(
        dataset=dataset,
        method=method,
        method_config=method_config,
        preset=preset,
        eval_models=_split_names(eval_models) if eval_models else [method_config.model],
        eval_seeds=eval_seeds,
        eval_protocol=eval_protocol,
        eval_epochs=eval_epochs,
        eval_batch_size=eval_batch_size,
        eval_precision=eval_precision.value,
        checkpoint_eval_every=checkpoint_eval_every,
        baseline=baseline,
        data_root=str(data_root) if data_root else None,
        image_size=image_size,
        force_bf16=force_bf16,
    )
    # Bad settings fail before a run is recorded (the class sizes are checked once the data is loaded).
    method_config.validate([sys.maxsize])
    protocol = trial.protocol()
    check_precision(trial)
    name = run_name(dataset, method, method_config.ipc, {"init": method_config.init, **overrides})
    tracker = Tracker.start(tracking_uri, experiment, run_name=name)
    title = (
        f"{method} on {dataset}: IPC {method_config.ipc}, {method_config.init} init, distilled with "
        f"{method_config.model}, evaluated with the {protocol.name} protocol"
    )
    if distill_seeds > 1:
        _run_sets(trial, distill_seeds, tracker, experiment, name, output_dir, title)
        return
    result = run_trial(trial, tracker, progress=True, output_dir=output_dir)

    tables.show(tables.trial(result, title))
    if result.best_checkpoint:
        iteration, accuracy = result.best_checkpoint
        console.print(
            f"best checkpoint ({trial.eval_models[0]}, selected on the test set): {100 * accuracy:.2f} % "
            f"at iteration {iteration}"
        )
    if result.prepare_seconds:  # a method that prepares (PAD), however short it took
        console.print(f"prepared in {result.prepare_seconds:.1f} s (PAD: its experts, cached or trained)")
    console.print(
        f"distilled in {result.distill_seconds:.1f} s ({method_config.iterations / result.distill_seconds:.1f} it/s, "
        f"peak memory {result.peak_memory_mib:.0f} MiB); "
        f"MLflow run {result.run_id} in {tracker.tracking_uri}; artefacts in {result.artefact_dir}"
    )


def _run_sets(trial, count: int, parent, experiment: str, name: str, output_dir: Path, title: str) -> None:
    """`ddorch run --distill-seeds N`, N > 1: the sets as child runs of `parent`, then the result over sets."""
    from orchestrator.run_schema import Tag
    from orchestrator.sets import run_sets
    from orchestrator.tracking import Tracker

    def start_child(one, seed: int):
        return Tracker.start(
            parent.tracking_uri,
            experiment,
            run_name=f"{name} seed={seed}",
            parent_run_id=parent.run_id,
            tags={Tag.DISTILL_SEED: str(seed)},
        )

    result = run_sets(trial, count, parent, start_child, progress=True, output_dir=output_dir)
    tables.show(tables.sets(result, f"{title}; {count} distilled sets"))
    for model, summary in result.over_sets.items():
        console.print(f"{model}: {tables.over_sets_line(summary)}", soft_wrap=True)
    seconds = sum(s.distill_seconds for s in result.sets)
    console.print(
        f"distilled {count} sets in {seconds:.1f} s; MLflow run {result.run_id} (one child run per set) in "
        f"{parent.tracking_uri}; artefacts in {result.artefact_dir}",
        soft_wrap=True,
    )


@app.command()
@friendly_errors
def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more MLflow run ids or unique prefixes (`ddorch runs`)."),
    tracking_uri: str | None = TrackingUriOption,
    output_dir: Path = typer.Option(
        Path("."),
        "--output-dir",
        callback=_writable_folder,
        help="Folder for compare.png, the runs' grids side by side.",
    ),
) -> None:
    """Show runs side by side: settings, accuracy per architecture, time, and one combined grid image.

    Example: ddorch compare 1a2b3c4d 5e6f7a8b --output-dir .
    """
    from orchestrator.compare import compare_runs

    table_rows, columns, image = compare_runs(run_ids, tracking_uri, output_dir / "compare.png")
    rows = ([label, *values] for label, values in table_rows)
    tables.show(tables.table("Runs side by side", ("", *columns), rows, first_left=True))
    console.print(f"grids side by side: {image}")


@app.command()
@friendly_errors
def ui(
    tracking_uri: str | None = TrackingUriOption,
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Start the MLflow web UI on 127.0.0.1 against ddorch's tracking store.

    Example: ddorch ui --port 5000
    """
    import subprocess
    import sys

    from orchestrator.tracking import resolve_tracking_uri, ui_address

    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {uri} at {ui_address(uri, f'http://127.0.0.1:{port}')} (Ctrl-C stops it)")
    subprocess.run(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    )


@app.command()
@friendly_errors
def experiments() -> None:
    """List the named experiment presets (the shipped `experiments/`; `$DDORCH_PRESETS/experiments/` first).

    Example: ddorch experiments | cat
    """
    from orchestrator.experiments import list_experiments, load_experiment

    presets = [load_experiment(name) for name in list_experiments()]
    rows = (
        [
            p.name,
            p.dataset,
            p.method,
            p.space,
            str(p.num_samples),
            f"{p.cpus_per_trial:g} CPU, {p.gpus_per_trial:g} GPU",
        ]
        for p in presets
    )
    columns = ("name", "data set", "method", "space", "trials", "per trial")
    tables.show(tables.table("Experiments (ddorch sweep <name>)", columns, rows, first_left=True))


@app.command()
@friendly_errors
def show(experiment: str = typer.Argument(..., help="An experiment name from `ddorch experiments`.")) -> None:
    """Print an experiment's resolved configuration and search space.

    Example: ddorch show digits_datadam
    """
    import json
    from dataclasses import asdict

    from orchestrator.experiments import load_experiment, load_space

    preset = load_experiment(experiment)
    space = load_space(preset.space, preset.method, preset.dataset, preset.preset, preset.fixed)
    console.print_json(
        json.dumps({"preset": asdict(preset), "space": [asdict(d) for d in space.distributions]}, default=str)
    )


@app.command()
@friendly_errors
def sweep(
    experiment: str = typer.Argument(..., help="An experiment name from `ddorch experiments`."),
    space_file: Path | None = typer.Option(None, "--space", help="Search space TOML (default: the preset's)."),
    overrides: list[str] = typer.Option([], "--set", help="Fix a method setting, e.g. --set ipc=10 (repeatable)."),
    num_samples: int | None = typer.Option(
        None, "--num-samples", min=1, help="Trials sampled from the space (default: the preset's)."
    ),
    max_concurrent: int | None = typer.Option(
        None, "--max-concurrent", min=1, help="Trials running at once (default: the preset's)."
    ),
    cpus_per_trial: float | None = typer.Option(
        None, "--cpus-per-trial", min=0.01, help="CPUs Ray reserves per trial (default: the preset's)."
    ),
    gpus_per_trial: float | None = typer.Option(
        None, "--gpus-per-trial", min=0, help="GPUs (or a fraction) per trial (default: the preset's)."
    ),
    address: str | None = AddressOption,
    storage_path: Path = typer.Option(
        Path("ray_results"), "--storage-path", help="Ray's experiment storage (shared on clusters)."
    ),
    name: str | None = typer.Option(None, "--name", help="Sweep name (default: the experiment's)."),
    eval_protocol: str | None = typer.Option(
        None, "--eval-protocol", help=f"Default: the preset's. {PROTOCOL_CHOICES}."
    ),
    eval_precision: EvalPrecision | None = typer.Option(
        None,
        "--eval-precision",
        help=f"fp32 or bf16 evaluation forwards (default: the preset's, fp32); bf16 {NATIVE_BF16}.",
    ),
    force_bf16: bool = ForceBf16Option,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted sweep of the same name, as it was started: its live view, or Tune's output if started with --verbose.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the search: the same seed samples the same trial settings (default: random)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Ray Tune's own progress output and worker logs instead of the live view."
    ),
    dry_run: bool = DryRunOption,
    tracking_uri: str | None = TrackingUriOption,
    mlflow_experiment: str = ExperimentOption,
    output_dir: Path = OutputDirOption,
    data_root: Path | None = DataRootOption,
    device: str = DeviceOption,
) -> None:
    """Search an experiment's space with Ray Tune and ASHA; every trial is an MLflow child run.

    Example: ddorch sweep digits_datadam --num-samples 4 --seed 1
    """
    from dataclasses import replace

    from ddcore.data import resolve_data_root
    from orchestrator.cluster import (
        check_resources,
        cluster_resources,
        connect,
        preset_resources,
        requested_address,
    )
    from orchestrator.experiments import check_protocol, load_experiment, load_space, parse_overrides
    from orchestrator.sweep import (
        SweepSettings,
        check_precisions,
        check_resumable,
        failures,
        record_in_parent,
        run_sweep,
        summarize,
        trial_length,
    )
    from orchestrator.tracking import check_reachable, resolve_tracking_uri

    preset = load_experiment(experiment)
    preset = replace(
        preset,
        fixed={**preset.fixed, **parse_overrides(overrides, preset.method)},
        eval_protocol=eval_protocol or preset.eval_protocol,
        eval_precision=eval_precision.value if eval_precision else preset.eval_precision,
    )
    check_protocol(preset)
    space = load_space(space_file or preset.space, preset.method, preset.dataset, preset.preset, preset.fixed)
    if requested_address(address)[0] is None:  # trials run on this machine: bf16 it lacks is refused now
        check_precisions(preset, space, device, force_bf16)
    sweep_name, storage = name or preset.name, str(storage_path.resolve())
    if resume:
        check_resumable(sweep_name, storage)  # before starting Ray
    _say_ray_address(address)
    if not dry_run:
        if not verbose:
            _quiet_libraries()
        connect(address, verbose=verbose)  # a dry run joins a cluster (--address) only to read its resources
    available = cluster_resources(address)
    cpus, gpus, note = preset_resources(
        preset.cpus_per_trial, preset.gpus_per_trial, cpus_per_trial, gpus_per_trial, available
    )
    check_resources(cpus, gpus, available)
    if note:
        console.print(note, soft_wrap=True)
    settings = SweepSettings(
        name=sweep_name,
        num_samples=num_samples or preset.num_samples,
        max_concurrent=max_concurrent or preset.max_concurrent,
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        storage_path=storage,
        seed=seed,
    )
    if dry_run:
        from orchestrator.plan import sweep_plan

        plan = sweep_plan(
            preset,
            space,
            settings.num_samples,
            settings.max_concurrent,
            cpus,
            gpus,
            available,
            str(resolve_data_root(data_root)),
            device,
            force_bf16,
        )
        console.print("\n".join(plan.lines), soft_wrap=True, markup=False)
        return
    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    console.print(f"follow it in MLflow: ddorch ui --tracking-uri {uri}")
    callbacks = () if verbose else (_live_view(settings, space, trial_length(preset)),)
    context = {
        "tracking_uri": uri,
        "experiment": mlflow_experiment,
        "output_dir": str(output_dir.resolve()),
        "data_root": str(resolve_data_root(data_root)),
        "device": device,
        "force_bf16": force_bf16,
    }
    results, parent, iterations = run_sweep(
        preset, space, settings, context, resume=resume, callbacks=callbacks, verbose=verbose
    )
    rows = summarize(results, iterations)
    folder = record_in_parent(parent, rows, space, output_dir.resolve())
    tables.show(tables.sweep_rows(f"Sweep {settings.name}: {len(rows)} trials", rows, space.names()))
    console.print(
        f"MLflow parent run {parent.run_id} in {uri}; artefacts in {folder}; "
        f"Ray results in {Path(settings.storage_path) / settings.name}"
    )
    failed = failures(rows)
    if failed:  # exit 1 (2 is bad input): scripts learn that the sweep is incomplete
        typer.echo(f"error: {failed}; the other trials' results are recorded", err=True)
        raise typer.Exit(code=1)


def _quiet_libraries() -> None:
    """Only ddorch's own lines on the terminal (`--verbose` keeps Ray's and MLflow's)."""
    import logging

    import mlflow  # noqa: F401  (it sets its loggers' levels on import: import it first)

    from orchestrator.cluster import quiet_ray

    quiet_ray()
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _say_ray_address(address: str | None) -> None:
    """One line when the Ray cluster comes from $RAY_ADDRESS: without --address a command runs locally."""
    from orchestrator.cluster import requested_address

    joined, source = requested_address(address)
    if source == "RAY_ADDRESS":
        console.print(f"joining the Ray cluster at {joined} from RAY_ADDRESS", soft_wrap=True, markup=False)


def _live_view(settings, space, iterations: int):
    from orchestrator.live import LiveView, SweepProgress

    return LiveView(SweepProgress(settings.name, space.trial_count(settings.num_samples), iterations), console)


@app.command()
@friendly_errors
def results(
    sweep_name: str = typer.Argument(..., help="The sweep's name (default: the experiment's name)."),
    tracking_uri: str | None = TrackingUriOption,
    mlflow_experiment: str = ExperimentOption,
) -> None:
    """Print a finished sweep's results table again, from MLflow.

    Example: ddorch results digits_datadam
    """
    import tempfile

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from orchestrator.run_schema import Tag, tag_filter
    from orchestrator.tracking import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(mlflow_experiment)
    runs = client.search_runs([found.experiment_id], tag_filter(Tag.SWEEP, sweep_name)) if found else []
    if not runs:
        raise DDError(f"no sweep named '{sweep_name}' in {uri}")
    with tempfile.TemporaryDirectory() as folder:
        table = pd.read_csv(client.download_artifacts(runs[0].info.run_id, "results.csv", folder))
    if "distill_sets" not in table:  # sweeps recorded before the column: one set per trial, as ever
        table.insert(table.columns.get_loc("error") + 1, "distill_sets", 1)
    console.print(f"Sweep {sweep_name} (parent run {runs[0].info.run_id}, {runs[0].info.status})")
    console.print(table.to_string(index=False))


@app.command()
@friendly_errors
def runs(
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs, newest first."),
    tracking_uri: str | None = TrackingUriOption,
    experiment: str = ExperimentOption,
) -> None:
    """List recent MLflow runs; any unique prefix of an id works wherever a command takes a run id.

    Example: ddorch runs --limit 5 --experiment ddorch
    """
    from mlflow.tracking import MlflowClient

    from orchestrator.runs import recent_runs
    from orchestrator.tracking import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    rows = (
        [
            r.run_id[:8],
            r.name,
            r.status,
            r.dataset,
            r.method,
            r.ipc,
            "-" if r.accuracy is None else f"{100 * r.accuracy:.2f}",
            f"{r.started:%Y-%m-%d %H:%M}",
        ]
        for r in recent_runs(MlflowClient(uri), experiment, limit)
    )
    columns = ("id", "name", "status", "data set", "method", "IPC", "accuracy %", "started")
    names = ("id", "name", "status", "data set", "method")
    tables.show(tables.table(f"Recent runs in {experiment} ({uri})", columns, rows, left=names))


@app.command()
@friendly_errors
def models(
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help=f"Take the input shape from a data set: {DATASET_NAMES} (default: use the three options below).",
    ),
    channels: int = typer.Option(1, "--channels", min=1, help="Input channels."),
    image_size: int = typer.Option(28, "--image-size", min=8, help="Input height and width."),
    num_classes: int = typer.Option(10, "--num-classes", min=2, help="Output classes."),
) -> None:
    """List the registered networks with their parameter counts and FLOPs for one input shape.

    Example: ddorch models --dataset mnist
    """
    from ddcore.data import get_spec
    from ddcore.evaluate import count_flops
    from ddcore.models import get_model, list_models, parameter_count

    if dataset:
        spec = get_spec(dataset)
        channels, image_size, num_classes = spec.channels, spec.image_size, spec.num_classes

    rows = []
    for name in list_models():
        net = get_model(name, channels, num_classes, image_size)
        rows.append([name, f"{parameter_count(net):,}", f"{count_flops(net, channels, image_size) / 1e6:.2f}"])
    title = f"Networks for {channels}x{image_size}x{image_size} inputs, {num_classes} classes"
    tables.show(tables.table(title, ("model", "parameters", "MFLOPs / image"), rows))


@app.command()
@friendly_errors
def datasets(
    data_root: Path | None = DataRootOption,
) -> None:
    """List the data sets and whether each is found under the data root.

    Example: ddorch datasets --data-root ~/data
    """
    from ddcore.data import DATASETS, dataset_status, resolve_data_root

    root = resolve_data_root(data_root)
    rows = [[name, dataset_status(name, root)[1]] for name in DATASETS]
    tables.show(tables.table(f"Data sets (data root: {root})", ("name", "status"), rows, first_left=True))


@app.command()
@friendly_errors
def env(
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Also time one DataDAM iteration and one evaluation step in each precision native here "
        "(a few seconds: the dry runs' calibration).",
    ),
    data_root: Path | None = DataRootOption,
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Print this machine's set-up as plain text to paste into an issue: versions, CPU and GPUs, the
    precisions they compute natively, the data sets found, the tracking store and cache folder in use.

    Example: ddorch env --calibrate | cat
    """
    from orchestrator.environment import calibration_lines, environment_lines

    lines = environment_lines(data_root, tracking_uri)
    typer.echo("\n".join(lines))
    if calibrate:
        typer.echo("\n".join(calibration_lines(data_root)))


@app.command()
@friendly_errors
def experts(
    dataset: str = DatasetOption,
    model: str | None = typer.Option(
        None, "--model", help="A name from `ddorch models`. Default: PAD's preset for the data set."
    ),
    num_experts: int | None = typer.Option(
        None, "--num-experts", min=1, help="Experts wanted (cached ones are reused). Default: PAD's preset."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Epochs each expert trains (trajectory_epochs). Default: PAD's preset."
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="The experts' SGD learning rate (lr_teacher). Default: PAD's preset."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help=f"Default: the data set's full-data batch ({EXPERT_BATCHES})."
    ),
    schedule: bool | None = typer.Option(
        None,
        "--schedule/--no-schedule",
        help="PAD's easy-to-hard data schedule, or all data (MTT). Default: PAD's preset.",
    ),
    score: str | None = typer.Option(
        None, "--score", help="Difficulty score ordering the samples: el2n or grand. Default: PAD's preset."
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Base seed of the experts and the difficulty scores (each expert adds its index). Default: PAD's preset.",
    ),
    address: str | None = AddressOption,
    in_process: bool = typer.Option(False, "--in-process", help="Train one after the other here, without Ray."),
    cpus_per_expert: float = typer.Option(1, "--cpus-per-expert", min=0.01, help="CPUs Ray reserves per expert."),
    gpus_per_expert: float = typer.Option(0, "--gpus-per-expert", min=0, help="GPUs (or a fraction) per expert."),
    refresh: bool = typer.Option(False, "--refresh", help="Retrain even if cached experts exist."),
    verbose: bool = VerboseOption,
    tracking_uri: str | None = TrackingUriOption,
    experiment: str = ExperimentOption,
    data_root: Path | None = DataRootOption,
    image_size: int | None = ImageSizeOption,
    device: str = DeviceOption,
) -> None:
    """Train PAD's expert trajectories (one Ray task per expert), cache them and log them to MLflow.

    A setting not given is the one PAD's paper preset has for the data set: the experts that
    `ddorch run --method pad` (with the same settings) looks for in the cache.

    Example: ddorch experts --dataset mnist --num-experts 10 --epochs 50
    """
    from ddcore.data import load_dataset, resolve_data_root
    from ddcore.methods import get_method
    from ddcore.methods.pad.experts import log_experts, obtain_experts
    from orchestrator.cluster import TaskPool, connect
    from orchestrator.run_schema import Tag
    from orchestrator.tracking import Tracker

    data = load_dataset(dataset, data_root, image_size)
    pad = get_method("pad").config("paper", dataset)
    pad = pad.with_overrides(
        model=model,
        num_experts=num_experts,
        trajectory_epochs=epochs,
        lr_teacher=lr,
        expert_batch=batch_size,
        data_schedule=schedule,
        difficulty_score=score,
        seed=seed,
    )
    config = pad.expert_config(dataset, data.image_size)
    config.validate()  # before anything is recorded
    pool = None
    if not verbose:
        _quiet_libraries()
    if not in_process:
        _say_ray_address(address)
        connect(address, verbose=verbose)
        pool = TaskPool(cpus_per_expert, gpus_per_expert)
    tracker = Tracker.start(
        tracking_uri,
        experiment,
        run_name=f"experts-{dataset}-{config.model}-{config.epochs}ep",
        tags={Tag.DATASET: dataset, Tag.STAGE: "experts"},
    )
    try:
        bank = obtain_experts(
            data,
            config,
            pad.num_experts,
            pool.map_unordered if pool is not None else None,  # an idle pool is empty, so falsy
            str(resolve_data_root(data_root)),
            device=device,
            refresh=refresh,
            progress=True,
        )
        log_experts(tracker, bank)
    except BaseException as error:
        tracker.finish(failure=str(error) or type(error).__name__)
        raise
    tracker.finish()
    console.print(
        f"{len(bank)} experts of {bank.manifest.parent.name}: {len(bank.trained_now)} trained now "
        f"({'in this process' if in_process else 'as Ray tasks'}), {len(bank) - len(bank.trained_now)} "
        f"from the cache, in {bank.seconds:.1f} s"
    )
    console.print(f"files in {bank.manifest.parent}; MLflow run {tracker.run_id} in {tracker.tracking_uri}")


@app.command()
@friendly_errors
def lossless(
    dataset: str = DatasetOption,
    method: str = typer.Option(
        "datadam",
        "--method",
        help="Method(s) searched one by one, comma-separated; add `random` for the random-real-subset curve: datadam,random.",
    ),
    model: str = typer.Option(
        "ConvNetD3",
        "--model",
        help="Network distilled with, evaluated on, and trained on the full data for the target.",
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="The method's preset (its per-IPC defaults; default: each method's first, see `ddorch run --help`).",
    ),
    tolerance: float = typer.Option(
        0.0, "--tolerance", min=0, help="Accuracy points below the target still counted as lossless."
    ),
    max_ipc: int = typer.Option(100, "--max-ipc", min=1, help="Largest IPC tried."),
    eval_seeds: int = typer.Option(
        3, "--eval-seeds", min=1, help="Networks trained per synthetic set (K): the mean and its t-interval."
    ),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence of the interval over seeds."),
    iterations: int | None = typer.Option(
        None, "--iterations", help="Distillation iterations (default: the preset's)."
    ),
    eval_protocol: str = EvalProtocolOption,
    eval_epochs: int | None = typer.Option(
        None, "--eval-epochs", help="Override the protocol's epochs, for quick runs (default: the protocol's)."
    ),
    eval_precision: EvalPrecision = EvalPrecisionOption,
    force_bf16: bool = ForceBf16Option,
    target_accuracy: float | None = typer.Option(
        None,
        "--target-accuracy",
        help="Full-data accuracy % measured elsewhere (e.g. 99.49 on a GPU); default: `ddorch baseline`'s cached result, trained now if missing.",
    ),
    baseline_seeds: int = typer.Option(
        3, "--baseline-seeds", min=1, help="Seeds of the full-data target when it is trained here."
    ),
    early_stop: bool = typer.Option(
        True, "--early-stop/--no-early-stop", help="Stop a trial halfway when it cannot become lossless."
    ),
    early_stop_margin: float = typer.Option(
        5.0,
        "--early-stop-margin",
        min=0,
        help="Stop when the halfway accuracy is this many points under the threshold.",
    ),
    budget_hours: float | None = typer.Option(
        None,
        "--budget-hours",
        help="Stop launching new IPCs after this many hours; report what is known (default: no limit).",
    ),
    max_concurrent: int = typer.Option(2, "--max-concurrent", min=1, help="Trials running at once."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial", min=0.01, help="CPUs Ray reserves per trial."),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", min=0, help="GPUs (or a fraction) per trial."),
    address: str | None = AddressOption,
    verbose: bool = VerboseOption,
    dry_run: bool = DryRunOption,
    tracking_uri: str | None = TrackingUriOption,
    mlflow_experiment: str = ExperimentOption,
    output_dir: Path = OutputDirOption,
    data_root: Path | None = DataRootOption,
    device: str = DeviceOption,
) -> None:
    """Find the smallest IPC whose synthetic set matches the full-data accuracy (grid, then bisection, on Ray).

    Example: ddorch lossless --dataset digits --method datadam,random --max-ipc 50
    """
    from ddcore.data import resolve_data_root
    from orchestrator.lossless import LosslessConfig, search_lossless

    config = LosslessConfig(
        dataset=dataset,
        methods=tuple(_split_names(method)),
        model=model,
        preset=preset,
        tolerance=tolerance,
        max_ipc=max_ipc,
        eval_seeds=eval_seeds,
        confidence=confidence,
        iterations=iterations,
        eval_protocol=eval_protocol,
        eval_epochs=eval_epochs,
        eval_precision=eval_precision.value,
        force_bf16=force_bf16,
        target_accuracy=target_accuracy,
        baseline_seeds=baseline_seeds,
        early_stop_margin=early_stop_margin if early_stop else None,
        budget_hours=budget_hours,
        max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        address=address,
        data_root=str(resolve_data_root(data_root)),
        tracking_uri=tracking_uri,
        experiment=mlflow_experiment,
        output_dir=str(output_dir),
        device=device,
        verbose=verbose,
    )
    _say_ray_address(address)
    if dry_run:
        from orchestrator.cluster import check_resources, cluster_resources
        from orchestrator.plan import lossless_plan

        available = cluster_resources(address)
        check_resources(cpus_per_trial, gpus_per_trial, available)
        console.print("\n".join(lossless_plan(config, available).lines), soft_wrap=True, markup=False)
        return

    if not verbose:
        _quiet_libraries()
    report = search_lossless(config, watch=_lossless_view(config), progress=True)
    tables.show(tables.lossless(report, f"Lossless IPC on {dataset} with {model}", confidence))
    for name, result in report.results.items():
        console.print(f"{name}: {result.summary()}")
    if report.budget_spent:
        console.print(f"budget of {budget_hours:g} h spent: no new IPCs were launched after it")
    console.print(
        f"{report.launched} trial(s) run, the rest reused from MLflow; parent run {report.parent_run_id} "
        f"in {report.tracking_uri}; plot {report.plot}; table {report.table}"
    )
    if any(result.failed() for result in report.results.values()):  # as `sweep`: 1 = incomplete
        typer.echo("error: some trials failed (see above); the same command runs them again", err=True)
        raise typer.Exit(code=1)


def _lossless_view(config):
    from orchestrator.live import LosslessProgress, LosslessView

    name = f"{config.dataset} with {config.model}"
    return LosslessView(LosslessProgress(name, config.methods, config.max_ipc, config.max_concurrent), console)


def _analyse(kind: str, run_id: str, config, tracking_uri, data_root, output_dir) -> None:
    from orchestrator.analyses import analyse_run

    outcome = analyse_run(kind, run_id, config, tracking_uri, data_root, output_dir, progress=True)
    tables.show(tables.analysis(outcome.result.table()))
    console.print(f"MLflow run {outcome.run_id} (child of {run_id}); table, numbers and plots in {outcome.folder}")


@app.command("cross-arch")
@friendly_errors
def cross_arch(
    run_id: str = typer.Argument(
        ..., help="An MLflow run (id or unique prefix) with a synthetic set, from `ddorch run` or a sweep trial."
    ),
    eval_models: str = typer.Option(
        "MLP,ConvNetD3,LeNet,AlexNet,VGG11,ResNet18", "--eval-models", help="Comma-separated networks to train."
    ),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per cell (seeds 0..N-1)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Override the protocol's epochs (default: the protocol's)."
    ),
    device: str = DeviceOption,
    eval_protocol: str = EvalProtocolOption,
    eval_batch_size: int | None = EvalBatchSizeOption,
    eval_precision: EvalPrecision = EvalPrecisionOption,
    force_bf16: bool = ForceBf16Option,
    tracking_uri: str | None = TrackingUriOption,
    data_root: Path | None = DataRootOption,
    output_dir: Path = OutputDirOption,
) -> None:
    """Train each network on the run's synthetic set and on random real subsets of its size: the cross-architecture matrix.

    Example: ddorch cross-arch 1a2b3c4d --eval-models MLP,ConvNetD3,ResNet18
    """
    from ddcore.analyses.cross_arch import CrossArchConfig

    config = CrossArchConfig(
        tuple(_split_names(eval_models)),
        eval_seeds,
        epochs,
        device,
        eval_protocol,
        eval_batch_size,
        eval_precision.value,
        force_bf16,
    )
    _analyse("cross_arch", run_id, config, tracking_uri, data_root, output_dir)


@app.command()
@friendly_errors
def continual(
    run_id: str = typer.Argument(..., help="An MLflow run (id or unique prefix) with a synthetic set."),
    classes_per_task: int = typer.Option(2, "--classes-per-task", help="Classes arriving per task."),
    model: str = typer.Option("ConvNetD3", "--model", help="Network trained on each memory (and for herding)."),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per memory (seeds 0..N-1)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per memory training (default: the DC protocol's 1000)."
    ),
    herding_epochs: int = typer.Option(
        5, "--herding-epochs", help="Full-data protocol epochs of the herding feature network."
    ),
    memories: str = typer.Option("distilled,random,herding", "--memories", help="Memory types to compare."),
    device: str = DeviceOption,
    tracking_uri: str | None = TrackingUriOption,
    data_root: Path | None = DataRootOption,
    output_dir: Path = OutputDirOption,
) -> None:
    """Class-incremental learning: distilled memory vs random and herding exemplars, accuracy after each task.

    Example: ddorch continual 1a2b3c4d --classes-per-task 2
    """
    from ddcore.analyses.continual import ContinualConfig

    config = ContinualConfig(
        classes_per_task, model, eval_seeds, epochs, herding_epochs, tuple(_split_names(memories)), device
    )
    _analyse("continual", run_id, config, tracking_uri, data_root, output_dir)


@app.command("nas-proxy")
@friendly_errors
def nas_proxy(
    run_id: str = typer.Argument(..., help="An MLflow run (id or unique prefix) with a synthetic set."),
    eval_models: str | None = typer.Option(
        None, "--eval-models", help="Comma-separated candidate networks (default: 9 ConvNet variants)."
    ),
    eval_seeds: int = typer.Option(1, "--eval-seeds", min=1, help="Networks trained per candidate and side."),
    proxy_epochs: int | None = typer.Option(None, "--proxy-epochs", help="Epochs on the synthetic set (default 1000)."),
    full_epochs: int | None = typer.Option(
        None, "--full-epochs", help="Epochs on real data (default: the full-data protocol's 20)."
    ),
    full_per_class: int | None = typer.Option(
        None, "--full-per-class", help="Real images per class for the real side (default: all)."
    ),
    device: str = DeviceOption,
    tracking_uri: str | None = TrackingUriOption,
    data_root: Path | None = DataRootOption,
    output_dir: Path = OutputDirOption,
) -> None:
    """Rank a pool of networks by training on the synthetic set vs on real data: Spearman correlation, time saved.

    Example: ddorch nas-proxy 1a2b3c4d --eval-seeds 1
    """
    from ddcore.analyses.nas_proxy import DEFAULT_POOL, NasProxyConfig

    candidates = tuple(_split_names(eval_models)) if eval_models else DEFAULT_POOL
    config = NasProxyConfig(candidates, eval_seeds, proxy_epochs, full_epochs, full_per_class, device)
    _analyse("nas_proxy", run_id, config, tracking_uri, data_root, output_dir)


@app.command()
@friendly_errors
def report(
    ids: list[str] = typer.Argument(..., help="Run ids (or unique prefixes), sweep parent run ids or sweep names."),
    output_dir: Path = typer.Option(
        Path("report"),
        "--output-dir",
        callback=_writable_folder,
        help="Folder for report.html (self-contained), report.md and images/.",
    ),
    title: str | None = typer.Option(None, "--title", help="The report's title (default: the ids it covers)."),
    tracking_uri: str | None = TrackingUriOption,
    experiment: str = ExperimentOption,
) -> None:
    """Write an HTML and a Markdown report over runs and sweeps: tables, grids, curves, analyses, commands.

    Example: ddorch report 1a2b3c4d digits_datadam --title "DataDAM on digits" --output-dir report
    """
    from orchestrator.report import build_report

    written = build_report(ids, output_dir, tracking_uri, experiment, title)
    console.print(f"report: {written.html_path} and {written.markdown_path} ({len(written.sections)} sections)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
