"""`ddorch sweep`: a Ray Tune search over a preset's space, with ASHA and a live view."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console


def sweep(
    preset_name: str = typer.Argument(..., metavar="experiment", help="An experiment name from `ddorch experiments`."),
    space_file: Path | None = typer.Option(None, "--space", help="Search space TOML (default: the preset's)."),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Fix a method setting in every trial, over the preset's and the sampled values, e.g. --set ipc=10 (repeatable).",
    ),
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
    ray: Annotated[options.RayOptions, options.Offer("address")] = options.RayOptions(),
    storage_path: Path = typer.Option(
        Path("ray_results"), "--storage-path", help="Ray's experiment storage (shared on clusters)."
    ),
    name: str | None = typer.Option(None, "--name", help="Sweep name (default: the experiment's)."),
    eval_protocol: str | None = typer.Option(
        None, "--eval-protocol", help=f"Default: the preset's. {options.PROTOCOL_CHOICES}."
    ),
    eval_precision: options.EvalPrecision | None = typer.Option(
        None,
        "--eval-precision",
        help=f"fp32 or bf16 evaluation forwards (default: the preset's, fp32); bf16 {options.NATIVE_BF16}.",
    ),
    force_bf16: bool = options.ForceBf16Option,
    selection: options.Selection | None = typer.Option(
        None, "--selection", help="What ASHA and the ranking read: val (default) or test (see `ddorch run --help`)."
    ),
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
    dry_run: bool = options.DryRunOption,
    setup: Annotated[
        options.Setup, options.Offer("tracking_uri", "experiment", "output_dir", "data_root", "device")
    ] = options.Setup(),
) -> None:
    """Search an experiment's space with Ray Tune and ASHA; every trial is an MLflow child run.

    Example: ddorch sweep digits_datadam --num-samples 4 --seed 1
    """
    from dataclasses import replace

    from ddcore.data import given_data_root, resolve_data_root
    from orchestrator.engine.cluster import (
        check_resources,
        check_shared_store,
        cluster_resources,
        connect,
        preset_resources,
        requested_address,
    )
    from orchestrator.engine.experiments import check_protocol, load_experiment, load_space, parse_overrides
    from orchestrator.engine.sweep import (
        SweepSettings,
        check_resumable,
        check_sweep,
        failures,
        record_in_parent,
        run_sweep,
        summarize,
        trial_length,
    )
    from orchestrator.store.tracking import check_reachable, resolve_tracking_uri

    preset = load_experiment(preset_name)
    evaluation = replace(
        preset.eval,
        protocol=eval_protocol or preset.eval.protocol,
        precision=eval_precision.value if eval_precision else preset.eval.precision,
    )
    preset = replace(
        preset,
        settings=parse_overrides(overrides, preset.method),
        eval=evaluation,
        selection=selection.value if selection else preset.selection,
    )
    check_protocol(preset)
    fixed = {**preset.fixed, **preset.settings}
    space = load_space(space_file or preset.space, preset.method, preset.dataset, preset.preset, fixed)
    local = requested_address(ray.address)[0] is None  # trials run on this machine: its data and bf16 are checked now
    check_sweep(preset, space, str(resolve_data_root(setup.data_root)), setup.device, force_bf16, local)
    sweep_name, storage = name or preset.name, str(storage_path.resolve())
    if resume:
        check_resumable(sweep_name, storage)  # before starting Ray
    ray.announce()
    if not dry_run:
        if not verbose:
            options.quiet_libraries()
        connect(ray.address, verbose=verbose)  # a dry run joins a cluster (--address) only to read its resources
    available = cluster_resources(ray.address)
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
        from orchestrator.engine.plan import sweep_plan

        plan = sweep_plan(
            preset,
            space,
            settings.num_samples,
            settings.max_concurrent,
            cpus,
            gpus,
            available,
            str(resolve_data_root(setup.data_root)),
            setup.device,
            force_bf16,
        )
        console.print("\n".join(plan.lines), soft_wrap=True, markup=False)
        return
    uri = resolve_tracking_uri(setup.tracking_uri)
    check_reachable(uri)
    check_shared_store(uri, ray.address)
    console.print(f"follow it in MLflow: ddorch ui --tracking-uri {uri}")
    callbacks = () if verbose else (_live_view(settings, space, trial_length(preset), preset.selection),)
    context = {
        "tracking_uri": uri,
        "experiment": setup.experiment,
        "output_dir": str(setup.output_dir.resolve()),
        "data_root": given_data_root(setup.data_root),  # a node without it resolves its own default
        "device": setup.device,
        "force_bf16": force_bf16,
    }
    results, parent, iterations = run_sweep(
        preset, space, settings, context, resume=resume, callbacks=callbacks, verbose=verbose
    )
    rows = summarize(results, iterations, preset.selection)
    folder = record_in_parent(parent, rows, space, setup.output_dir.resolve())
    tables.show(tables.sweep_rows(f"Sweep {settings.name}: {len(rows)} trials", rows, space.names()))
    console.print(
        f"MLflow parent run {parent.run_id} in {uri}; artefacts in {folder}; "
        f"Ray results in {Path(settings.storage_path) / settings.name}"
    )
    failed = failures(rows)
    if failed:  # exit 1 (2 is bad input): scripts learn that the sweep is incomplete
        typer.echo(f"error: {failed}; the other trials' results are recorded", err=True)
        raise typer.Exit(code=1)


def _live_view(settings, space, iterations: int, selection: str):
    from orchestrator.views.live import LiveView, SweepProgress

    progress = SweepProgress(settings.name, space.trial_count(settings.num_samples), iterations, selection=selection)
    return LiveView(progress, console)
