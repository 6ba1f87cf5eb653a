"""The full-data baseline: a network trained on the whole real training set (the upper-bound row).

Results are cached on disk by (data set, image size, model, protocol, seed) so that every later
command (DataDAM runs, sweeps, the lossless-IPC search) compares against the same numbers without
retraining.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ddcore.data import get_spec
from ddcore.data.base import RealDataset
from ddcore.evaluate import EvalProtocol, EvalResult, SeedRun, architecture_flops, get_protocol, train_and_test
from ddcore.models import architecture_fingerprint
from ddcore.runtime import resolve_device
from ddcore.shared_cache import shared_entry

CACHE_ENV = "DDORCH_CACHE_DIR"


def baseline_protocol(dataset: str, batch_size: int | None = None) -> EvalProtocol:
    """The seed's full-data protocol with the data set's batch size (`DatasetSpec.full_data_batch`)."""
    return get_protocol("full", batch_size or get_spec(dataset).full_data_batch)


_CACHE_OVERRIDE: list[Path] = []  # set by `caching_in` (a worker given its driver's folder)


def cache_dir() -> Path:
    """The folder `caching_in` set, else `DDORCH_CACHE_DIR`, else `~/.cache/ddorch`."""
    if _CACHE_OVERRIDE:
        return _CACHE_OVERRIDE[-1]
    return Path(os.environ.get(CACHE_ENV, "~/.cache/ddorch")).expanduser()


@contextmanager
def caching_in(folder: str | Path | None) -> Iterator[None]:
    """Baselines, experts and difficulty scores cached in `folder` inside the block (None: unchanged).

    Ray workers get the driver's folder as a value this way, instead of a changed environment."""
    if folder is None:
        yield
        return
    _CACHE_OVERRIDE.append(Path(folder))
    try:
        yield
    finally:
        _CACHE_OVERRIDE.pop()


def _cache_file(
    dataset: str, channels: int, num_classes: int, image_size: int, model_name: str, protocol: EvalProtocol, seed: int
) -> Path:
    # The architecture's fingerprint: a changed network (e.g. DC's MNIST padding) never reads old entries.
    arch = architecture_fingerprint(model_name, channels, num_classes, image_size)
    key = f"{dataset}-{image_size}px_{model_name}-{arch}_{protocol.name}_seed{seed}.json"
    return cache_dir() / "baselines" / key


def cached_runs(dataset: str, model_name: str, seeds: tuple[int, ...]) -> dict[int, SeedRun]:
    """The runs of `dataset`'s full-data baseline (native size, its protocol) already cached, by seed,
    among `seeds`.

    Reads no images: a planner (the benchmark suite) asks before deciding what fits its budget."""
    spec = get_spec(dataset)
    protocol = baseline_protocol(dataset)
    shape = (dataset, spec.channels, spec.num_classes, spec.image_size)
    runs = {seed: SeedRun.load(_cache_file(*shape, model_name, protocol, seed), "baseline") for seed in seeds}
    return {seed: run for seed, run in runs.items() if run is not None}


def full_data_baseline(
    data: RealDataset,
    model_name: str,
    seeds: tuple[int, ...] = (0,),
    protocol: EvalProtocol | None = None,
    device: str | torch.device = "auto",
    refresh: bool = False,
    progress: bool = False,
) -> tuple[EvalResult, list[bool]]:
    """Train `model_name` on all real training images once per seed, reusing cached seeds.

    With a validation part held out (`RealDataset.with_validation`) only the rest: cached apart.

    Returns the result and, per seed, whether it came from the cache. `protocol=None` is the
    data set's full-data protocol (`baseline_protocol`).
    """
    protocol = protocol or baseline_protocol(data.name)
    device = resolve_device(device)
    flops = architecture_flops(model_name, data.channels, data.num_classes, data.image_size)
    result = EvalResult(model_name, protocol.name, flops)
    from_cache = []
    # One seed at a time, not as one wide network (`evaluate`): a full-data seed takes an hour on a
    # laptop CPU, and a run stopped midway keeps every seed it finished.
    for seed in seeds:
        path = _cache_file(
            data.training_part, data.channels, data.num_classes, data.image_size, model_name, protocol, seed
        )
        with shared_entry(path, lambda path=path: SeedRun.load(path, "baseline") is not None, refresh) as produce:
            if produce:
                run = train_and_test(
                    model_name, data.train_images, data.train_labels, data, protocol, seed, device, progress=progress
                )
                run.save(path, device=str(device), torch=torch.__version__)
        result.runs.append(run if produce else SeedRun.load(path, "baseline"))
        from_cache.append(not produce)
    return result, from_cache
