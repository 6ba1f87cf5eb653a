"""The evaluation protocol: train a network from scratch on a set of images, test it on real data.

Every number ddorch reports goes through `evaluate`: the full-data baseline (train on the whole
real training set) and the synthetic sets (train on S). Labels may be class indices (N,) or
probability vectors (N, K) (PAD/DATM learn soft labels); a learned learning rate may replace the
protocol's.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.augment import DSAParams, dsa
from ddcore.data.base import RealDataset
from ddcore.dc_augment import dc_augment
from ddcore.errors import DDError
from ddcore.models import get_model
from ddcore.models.wide import WideNet, widen
from ddcore.progress import progress_bar
from ddcore.runtime import resolve_device, seed_everything, synchronize, write_atomically


@dataclass(frozen=True)
class EvalProtocol:
    """How a network is trained before it is tested.

    schedule "cosine": cosine annealing from `lr` to 0 over all steps.
    schedule "step": `lr` divided by 10 after half the epochs (DC/DM's `evaluate_synset`).
    `augment`: augment every training batch, each image on its own (the DD field trains on S so).
    `augmentation` "dsa": with the set's DSA strategy; "dc": DC's crop/scale/rotate (`ddcore.dc_augment`).
    `use_learned_lr`: a set's learned learning rate (PAD/DATM) replaces `lr`.
    `precision` "bf16": the networks' forwards (training and test) under bf16 autocast; the loss,
    weights and optimizer state stay fp32. Opt-in: the published protocols train in fp32.
    Soft labels (N, K) are always trained with cross-entropy against the probabilities: the same
    loss as DATM/PAD's `SoftCrossEntropy(logits, Y)`, which takes softmax(Y) of its label logits.
    """

    name: str
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    schedule: str = "cosine"
    augment: bool = False
    use_learned_lr: bool = True
    source: str = ""  # where the values come from
    precision: str = "fp32"  # or "bf16" (PRECISIONS)
    augmentation: str = "dsa"  # or "dc" (AUGMENTATIONS)

    def training_lr(self, learned_lr: float | None) -> float:
        """The learning rate a network starts from: the set's learned one where the protocol takes it."""
        return learned_lr if self.use_learned_lr and learned_lr is not None else self.lr


# The seed document's full-data protocol: SGD momentum 0.9, cosine annealing, lr 0.01, 20 epochs.
FULL_DATA = EvalProtocol(
    "full",
    epochs=20,
    lr=0.01,
    schedule="cosine",
    augment=False,
    use_learned_lr=False,
    source="the seed document's full-data recipe",
)
# The official scripts below train Epoch+1 epochs (`range(Epoch + 1)`) and divide lr by 10 once
# epoch Epoch//2+1 is done, with a fresh SGD optimiser (momentum restarts). Ours trains `epochs`
# epochs, divides from epoch epochs//2 on and keeps the momentum: theirs has one epoch more in all
# and two more at the high lr (3 of 1001 epochs).
# DC (Zhao et al. 2021) as DSA/DM run it: VICO-UoE/DatasetCondensation main_DM.py (epoch_eval_train
# 1000, batch_train 256, lr_net 0.01) and utils.py evaluate_synset (SGD momentum 0.9, weight decay
# 0.0005, lr x0.1 at half, DSA). ddorch lets a set's learned lr replace 0.01 here (PAD sets keep theirs).
DC = EvalProtocol(
    "dc",
    epochs=1000,
    lr=0.01,
    schedule="step",
    augment=True,
    source="VICO-UoE/DatasetCondensation main_DM.py, utils.py evaluate_synset",
)
# DataDAM (Sajedi et al. 2023): DataDistillation/DataDAM main_DataDAM.py (epoch_eval_train 1800,
# batch_train 64, lr_net 0.01) and utils.py evaluate_synset (SGD momentum 0.9, weight decay 0.0005,
# lr x0.1 at Epoch//2+1, DSA with the distillation's strategy). It has no learned lr.
DATADAM = EvalProtocol(
    "datadam",
    epochs=1800,
    lr=0.01,
    batch_size=64,
    schedule="step",
    augment=True,
    use_learned_lr=False,
    source="DataDistillation/DataDAM main_DataDAM.py, utils.py evaluate_synset",
)
# DATM (Guo et al. 2024) and PAD (Li et al. 2024): NUS-HPC-AI-Lab/DATM and NUS-HPC-AI-Lab/PAD
# distill/DATM.py, distill/PAD.py (lr_net = the learned syn_lr, train_criterion SoftCrossEntropy) and
# utils/utils_baseline.py evaluate_synset (SGD momentum 0.9, weight decay 0.0005, lr x0.1 at
# Epoch//2+1, DSA); utils/cfg.py: epoch_eval_train 1000, lr_teacher 0.01 (syn_lr's start; our lr
# for a set without a learned one) and batch_train 256, but every shipped configs/*/ConvIN/IPC*.yaml
# sets batch_train 128: the batch behind the published tables.
DATM = EvalProtocol(
    "datm",
    epochs=1000,
    lr=0.01,
    batch_size=128,
    schedule="step",
    augment=True,
    use_learned_lr=True,
    source="NUS-HPC-AI-Lab/DATM and /PAD distill/*.py, utils/utils_baseline.py evaluate_synset, configs",
)
# DC's own evaluation, as DC (without DSA) trains MNIST networks: VICO-UoE/DatasetCondensation main.py
# (epoch_eval_train 1000 when the set is trained with augmentation, batch_train 256, lr_net 0.01),
# utils.py evaluate_synset (as `dc`) and get_daparam + augment (MNIST: one of crop 4 px, scale +-20 %,
# rotate +-45 degrees per image). The check behind DC's random-subset figures (RESULTS.md): the
# repository does not show which evaluation those were measured with.
DC_AUGMENT = replace(
    DC, name="dc-aug", augmentation="dc", source="VICO-UoE/DatasetCondensation main.py, utils.py get_daparam, augment"
)
PROTOCOLS = {p.name: p for p in (FULL_DATA, DC, DC_AUGMENT, DATADAM, DATM)}
PRECISIONS = ("fp32", "bf16")
AUGMENTATIONS = ("dsa", "dc")


def without_later_defaults(settings: dict) -> dict:
    """`settings` less the settings added after results were first keyed, where they hold their
    defaults: `eval_precision` fp32 (with its protocol's `precision`) and the protocol's
    `augmentation` dsa.

    Trial keys, lossless-search identities and suite row keys hash settings: leaving those defaults
    out keeps the keys of everything measured before the settings existed.
    """
    kept = dict(settings)
    fp32 = kept.get("eval_precision") == PRECISIONS[0]
    if fp32:
        del kept["eval_precision"]
    if "protocol" in kept:
        dropped = {"augmentation": AUGMENTATIONS[0], **({"precision": PRECISIONS[0]} if fp32 else {})}
        kept["protocol"] = {k: v for k, v in kept["protocol"].items() if (k, v) not in dropped.items()}
    return kept


# Training networks on S augments each image independently (DC's evaluate_synset calls DSA unseeded).
PER_IMAGE = DSAParams(per_sample=True)


def get_protocol(
    name: str, batch_size: int | None = None, epochs: int | None = None, precision: str | None = None
) -> EvalProtocol:
    """A named protocol; another batch size, epoch count or precision gives a distinct name (caches never mix them)."""
    if name not in PROTOCOLS:
        raise DDError(f"unknown evaluation protocol '{name}'; known: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    if batch_size is not None and batch_size != protocol.batch_size:
        if batch_size < 1:
            raise DDError(f"batch size must be positive, got {batch_size}")
        protocol = replace(protocol, name=f"{protocol.name}-bs{batch_size}", batch_size=batch_size)
    if epochs is not None and epochs != protocol.epochs:
        if epochs < 1:
            raise DDError(f"eval epochs must be positive, got {epochs}")
        protocol = replace(protocol, name=f"{protocol.name}-{epochs}ep", epochs=epochs)
    if precision is not None and precision != protocol.precision:
        if precision not in PRECISIONS:
            raise DDError(f"unknown eval precision '{precision}'; known: {', '.join(PRECISIONS)}")
        protocol = replace(protocol, name=f"{protocol.name}-{precision}", precision=precision)
    return protocol


@dataclass(frozen=True)
class EvalSpec:
    """How a synthetic set is evaluated: the networks trained on it, the seeds of each, and the protocol
    they train with (a name from `PROTOCOLS`, None: the data set's; `epochs`, `batch_size` and
    `precision` override the protocol's). Empty `models`: the network the set was distilled with."""

    models: tuple[str, ...] = ()
    seeds: int = 3  # 0: distil and save only (a part of a longer trial that a `TrialCache` keeps)
    protocol: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    precision: str = "fp32"  # or "bf16": the evaluation forwards (PRECISIONS)

    def protocol_for(self, dataset: str) -> EvalProtocol:
        """The resolved protocol on `dataset` (a one-line error for unknown names or bad overrides)."""
        from ddcore.data import get_spec

        return get_protocol(
            self.protocol or get_spec(dataset).eval_protocol, self.batch_size, self.epochs, self.precision
        )

    def params(self) -> dict:
        """The settings under the flat `eval_*` names that runs, trial keys and caches have always used."""
        return {f"eval_{name}": list(value) if name == "models" else value for name, value in asdict(self).items()}


def autocast(protocol: EvalProtocol, device: torch.device) -> torch.autocast:
    """The protocol's forward precision on `device` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=protocol.precision == "bf16")


@dataclass
class SeedRun:
    """One network trained from scratch with one seed and tested on the real test set (and on the
    validation part, when the data set holds one out: `RealDataset.with_validation`)."""

    seed: int
    accuracy: float
    balanced_accuracy: float
    train_seconds: float
    val_accuracy: float | None = None

    def save(self, path: Path, **provenance: object) -> Path:
        """The run as JSON (under "run", beside `provenance`), written atomically."""
        payload = json.dumps({"run": asdict(self), **provenance}, indent=2)
        return write_atomically(path, lambda tmp: tmp.write_text(payload))

    @classmethod
    def load(cls, path: Path, what: str) -> SeedRun | None:
        """A saved run, or None when there is none, or it is unreadable or out of range: then a
        warning names it (`what`: e.g. "baseline") and the caller trains it again."""
        if not path.exists():
            return None
        try:
            run = cls(**json.loads(path.read_text())["run"])
            valid = 0 <= run.accuracy <= 1 and 0 <= run.balanced_accuracy <= 1 and run.train_seconds >= 0
            valid = valid and (run.val_accuracy is None or 0 <= run.val_accuracy <= 1)
        except (ValueError, KeyError, TypeError) as error:
            valid, reason = False, f"{type(error).__name__}: {error}"
        else:
            reason = "values out of range"
        if not valid:
            warnings.warn(f"ignoring the cached {what} {path} ({reason}); training it again", stacklevel=3)
            return None
        return run


@dataclass
class EvalResult:
    """All seeds of one architecture under one protocol. FLOPs: one multiply-add = one FLOP (fvcore)."""

    model: str
    protocol: str
    flops_per_image: int
    runs: list[SeedRun] = field(default_factory=list)

    @property
    def accuracy_mean(self) -> float:
        return statistics.fmean(r.accuracy for r in self.runs)

    @property
    def accuracy_std(self) -> float:
        return statistics.pstdev(r.accuracy for r in self.runs)

    @property
    def val_accuracy_mean(self) -> float | None:
        """Mean validation accuracy over the seeds; None when the data set held no validation part out."""
        values = [r.val_accuracy for r in self.runs]
        return None if None in values else statistics.fmean(values)

    @property
    def val_accuracy_std(self) -> float | None:
        values = [r.val_accuracy for r in self.runs]
        return None if None in values else statistics.pstdev(values)

    @property
    def balanced_accuracy_mean(self) -> float:
        return statistics.fmean(r.balanced_accuracy for r in self.runs)

    @property
    def train_seconds_mean(self) -> float:
        return statistics.fmean(r.train_seconds for r in self.runs)


def count_flops(model: nn.Module, channels: int, image_size: int) -> int:
    """FLOPs of one forward pass on one image, counted by fvcore.

    Convention: one multiply-add counts as one FLOP (fvcore's; `torch.utils.flop_counter` counts
    two). Convolutions, linear layers and normalisations are counted; fvcore does not count
    pooling or activations.
    """
    with warnings.catch_warnings():  # fvcore's import warns under recent torch
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    probe = copy.deepcopy(model).cpu().eval()
    analysis = FlopCountAnalysis(probe, torch.zeros(1, channels, image_size, image_size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


@functools.lru_cache(maxsize=64)
def architecture_flops(model_name: str, channels: int, num_classes: int, image_size: int) -> int:
    """FLOPs per image of a registry architecture; counted once per process (tracing is not free)."""
    return count_flops(get_model(model_name, channels, num_classes, image_size), channels, image_size)


@torch.inference_mode()
def _predictions(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device, batch_size: int
) -> torch.Tensor:
    """(K, N) predicted classes of `images`; `forward` maps a (B, C, H, W) batch to (K, B, classes)."""
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        predictions.append(forward(batch).argmax(dim=2).cpu())
    return torch.cat(predictions, dim=1)


def _scores(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean per-class recall)."""
    correct = predicted == labels
    per_class = [correct[labels == c].float().mean() for c in labels.unique()]
    return correct.float().mean().item(), torch.stack(per_class).mean().item()


def measure_accuracy(
    model: nn.Module, data: RealDataset, device: torch.device, batch_size: int = 1024
) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean per-class recall) on the real test set."""
    model.eval()
    predicted = _predictions(lambda x: model(x).unsqueeze(0), data.test_images, device, batch_size)
    return _scores(predicted[0], data.test_labels)


def val_accuracies(
    forward: Callable[[torch.Tensor], torch.Tensor], data: RealDataset, device: torch.device, networks: int
) -> list[float | None]:
    """Each of the `networks` networks' accuracy on the data set's validation part (None: it has none)."""
    if data.val_labels is None:
        return [None] * networks
    predicted = _predictions(forward, data.val_images, device, batch_size=1024)
    return (predicted == data.val_labels).float().mean(dim=1).tolist()


def _lr_at(protocol: EvalProtocol, lr: float, step: int, total_steps: int, epoch: int) -> float:
    if protocol.schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * step / total_steps))
    return lr * (0.1 if epoch >= protocol.epochs // 2 else 1.0)


def _augmenter(protocol: EvalProtocol, dsa_strategy: str) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """What augments a training batch under `protocol` (from a seed), or None: not at all."""
    if not protocol.augment:
        return None
    if protocol.augmentation == "dc":
        return dc_augment
    if dsa_strategy in ("", "none"):
        return None
    return lambda x, seed: dsa(x, dsa_strategy, seed=seed, params=PER_IMAGE)


def _train(
    forward: Callable[[torch.Tensor], torch.Tensor],
    parameters: Iterable[nn.Parameter],
    images: torch.Tensor,
    labels: torch.Tensor,
    protocol: EvalProtocol,
    seeds: tuple[int, ...],
    lr: float | None,
    dsa_strategy: str,
    progress: bool,
) -> None:
    """The protocol's training loop for K networks at once, one per seed: `forward` maps K batches
    (K, B, C, H, W) to (K, B, classes). Seed k shuffles and augments exactly as a lone run with
    that seed would; the loss is the sum of the K batch means, so each network gets its own gradient.
    """
    lr = protocol.training_lr(lr)
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    shufflers = [torch.Generator().manual_seed(seed) for seed in seeds]
    steps_per_epoch = -(-len(images) // protocol.batch_size)
    total_steps = protocol.epochs * steps_per_epoch
    augment = _augmenter(protocol, dsa_strategy)
    step = 0
    with progress_bar(f"train {protocol.name}", total_steps, enabled=progress) as bar:
        for epoch in range(protocol.epochs):
            orders = [torch.randperm(len(images), generator=g).to(images.device) for g in shufflers]
            for start in range(0, len(images), protocol.batch_size):
                xs, ys = [], []
                for seed, order in zip(seeds, orders):
                    batch = order[start : start + protocol.batch_size]
                    x = images[batch]
                    if augment:
                        x = augment(x, seed * 1_000_003 + step)
                    xs.append(x)
                    ys.append(labels[batch])
                for group in optimizer.param_groups:
                    group["lr"] = _lr_at(protocol, lr, step, total_steps, epoch)
                with autocast(protocol, images.device):
                    logits = forward(torch.stack(xs))
                # Equal batch sizes: the mean over all K*B images times K is the sum of the K means.
                loss = F.cross_entropy(logits.float().flatten(0, 1), torch.cat(ys)) * len(seeds)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                bar.advance(status=f"epoch {epoch + 1}/{protocol.epochs}")


def train_network(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    protocol: EvalProtocol,
    seed: int,
    lr: float | None = None,
    dsa_strategy: str = "",
    progress: bool = False,
) -> None:
    """Train `model` in place on (images, labels) with the protocol; all tensors on the model's device.

    `lr`: the set's learned learning rate, if it has one; `protocol.training_lr` decides whether it is used.
    """
    model.train()
    forward = lambda x: model(x[0]).unsqueeze(0)  # noqa: E731 (one network: K = 1)
    _train(forward, model.parameters(), images, labels, protocol, (seed,), lr, dsa_strategy, progress)


def train_wide(
    wide: WideNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    protocol: EvalProtocol,
    seeds: tuple[int, ...],
    lr: float | None = None,
    dsa_strategy: str = "",
    progress: bool = False,
) -> None:
    """`train_network` for the K networks of `wide` at once, network k with `seeds[k]`."""
    wide.train()
    _train(wide, wide.parameters(), images, labels, protocol, seeds, lr, dsa_strategy, progress)


def _fresh_model(model_name: str, data: RealDataset, seed: int, device: torch.device) -> nn.Module:
    seed_everything(seed)
    return get_model(model_name, data.channels, data.num_classes, data.image_size).to(device)


def train_and_test(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    data: RealDataset,
    protocol: EvalProtocol,
    seed: int,
    device: torch.device,
    lr: float | None = None,
    dsa_strategy: str = "",
    progress: bool = False,
) -> SeedRun:
    """Train a fresh `model_name` network (initialised from `seed`) and test it on the real test set."""
    model = _fresh_model(model_name, data, seed, device)
    images, labels = images.to(device), labels.to(device)
    synchronize(device)
    started = time.perf_counter()
    train_network(model, images, labels, protocol, seed, lr=lr, dsa_strategy=dsa_strategy, progress=progress)
    synchronize(device)
    seconds = time.perf_counter() - started
    with autocast(protocol, device):
        accuracy, balanced = measure_accuracy(model, data, device)
        (val,) = val_accuracies(lambda x: model(x).unsqueeze(0), data, device, 1)
    return SeedRun(seed=seed, accuracy=accuracy, balanced_accuracy=balanced, train_seconds=seconds, val_accuracy=val)


def train_and_test_seeds(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    data: RealDataset,
    protocol: EvalProtocol,
    seeds: tuple[int, ...],
    device: torch.device,
    lr: float | None = None,
    dsa_strategy: str = "",
    progress: bool = False,
    batch_seeds: bool | None = None,
) -> list[SeedRun]:
    """`train_and_test` for every seed: all seeds at once as one wide network (`models.wide`) when
    `batch_seeds` and the architecture allows, else one after another. Each seed's network, batches
    and augmentations are those of its lone run; its `train_seconds` is its share of the joint time.

    `batch_seeds=None` batches on GPUs only. On the 2-core CPU the grouped convolutions are slower
    than K plain ones (benchmarks/eval_speed.py: 0.93x at IPC 1, 0.75x at IPC 10 for 3 seeds); the
    CPU is compute-bound there, so batching cannot win what a GPU's per-kernel overhead loses.
    """
    batch = device.type == "cuda" if batch_seeds is None else batch_seeds
    wide = widen([_fresh_model(model_name, data, seed, device) for seed in seeds]) if batch and len(seeds) > 1 else None
    if wide is None:
        return [
            train_and_test(model_name, images, labels, data, protocol, seed, device, lr, dsa_strategy, progress)
            for seed in seeds
        ]
    images, labels = images.to(device), labels.to(device)
    synchronize(device)
    started = time.perf_counter()
    train_wide(wide, images, labels, protocol, seeds, lr, dsa_strategy, progress)
    synchronize(device)
    share = (time.perf_counter() - started) / len(seeds)
    wide.eval()
    with autocast(protocol, device):
        predicted = _predictions(wide.forward_shared, data.test_images, device, batch_size=1024)
        vals = val_accuracies(wide.forward_shared, data, device, len(seeds))
    return [
        SeedRun(seed, *_scores(row, data.test_labels), train_seconds=share, val_accuracy=val)
        for seed, row, val in zip(seeds, predicted, vals)
    ]


def check_labels(labels: torch.Tensor, num_images: int, num_classes: int) -> None:
    hard = labels.dim() == 1 and not labels.is_floating_point()
    soft = labels.dim() == 2 and labels.shape[1] == num_classes and labels.is_floating_point()
    if not (hard or soft) or labels.shape[0] != num_images:
        raise DDError(
            f"labels must be {num_images} class indices or a {num_images}x{num_classes} float matrix, "
            f"got shape {tuple(labels.shape)} of {labels.dtype}"
        )


def evaluate(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    data: RealDataset,
    protocol: EvalProtocol = DC,
    seeds: tuple[int, ...] = (0,),
    device: str | torch.device = "auto",
    lr: float | None = None,
    dsa_strategy: str = "",
    progress: bool = False,
) -> EvalResult:
    """Train `model_name` from scratch on (images, labels) once per seed; test each on the real test set
    and, when `data` holds a validation part out, on it too (`SeedRun.val_accuracy`)."""
    check_labels(labels, len(images), data.num_classes)
    device = resolve_device(device)
    flops = architecture_flops(model_name, data.channels, data.num_classes, data.image_size)
    result = EvalResult(model=model_name, protocol=protocol.name, flops_per_image=flops)
    result.runs = train_and_test_seeds(
        model_name, images, labels, data, protocol, seeds, device, lr, dsa_strategy, progress
    )
    return result
