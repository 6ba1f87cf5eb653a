"""Expert trajectories: networks trained on the real data, their parameters saved after every epoch.

Trajectory matching (MTT, Cazenavette et al. 2022; DATM, Guo et al. 2024; PAD, Li et al. 2024)
first trains N "experts" and records each one's parameters at every epoch; distillation then
asks a student trained on the synthetic set to follow those trajectories (`ddcore.methods.pad`).

Recipe, from the official buffer scripts (GeorgeCazenavette/mtt-distillation `buffer.py`,
NUS-HPC-AI-Lab/PAD `buffer/buffer_CL.py`): SGD with lr 0.01 (`lr_teacher`), momentum 0, no
weight decay, batches of 256, DSA augmentation drawn per image on every batch (the official
`epoch(..., aug=True)` calls DiffAugment without a seed), no learning-rate decay; PAD trains 100
epochs. PAD adds a data scheduler (`DataSchedule`) over samples sorted by difficulty
(`ddcore.methods.pad.difficulty`).

Differences, on purpose:
- PAD's `buffer_CL.py` trains its experts with GSAM (a sharpness-aware optimiser, rho 0.01); we
  use plain SGD as MTT's `buffer.py` does: PAD's paper presents the scheduler, not the optimiser,
  as its contribution, and SAM doubles the cost of every step.
- The scheduler's epochs are given for PAD's 100-epoch run and scaled to the run's length.
- Trajectories are stored one file per expert (a float32 tensor (epochs + 1, parameters), row 0
  the initialisation) with a JSON manifest, in the cache (`DDORCH_CACHE_DIR`) under a key made
  of every setting that changes them, so a later request with the same key reuses them and a
  request for more experts trains only the missing ones.
- Experts are independent tasks (one per expert) when the caller passes a `parallel_map` (the
  orchestrator's Ray task pool): a cluster trains them in parallel; each task loads the data set
  itself and returns its trajectory to the driver, which writes the files (no shared file system
  needed). ddcore itself never imports Ray.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.augment import dsa
from ddcore.baseline import cache_dir
from ddcore.data import get_spec
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import PER_IMAGE, measure_accuracy
from ddcore.methods.pad.difficulty import SCORES, DifficultyConfig, difficulty_scores, easiest_first_by_class
from ddcore.models import architecture_fingerprint, get_model
from ddcore.progress import progress_bar
from ddcore.runtime import resolve_device, seed_everything, write_atomically
from ddcore.shared_cache import shared_entry

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DataSchedule:
    """PAD's curriculum for experts (Li et al. 2024, Sec. 3.1; `buffer_CL.py`), with 0-based epochs e.

    e <= add_end_epoch: the easiest fraction min(1, init_ratio + (1 - init_ratio) e / add_end_epoch)
    of every class; then every sample until remove_first_epoch; then every class without its
    easiest remove_first_ratio until remove_second_epoch; then without its easiest
    remove_second_ratio. The epochs refer to a run of `reference_epochs` (PAD's official 100):
    `scaled` maps them onto another length.
    """

    init_ratio: float = 0.75
    add_end_epoch: int = 20
    remove_first_epoch: int = 40
    remove_first_ratio: float = 0.1
    remove_second_epoch: int = 60
    remove_second_ratio: float = 0.2
    reference_epochs: int = 100

    def scaled(self, epochs: int) -> DataSchedule:
        """The same schedule for a run of `epochs` (stage epochs rounded; adding lasts at least one epoch)."""
        factor = epochs / self.reference_epochs
        return replace(
            self,
            add_end_epoch=max(1, round(self.add_end_epoch * factor)),
            remove_first_epoch=round(self.remove_first_epoch * factor),
            remove_second_epoch=round(self.remove_second_epoch * factor),
            reference_epochs=epochs,
        )

    def stage(self, epoch: int) -> tuple[float, float]:
        """(fraction of the easiest samples kept from the start, fraction of the easiest dropped)."""
        if epoch <= self.add_end_epoch:
            return min(1.0, self.init_ratio + (1 - self.init_ratio) * epoch / self.add_end_epoch), 0.0
        if epoch <= self.remove_first_epoch:
            return 1.0, 0.0
        if epoch <= self.remove_second_epoch:
            return 1.0, self.remove_first_ratio
        return 1.0, self.remove_second_ratio

    def subset(self, easiest_first: list[torch.Tensor], epoch: int) -> torch.Tensor:
        """The training indices of `epoch`, given each class's indices from easiest to hardest."""
        keep, drop = self.stage(epoch)
        parts = [order[int(drop * len(order)) : int(keep * len(order))] for order in easiest_first]
        return torch.cat(parts)

    def validate(self) -> None:
        for name in ("init_ratio", "remove_first_ratio", "remove_second_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise DDError(f"data schedule {name} must be within [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class ExpertConfig:
    """Everything that changes an expert's trajectory; its hash names the cache folder."""

    dataset: str
    image_size: int
    model: str = "ConvNetD3"
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0  # the official buffer's SGD: no momentum, no weight decay
    weight_decay: float = 0.0
    batch_size: int = 256
    dsa_strategy: str = "color_crop_cutout_scale_rotate"
    schedule: DataSchedule | None = field(default_factory=DataSchedule)  # None: all data every epoch (MTT)
    score: str = "el2n"  # which difficulty score orders the samples
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    seed: int = 0
    architecture: str = ""  # the network's fingerprint, set by `obtain_experts`: a changed network never reuses a cache
    # "<size>:<digest>" of the validation part held out of the training images (`RealDataset.with_validation`),
    # set by `obtain_experts`; "" when experts learn from every training image.
    holdout: str = ""

    @classmethod
    def for_dataset(
        cls, dataset: str, image_size: int, model: str = "ConvNetD3", schedule: bool = True, **settings: Any
    ) -> ExpertConfig:
        """The official recipe on `dataset`; difficulty networks share the model, batch size and seed.

        Batch and DSA default to the data set's (`DatasetSpec`), as in PAD's paper preset.
        """
        if not {"dsa_strategy", "batch_size"} <= settings.keys():  # a set not in DATASETS gives both
            spec = get_spec(dataset)
            settings = {"dsa_strategy": spec.dsa_strategy, "batch_size": spec.full_data_batch, **settings}
        config = cls(
            dataset=dataset,
            image_size=image_size,
            model=model,
            schedule=DataSchedule() if schedule else None,
            **settings,
        )
        difficulty = DifficultyConfig(model=model, batch_size=config.batch_size, seed=config.seed)
        return replace(config, difficulty=difficulty)

    def key(self) -> str:
        values = asdict(self)
        if not self.holdout:  # the keys of experts cached before validation parts existed
            del values["holdout"]
        digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
        kind = "pad" if self.schedule else "all"
        return f"{self.dataset}-{self.image_size}px_{self.model}_{self.epochs}ep_lr{self.lr:g}_{kind}_{digest}"

    def folder(self) -> Path:
        return cache_dir() / "experts" / self.key()

    def validate(self) -> None:
        if self.epochs < 1:
            raise DDError(f"experts need at least one epoch, got {self.epochs}")
        if not self.lr > 0 or self.batch_size < 1:
            raise DDError(f"expert lr and batch size must be positive, got {self.lr} and {self.batch_size}")
        if self.score not in SCORES:
            raise DDError(f"unknown difficulty score '{self.score}'; use one of {', '.join(SCORES)}")
        if self.schedule is not None:
            self.schedule.validate()


@dataclass
class ExpertRun:
    """One trained expert: its trajectory and how it went."""

    index: int
    trajectory: torch.Tensor  # (epochs + 1, parameters) float32, row 0 = initialisation
    test_accuracy: float
    train_seconds: float
    device: str


def flatten_parameters(net: nn.Module) -> torch.Tensor:
    """Every parameter in `named_parameters` order as one vector (the layout trajectories use)."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).float().cpu()


def train_expert(
    data: RealDataset,
    config: ExpertConfig,
    index: int,
    scores: torch.Tensor | None,
    device: str | torch.device = "auto",
    progress: bool = False,
    label: str | None = None,
) -> ExpertRun:
    """Train expert `index` (its own seed) and record its parameters after every epoch; `label`
    names its progress bar (default: "expert <index>")."""
    device = resolve_device(device)
    seed = config.seed * 1_000_003 + index
    seed_everything(seed)
    net = get_model(config.model, data.channels, data.num_classes, data.image_size).to(device)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    images, labels = data.train_images.to(device), data.train_labels.to(device)
    schedule = config.schedule.scaled(config.epochs) if config.schedule else None
    order = easiest_first_by_class(scores, data.train_labels, data.num_classes) if schedule else None
    shuffler = torch.Generator().manual_seed(seed)
    trajectory = torch.empty(config.epochs + 1, sum(p.numel() for p in net.parameters()))
    trajectory[0] = flatten_parameters(net)
    started = time.perf_counter()
    step = 0
    net.train()
    with progress_bar(label or f"expert {index}", config.epochs, enabled=progress) as bar:
        for epoch in range(config.epochs):
            subset = schedule.subset(order, epoch) if schedule else torch.arange(len(labels))
            shuffled = subset[torch.randperm(len(subset), generator=shuffler)].to(device)
            for batch in shuffled.split(config.batch_size):
                x = dsa(images[batch], config.dsa_strategy, seed * 1_000_003 + step, params=PER_IMAGE)
                loss = F.cross_entropy(net(x), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
            trajectory[epoch + 1] = flatten_parameters(net)
            bar.advance(status=f"{len(subset)} samples")
    seconds = time.perf_counter() - started
    accuracy, _ = measure_accuracy(net, data, device)
    return ExpertRun(index, trajectory, accuracy, seconds, str(device))


def _train_expert_task(
    dataset: str, data_root: str | None, config: ExpertConfig, index: int, scores: torch.Tensor | None
) -> ExpertRun:
    """A Ray task: load the data set on the worker, train one expert, hand the trajectory back."""
    from ddcore.data import load_dataset

    data = load_dataset(dataset, data_root, config.image_size)
    if config.holdout:
        size, digest = config.holdout.split(":")
        data = data.with_validation(int(size))
        if data.val_digest != digest:
            raise DDError(f"the validation part of {dataset} on this worker differs from the driver's ({digest})")
    return train_expert(data, config, index, scores)


# (function, argument tuples) -> results in any order: how ddcore fans work out without importing Ray.
ParallelMap = Callable[[Callable[..., Any], list[tuple]], Iterable[Any]]


class ArtefactLog(Protocol):
    """Where experts are logged (an MLflow tracker: `orchestrator.store.tracking.Tracker`)."""

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...


@dataclass
class ExpertBank:
    """N cached trajectories of one configuration, read lazily (memory-mapped) when matched."""

    config: ExpertConfig
    files: list[Path]
    num_parameters: int
    trained_now: list[int] = field(default_factory=list)  # indices trained by this request
    seconds: float = 0.0  # wall time of this request (training, or only checking the cache)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def manifest(self) -> Path:
        return self.config.folder() / MANIFEST

    def __len__(self) -> int:
        return len(self.files)

    def trajectory(self, index: int) -> torch.Tensor:
        return _read_trajectory(self.files[index], self.config.epochs + 1, self.num_parameters)

    def parameters(self, index: int, epoch: int) -> torch.Tensor:
        """The flat parameters of expert `index` after `epoch` epochs (0 = initialisation)."""
        return self.trajectory(index)[epoch].clone()


def _read_trajectory(path: Path, rows: int, num_parameters: int) -> torch.Tensor:
    if not path.is_file():
        raise DDError(f"expert file {path} is missing; run `ddorch experts ... --refresh` to retrain the experts")
    try:
        trajectory = torch.load(path, weights_only=True, mmap=True, map_location="cpu")["trajectory"]
    except Exception as error:  # zip, pickle and key errors come in many types
        raise DDError(
            f"expert file {path} is corrupt ({type(error).__name__}); delete it or run `ddorch experts ... --refresh`"
        ) from None
    if tuple(trajectory.shape) != (rows, num_parameters):
        raise DDError(
            f"expert file {path} is corrupt: shape {tuple(trajectory.shape)}, "
            f"expected ({rows}, {num_parameters}); delete it or run `ddorch experts ... --refresh`"
        )
    return trajectory


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DDError(f"expert manifest {path} is corrupt ({error}); delete {folder} to retrain") from None


def _save_expert(folder: Path, manifest: dict[str, Any], run: ExpertRun) -> None:
    name = f"expert_{run.index:03d}.pt"
    write_atomically(folder / name, lambda tmp: torch.save({"trajectory": run.trajectory}, tmp))
    manifest["experts"][str(run.index)] = {
        "file": name,
        "test_accuracy": run.test_accuracy,
        "train_seconds": run.train_seconds,
        "device": run.device,
    }
    write_atomically(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


def with_architecture(config: ExpertConfig, channels: int, num_classes: int) -> ExpertConfig:
    """`config` with its network's fingerprint, which the cache folder's name includes."""
    fingerprint = architecture_fingerprint(config.model, channels, num_classes, config.image_size)
    return replace(config, architecture=fingerprint)


def with_holdout(config: ExpertConfig, data: RealDataset) -> ExpertConfig:
    """`config` with the validation part `data` holds out, if any: experts that never saw it are cached apart."""
    holdout = "" if data.val_labels is None else f"{len(data.val_labels)}:{data.val_digest}"
    return replace(config, holdout=holdout)


def cached_experts(config: ExpertConfig, num_experts: int, channels: int, num_classes: int) -> int:
    """How many of the first `num_experts` experts the cache holds: `obtain_experts` trains only the others."""
    manifest = _read_manifest(with_architecture(config, channels, num_classes).folder())
    return 0 if manifest is None else sum(str(i) in manifest["experts"] for i in range(num_experts))


def obtain_experts(
    data: RealDataset,
    config: ExpertConfig,
    num_experts: int,
    parallel_map: ParallelMap | None = None,
    data_root: str | None = None,
    device: str | torch.device = "auto",
    refresh: bool = False,
    progress: bool = False,
) -> ExpertBank:
    """`num_experts` trajectories of `config`: from the cache, training only the missing ones.

    With `parallel_map` (e.g. `orchestrator.engine.cluster.TaskPool.map_unordered`: one Ray task per
    expert) each task loads `config.dataset` from `data_root` itself; without, the experts are
    trained one after the other in this process.
    """
    if num_experts < 1:
        raise DDError(f"need at least one expert, got {num_experts}")
    config.validate()
    started = time.perf_counter()
    config = with_holdout(with_architecture(config, data.channels, data.num_classes), data)
    folder = config.folder()
    folder.mkdir(parents=True, exist_ok=True)
    num_parameters = sum(
        p.numel() for p in get_model(config.model, data.channels, data.num_classes, data.image_size).parameters()
    )
    missing: list[int] = []

    def have_all() -> bool:
        return cached_experts(config, num_experts, data.channels, data.num_classes) == num_experts

    with shared_entry(folder, have_all, refresh) as produce:
        manifest = None if refresh else _read_manifest(folder)
        if manifest is None:
            manifest = {"key": config.key(), "config": asdict(config), "num_parameters": num_parameters, "experts": {}}
        if produce:
            missing = [i for i in range(num_experts) if str(i) not in manifest["experts"]]
            _train_missing(data, config, manifest, num_experts, missing, parallel_map, data_root, device, progress)
    files = [folder / manifest["experts"][str(i)]["file"] for i in range(num_experts)]
    bank = ExpertBank(config, files, num_parameters, trained_now=missing)
    for index in range(num_experts):
        bank.trajectory(index)  # a missing or corrupt file fails now, named, not mid-distillation
    bank.seconds = time.perf_counter() - started
    return bank


def _train_missing(
    data: RealDataset,
    config: ExpertConfig,
    manifest: dict[str, Any],
    num_experts: int,
    missing: list[int],
    parallel_map: ParallelMap | None,
    data_root: str | None,
    device: str | torch.device,
    progress: bool,
) -> None:
    """Train the experts `missing` from the cache into its folder (as tasks of `parallel_map`, or here)."""
    if not missing:
        return
    folder = config.folder()
    scores = None
    if config.schedule is not None:
        scores = difficulty_scores(data, config.difficulty, device, progress=progress).get(config.score)
    cached = num_experts - len(missing)
    if parallel_map is not None:
        tasks = [(config.dataset, data_root, config, index, scores) for index in missing]
        # done / total counts the cached experts too; the time left comes from the trained ones' rate
        description = f"experts ({len(missing)} tasks, {config.epochs} epochs)"
        with progress_bar(description, num_experts, enabled=progress, done=cached) as bar:
            for run in parallel_map(_train_expert_task, tasks):
                _save_expert(folder, manifest, run)
                bar.advance(status=f"expert {run.index}: {100 * run.test_accuracy:.2f} %")
    else:
        for n, index in enumerate(missing, 1):
            label = f"expert {index} ({n} of {len(missing)} to train, {cached} cached)"
            _save_expert(folder, manifest, train_expert(data, config, index, scores, device, progress, label))


def log_experts(tracker: ArtefactLog, bank: ExpertBank, with_files: bool = True) -> None:
    """Settings, timing and test accuracy of the experts, and the manifest (and files) as artefacts."""
    entries = json.loads(bank.manifest.read_text())["experts"]
    accuracies = [entries[str(i)]["test_accuracy"] for i in range(len(bank))]
    tracker.log_params({"experts": {**asdict(bank.config), "num_experts": len(bank), "key": bank.config.key()}})
    tracker.log_metrics(
        {
            "experts_seconds": bank.seconds,
            "experts_trained_now": len(bank.trained_now),
            "experts_test_accuracy_mean": sum(accuracies) / len(accuracies),
        }
    )
    tracker.log_artifact(bank.manifest, "experts")
    for path in bank.files if with_files else []:
        tracker.log_artifact(path, "experts")
