"""`ddorch experts`: PAD's expert trajectories, trained once (in parallel on a Ray cluster) and cached."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from orchestrator.cli import options
from orchestrator.views.tables import console

# The experts' settings, named as PAD's config names them (`with_overrides`); None: PAD's paper preset.
PadSettings = options.group("pad")


def experts(
    dataset: str = options.DatasetOption,
    pad_settings: PadSettings = PadSettings(),
    selection: options.Selection = options.selection_option(options.Selection.test),
    ray: options.RayOptions = options.RayOptions(),
    in_process: bool = typer.Option(False, "--in-process", help="Train one after the other here, without Ray."),
    cpus_per_expert: float = typer.Option(1, "--cpus-per-expert", min=0.01, help="CPUs Ray reserves per expert."),
    gpus_per_expert: float = typer.Option(0, "--gpus-per-expert", min=0, help="GPUs (or a fraction) per expert."),
    refresh: bool = typer.Option(False, "--refresh", help="Retrain even if cached experts exist."),
    setup: Annotated[
        options.Setup, options.Offer("tracking_uri", "experiment", "data_root", "image_size", "device")
    ] = options.Setup(),
) -> None:
    """Train PAD's expert trajectories (one Ray task per expert), cache them and log them to MLflow.

    A setting not given is the one PAD's paper preset has for the data set: the experts that
    `ddorch run --method pad` (with the same settings) looks for in the cache.

    Example: ddorch experts --dataset mnist --num-experts 10 --epochs 50
    """
    from ddcore.data import given_data_root
    from ddcore.methods import get_method
    from ddcore.methods.pad.experts import log_experts, obtain_experts
    from orchestrator.engine.cluster import TaskPool, check_shared_store, connect
    from orchestrator.engine.trial import load_cached
    from orchestrator.store.run_schema import Tag
    from orchestrator.store.shared_cache import sharing
    from orchestrator.store.tracking import Tracker, resolve_tracking_uri

    # As the trials it serves load it: `--selection val` for sweeps and lossless searches (their default).
    data = load_cached(dataset, setup.data_root, setup.image_size, selection.value)
    pad = get_method("pad").config("paper", dataset)
    pad = pad.with_overrides(**asdict(pad_settings))
    config = pad.expert_config(dataset, data.image_size)
    config.validate()  # before anything is recorded
    pool = None
    ray.quiet()
    if not in_process:
        ray.announce()
        connect(ray.address, verbose=ray.verbose)
        pool = TaskPool(cpus_per_expert, gpus_per_expert)
        check_shared_store(resolve_tracking_uri(setup.tracking_uri), ray.address)
    tracker = Tracker.start(
        setup.tracking_uri,
        setup.experiment,
        run_name=f"experts-{dataset}-{config.model}-{config.epochs}ep",
        tags={Tag.DATASET: dataset, Tag.STAGE: "experts"},
    )
    try:
        with sharing(tracker.tracking_uri):  # experts other nodes' trials then find
            bank = obtain_experts(
                data,
                config,
                pad.num_experts,
                pool.map_unordered if pool is not None else None,  # an idle pool is empty, so falsy
                given_data_root(setup.data_root),  # a node without it resolves its own default
                device=setup.device,
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
