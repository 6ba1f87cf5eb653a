"""Dry runs: what a sweep or a lossless search would run, and how long it would take, without running it.

The estimate comes from a short calibration on this machine at the plan's image size and
networks: a few distillation iterations with one synthetic image and a small real batch per class,
and two evaluation epochs on a few real images. Both costs are then scaled by the number of images
a real iteration or epoch sends through the network (synthetic + real batch per class; the set's
size), by iterations, epochs and trials, and divided by the trials that run at once. Timing full-size
iterations would itself take minutes on a CPU; the image-count model is what keeps a dry run short.
It is an estimate: it leaves out fixed per-iteration overheads, data loading and uncached baselines.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from ddcore.data.base import RealDataset
from ddcore.evaluate import EvalProtocol, autocast, train_network
from ddcore.methods import MethodConfig, get_method
from ddcore.runtime import resolve_device
from orchestrator.engine.experiments import ExperimentPreset, SearchSpace
from orchestrator.engine.ipc_search import geometric_grid
from orchestrator.engine.lossless import LosslessConfig, build_request
from orchestrator.engine.resolve import check_data
from orchestrator.engine.trial import TrialConfig
from orchestrator.store.run_schema import SELECTED_ON

DAY_SECONDS = 24 * 3600
CALIBRATION_ITERATIONS = 2  # the first warms up (set-up); the interval to the second is timed
CALIBRATION_BATCH_REAL = 4
CALIBRATION_EPOCHS = 1
CALIBRATION_IMAGES_PER_CLASS = 10
CALIBRATION_TEST_IMAGES = 32


def images_per_iteration(method: str, config: MethodConfig, dataset: str) -> int:
    """Images per class one distillation iteration sends through the network (the method's `cost`)."""
    return get_method(method).cost(config, dataset).images_per_iteration


@dataclass(frozen=True)
class Calibration:
    """Seconds measured here for one image through one step, and for testing a network once."""

    distill_per_image: dict[str, float]  # by method: one image in one distillation iteration
    train_per_image: float  # one image in one evaluation epoch
    test_seconds: float  # one trained network on the real test set
    threads: int

    def iteration_seconds(self, method: str, config: MethodConfig, dataset: str, classes: int) -> float:
        return self.distill_per_image[method] * classes * images_per_iteration(method, config, dataset)

    def evaluation_seconds(self, ipc: int, classes: int, epochs: int) -> float:
        return epochs * ipc * classes * self.train_per_image + self.test_seconds

    def trial_seconds(self, trial: TrialConfig, classes: int, quick_evaluations: int) -> float:
        """Distillation, the one-seed quick evaluations, then every eval model with every seed."""
        config = trial.method_config
        evaluation = self.evaluation_seconds(config.ipc, classes, trial.protocol().epochs)
        final = trial.eval.seeds * len(trial.eval.models)
        return (
            config.iterations * self.iteration_seconds(trial.method, config, trial.dataset, classes)
            + (quick_evaluations + final) * evaluation
        )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Calibrate with the threads one trial gets (Ray gives a trial as many as its CPUs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def calibrate(data: RealDataset, trials: list[TrialConfig], threads: int) -> Calibration:
    """Time each method's distillation and the first trial's evaluation network at small sizes."""
    with torch_threads(threads):
        first_of_each = {t.method: t for t in reversed(trials)}  # one calibration per method
        per_method = {m: _distill_per_image(data, m, t.method_config) for m, t in first_of_each.items()}
        train, test = _evaluation_rates(data, trials[0])
    return Calibration(per_method, train, test, threads)


def _distill_per_image(data: RealDataset, method: str, config: MethodConfig) -> float:
    small = {"ipc": 1, "iterations": CALIBRATION_ITERATIONS, "log_every": 1}
    if hasattr(config, "batch_real"):
        small["batch_real"] = min(config.batch_real, CALIBRATION_BATCH_REAL)
    small_config = config.with_overrides(**small)
    stamps: list[float] = []
    get_method(method).distill(data, small_config, callback=lambda _report: stamps.append(time.perf_counter()))
    if len(stamps) < 2:  # one step in all (the random subset): nothing to time, and nothing to scale
        return 0.0
    seconds = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return seconds / (data.num_classes * images_per_iteration(method, small_config, data.name))


def _evaluation_rates(data: RealDataset, trial: TrialConfig) -> tuple[float, float]:
    """(seconds per image per epoch, seconds of the test pass) of the first eval model, on a few real images."""
    import torch

    from ddcore.models import get_model

    device = resolve_device(trial.method_config.device)
    model = get_model(trial.eval.models[0], data.channels, data.num_classes, data.image_size).to(device)
    picked = torch.cat([indices[:CALIBRATION_IMAGES_PER_CLASS] for indices in data.class_indices])
    protocol: EvalProtocol = replace(trial.protocol(), epochs=CALIBRATION_EPOCHS)
    images, labels = data.train_images[picked].to(device), data.train_labels[picked].to(device)
    started = time.perf_counter()
    train_network(model, images, labels, protocol, 0, dsa_strategy=trial.method_config.dsa_strategy)
    train = (time.perf_counter() - started) / (CALIBRATION_EPOCHS * len(picked))
    model.eval()
    sample = data.test_images[:CALIBRATION_TEST_IMAGES].to(device)
    with torch.no_grad(), autocast(protocol, device):  # the test pass in the trial's precision, as it runs
        model(sample[:2])  # the first call sets up kernels: not part of the rate
        started = time.perf_counter()
        model(sample)
    return train, (time.perf_counter() - started) * len(data.test_labels) / len(sample)


def concurrent_trials(max_concurrent: int, cpus: float, gpus: float, available: dict[str, float]) -> int:
    """Trials that fit at once: the setting, capped by the cluster's CPUs and GPUs."""
    fits = [max_concurrent, math.floor(available.get("CPU", 0) / cpus)]
    if gpus > 0:
        fits.append(math.floor(available.get("GPU", 0) / gpus))
    return max(1, min(fits))


def asha_shares(grace_period: int, reduction_factor: int, max_t: int) -> tuple[float, float]:
    """(expected share of the iterations a trial runs, share of trials that reach the end) under ASHA:
    a 1/reduction_factor of the trials passes each rung at grace_period * reduction_factor^k."""
    rungs = []
    milestone = grace_period
    while milestone < max_t:
        rungs.append(milestone)
        milestone *= reduction_factor
    edges = [0, *rungs, max_t]
    ran = sum((edges[k + 1] - edges[k]) / reduction_factor**k for k in range(len(edges) - 1))
    return ran / max_t, reduction_factor ** -len(rungs)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY_SECONDS:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_SECONDS:.1f} days"


def resources_line(cpus: float, gpus: float, slots: int, available: dict[str, float]) -> str:
    return (
        f"resources: {cpus:g} CPU and {gpus:g} GPU per trial, {slots} at a time "
        f"(cluster: {available.get('CPU', 0):g} CPUs, {available.get('GPU', 0):g} GPUs)"
    )


def calibration_line(calibration: Calibration) -> str:
    rates = ", ".join(f"{m} {1000 * s:.1f} ms" for m, s in calibration.distill_per_image.items())
    return (
        f"calibration here ({calibration.threads} thread(s)): per image per distillation iteration {rates}; "
        f"per image per evaluation epoch {1000 * calibration.train_per_image:.2f} ms; "
        f"test pass {calibration.test_seconds:.1f} s"
    )


def too_long_lines(seconds: float, remedies: str) -> list[str]:
    if seconds <= DAY_SECONDS:
        return []
    return [f"more than a day: {remedies}"]


# --- sweeps ---------------------------------------------------------------------------------------


def sweep_points(space: SearchSpace) -> tuple[list[dict], int]:
    """The sampled values a trial's cost depends on (every listed value; continuous ones keep the
    preset's) as equally likely points, and how many trials each sample makes (grid axes multiply)."""
    listed = [d for d in space.distributions if d.kind in ("choice", "grid")]
    points = [dict(zip([d.name for d in listed], values)) for values in itertools.product(*(d.values for d in listed))]
    per_sample = math.prod(len(d.values) for d in listed if d.kind == "grid")
    return points, per_sample


@dataclass(frozen=True)
class SweepPlan:
    lines: list[str]
    seconds_at_most: float
    seconds_with_asha: float


def sweep_plan(
    preset: ExperimentPreset,
    space: SearchSpace,
    num_samples: int,
    max_concurrent: int,
    cpus: float,
    gpus: float,
    available: dict[str, float],
    data_root: str | None,
    device: str,
    force_bf16: bool = False,
) -> SweepPlan:
    from orchestrator.engine.sweep import preset_trial

    trials = [preset_trial(preset, point, data_root, device, force_bf16) for point in sweep_points(space)[0]]
    data = check_data(trials)
    first = trials[0]
    iterations = first.method_config.iterations
    total_trials = num_samples * sweep_points(space)[1]
    slots = concurrent_trials(max_concurrent, cpus, gpus, available)
    calibration = calibrate(data, trials, max(1, int(cpus)))
    quick = max(0, math.ceil(iterations / preset.report_every) - 1)
    mean_trial = sum(calibration.trial_seconds(t, data.num_classes, quick) for t in trials) / len(trials)
    at_most = total_trials * mean_trial / slots
    grace = min(preset.asha.grace_period, iterations)
    ran, finished = asha_shares(grace, preset.asha.reduction_factor, iterations)
    final = first.eval.seeds * len(first.eval.models)
    evaluation_share = final / (quick + final) if quick + final else 0.0
    with_asha = at_most * ((1 - evaluation_share) * ran + evaluation_share * finished)
    searched = "; ".join(_distribution_text(d) for d in space.distributions)
    lines = [
        f"Dry run of sweep {preset.name}: nothing is started and nothing is logged to MLflow.",
        f"data set: {preset.dataset} ({len(data.train_labels)} training images, {data.num_classes} classes, "
        f"{data.image_size} px)",
        f"method: {preset.method} (preset {first.preset}), {iterations} iterations, network {first.method_config.model}",
        f"fixed: {_values_text(preset.fixed) or '-'}",
        f"searched: {searched}",
        f"trials: {total_trials}",
        f"ASHA: grace period {grace}, reduction factor {preset.asha.reduction_factor}, "
        f"evaluation every {preset.report_every} iterations",
        f"evaluation: {', '.join(first.eval.models)}, {first.eval.seeds} seed(s), "
        f"{first.protocol().name} protocol ({first.protocol().epochs} epochs)",
        resources_line(cpus, gpus, slots, available),
        calibration_line(calibration),
        f"one trial: about {duration(mean_trial)} run to the end (mean over {len(trials)} cost point(s))",
        f"estimated wall time: at most {duration(at_most)} (every trial to the end), "
        f"about {duration(with_asha)} with ASHA stopping weak trials",
        *too_long_lines(
            with_asha,
            "fewer trials (--num-samples), fewer iterations (--set iterations=...), or a cluster with GPUs (--address)",
        ),
    ]
    return SweepPlan(lines, at_most, with_asha)


def _values_text(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _distribution_text(d) -> str:
    if d.values:
        return f"{d.name} {d.kind} {list(d.values)}"
    return f"{d.name} {d.kind}({d.low:g}, {d.high:g})"


# --- lossless searches ----------------------------------------------------------------------------


def lossless_ipcs(max_ipc: int) -> tuple[list[int], int]:
    """The grid the search walks up (stopping at the first lossless IPC) and, at most, the
    bisection steps after it (between the last two grid points, the widest gap)."""
    grid = geometric_grid(max_ipc)
    gap = grid[-1] - grid[-2] if len(grid) > 1 else 0
    return grid, max(0, math.ceil(math.log2(gap))) if gap > 1 else 0


@dataclass(frozen=True)
class LosslessPlan:
    lines: list[str]
    seconds_at_most: float


def lossless_plan(config: LosslessConfig, available: dict[str, float]) -> LosslessPlan:
    config.validate()
    grid, bisection = lossless_ipcs(config.max_ipc)
    requests = {m: {ipc: build_request(config, m, ipc, threshold=0.0) for ipc in grid} for m in config.methods}
    trials_by_method = {m: {ipc: r.trial for ipc, r in by_ipc.items()} for m, by_ipc in requests.items()}
    data = check_data([t for by_ipc in trials_by_method.values() for t in by_ipc.values()])
    quick_evaluations = 1 if config.early_stop_margin is not None else 0
    slots = concurrent_trials(config.max_concurrent, config.cpus_per_trial, config.gpus_per_trial, available)
    trials = [trial for by_ipc in trials_by_method.values() for trial in by_ipc.values()]
    calibration = calibrate(
        data, [trials_by_method[m][grid[0]] for m in trials_by_method], max(1, int(config.cpus_per_trial))
    )
    per_method = {
        method: [calibration.trial_seconds(t, data.num_classes, quick_evaluations) for t in by_ipc.values()]
        for method, by_ipc in trials_by_method.items()
    }
    # Worst case: every grid IPC, then the bisection's steps at about the largest IPC's cost.
    total = sum(sum(times) + bisection * times[-1] for times in per_method.values())
    at_most = total / slots
    target = (
        f"{config.target_accuracy:g} % (given)"
        if config.target_accuracy is not None
        else f"the full-data baseline of {config.model} (cached, or trained first: not in the estimate)"
    )
    first = trials[0]
    # The estimate counts `eval_seeds` networks; sequential seeds may add up to `max_eval_seeds`.
    seeds = (
        f"{config.eval_seeds} to {config.max_eval_seeds}"
        if config.max_eval_seeds > config.eval_seeds
        else config.eval_seeds
    )
    lines = [
        f"Dry run of the lossless search on {config.dataset}: nothing is started and nothing is logged to MLflow.",
        f"data set: {config.dataset} ({len(data.train_labels)} training images, {data.num_classes} classes, "
        f"{data.image_size} px)",
        f"methods: {', '.join(config.methods)}; network {config.model}",
        f"target: {target}, tolerance {config.tolerance:g} points",
        f"IPCs to try: {', '.join(map(str, grid))} (up to the first lossless one), "
        f"then at most {bisection} bisection step(s)",
        f"per IPC: {first.method_config.iterations} iterations, "
        + ("a halfway check stops hopeless trials, " if quick_evaluations else "")
        + f"{seeds} evaluation seed(s), {first.protocol().name} protocol ({first.protocol().epochs} epochs), "
        f"decided on the {SELECTED_ON[config.selection]}",
        resources_line(config.cpus_per_trial, config.gpus_per_trial, slots, available),
        calibration_line(calibration),
        *(
            f"{method} IPC {ipc}: about {duration(seconds)}"
            for method, by_ipc in trials_by_method.items()
            for ipc, seconds in zip(by_ipc, per_method[method])
        ),
        f"estimated wall time: at most {duration(at_most)} (every grid IPC and every bisection step)",
        *too_long_lines(
            at_most, "cap it with --budget-hours, lower --max-ipc or --iterations, or use a cluster (--address)"
        ),
    ]
    return LosslessPlan(lines, at_most)
