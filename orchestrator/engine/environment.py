"""`ddorch env`: what a bug report needs to know about this machine, as plain text to paste.

In the spirit of `transformers env` and `torch.utils.collect_env`: versions, the processors and
what they compute natively, the data sets found, and where runs and caches go. Versions are read
from the installed packages' metadata, so Ray and MLflow are neither imported nor started.
`calibrate` adds the dry runs' own calibration (`orchestrator.engine.plan.calibrate`) in each precision
native here, so the figures are the ones `--dry-run` estimates from.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

import torch

from ddcore import hardware
from ddcore.baseline import cache_dir
from ddcore.data import DATASETS, dataset_status, load_dataset, resolve_data_root
from ddcore.evaluate import EvalSpec
from ddcore.runtime import resolve_device
from orchestrator.engine.resolve import Layers, resolve_trial
from orchestrator.store.tracking import git_commit, package_versions, resolve_tracking_uri

CALIBRATION_DATASETS = ("mnist", "digits")  # the first found: MNIST is what RESULTS.md's speeds are on


def precisions_text(support: hardware.Bf16Support) -> str:
    if support.native:
        return "fp32, bf16 (native)"
    return f"fp32; bf16 not native (lacks {support.lacks}: refused unless --force-bf16)"


def hardware_lines() -> list[str]:
    cpu = hardware.cpu_report()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"CPU: {cpu.name}, {os.cpu_count()} cores ({usable} usable here), torch uses {torch.get_num_threads()} threads",
        f"CPU ISA: {cpu.isa()} (torch's kernels: {cpu.capability})",
        f"CPU precisions: {precisions_text(hardware.cpu_bf16(cpu))}",
    ]
    gpus = hardware.gpu_reports()
    if not gpus:
        lines.append("GPUs: none visible to torch (CUDA)")
    for gpu in gpus:
        lines += [
            f"GPU {gpu.index}: {gpu.name}, {gpu.memory_gib:.1f} GiB, compute capability "
            f"{gpu.capability[0]}.{gpu.capability[1]}",
            f"GPU {gpu.index} precisions: {precisions_text(hardware.gpu_bf16(gpu))}",
        ]
    return lines


def data_lines(data_root: str | Path | None) -> list[str]:
    root = resolve_data_root(data_root)
    statuses = {name: dataset_status(name, root) for name in DATASETS}
    found = [f"{name} ({text})" for name, (ok, text) in statuses.items() if ok]
    missing = [name for name, (ok, _) in statuses.items() if not ok]
    lines = [f"data root: {root}", f"data sets found: {'; '.join(found) or 'none'}"]
    if missing:
        lines.append(f"data sets not found: {', '.join(missing)} (`ddorch datasets` says where it looked)")
    return lines


def environment_lines(data_root: str | Path | None, tracking_uri: str | None) -> list[str]:
    """Everything but the calibration: quick, no Ray, no MLflow store opened."""
    return [
        f"ddorch: {metadata.version('ddorch')} (commit {git_commit()})",
        f"versions: {package_versions()}",
        f"platform: {platform.platform()}",
        *hardware_lines(),
        *data_lines(data_root),
        f"tracking URI: {resolve_tracking_uri(tracking_uri)}",
        f"cache folder: {cache_dir()}",
    ]


def calibration_lines(data_root: str | Path | None) -> list[str]:
    """The dry runs' calibration (`orchestrator.engine.plan`) in each precision native on the device runs use
    here (`--device auto`), with the DataDAM iteration and evaluation step it predicts."""
    from orchestrator.engine.plan import calibrate, calibration_line

    root = resolve_data_root(data_root)
    dataset = next(name for name in CALIBRATION_DATASETS if dataset_status(name, root)[0])
    data = load_dataset(dataset, root)
    device = resolve_device("auto")
    precisions = ["fp32", "bf16"] if hardware.bf16_support(device).native else ["fp32"]
    lines = [f"calibration on {dataset} ({device.type}), as `--dry-run` does:"]
    for precision in precisions:
        started = time.perf_counter()
        flags = {"bf16": precision == "bf16"}
        trial = resolve_trial("datadam", dataset, None, None, EvalSpec(precision=precision), Layers(flags=flags))
        preset, method = trial.preset, trial.method_config
        measured = calibrate(data, [trial], torch.get_num_threads())
        seconds = time.perf_counter() - started
        protocol = trial.protocol()
        lines += [
            f"  {precision}: {calibration_line(measured)} (measured in {seconds:.1f} s)",
            f"  {precision}: predicts a DataDAM iteration of {measured.iteration_seconds('datadam', method, dataset, data.num_classes):.2f} s "
            f"({preset} preset: IPC {method.ipc}, {method.batch_real} real images per class, {method.model}) and "
            f"an evaluation step of {1000 * measured.train_per_image * protocol.batch_size:.0f} ms "
            f"({protocol.name}, batch {protocol.batch_size})",
        ]
    return lines
