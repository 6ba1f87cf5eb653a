"""How hard each training sample is: EL2N and GraNd scores (Paul et al., NeurIPS 2021).

Paul et al. train a few networks briefly and score every training sample (x, y) by

    EL2N(x, y)  = E_networks || softmax(f(x)) - onehot(y) ||_2                         (their Eq. 3)
    GraNd(x, y) = E_networks || d loss(f(x), y) / d w ||_2                               (their Eq. 2)

Large scores are hard (often mislabelled or atypical) samples, small scores easy ones. PAD (Li et
al. 2024) orders each class's samples by such a score to schedule which data its expert
networks see (`ddcore.methods.pad.experts.DataSchedule`); its README uses GraNd indices produced with
DeepCore (Guo et al. 2022).

Differences, on purpose:
- GraNd is the gradient norm with respect to the last linear layer only, as DeepCore computes it
  (Paul et al. use every weight, at initialisation). For cross-entropy that gradient is
  (p - y) [h, 1]^T with h the layer's input, so its norm is ||p - y|| * sqrt(||h||^2 + 1): both
  scores come from one batched forward pass without autograd.
- Paul et al. average 10 networks scored at 10 % of a 200-epoch run; we default to 2 networks
  trained for 2 epochs (cosine learning rate over those epochs), a budget that fits a CPU. Both are
  settings of `DifficultyConfig`.

Scores are cached on disk by (data set, image size, model, networks, epochs, seed) under the
baseline cache (`DDORCH_CACHE_DIR`, `~/.cache/ddorch`), so every expert request reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.baseline import cache_dir
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, train_network
from ddcore.models import architecture_fingerprint, get_model
from ddcore.progress import progress_bar
from ddcore.runtime import resolve_device, seed_everything, write_atomically
from ddcore.shared_cache import shared_entry

SCORES = ("el2n", "grand")


@dataclass(frozen=True)
class DifficultyConfig:
    """The briefly trained networks the scores come from."""

    model: str = "ConvNetD3"
    networks: int = 2  # scores are averaged over this many networks
    epochs: int = 2  # trained briefly: EL2N is read early in training (Paul et al. 2021)
    lr: float = 0.01
    batch_size: int = 256
    seed: int = 0

    def protocol(self) -> EvalProtocol:
        """SGD momentum 0.9, weight decay 5e-4, cosine from `lr`, no augmentation."""
        return EvalProtocol("difficulty", epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, schedule="cosine")

    def validate(self) -> None:
        if self.networks < 1 or self.epochs < 0:
            raise DDError(
                f"difficulty scores need networks >= 1 and epochs >= 0, got {self.networks} and {self.epochs}"
            )


@dataclass
class DifficultyScores:
    """Per training sample (in the data set's order), averaged over the networks."""

    el2n: torch.Tensor  # (N,) float32
    grand: torch.Tensor  # (N,) float32

    def get(self, name: str) -> torch.Tensor:
        if name not in SCORES:
            raise DDError(f"unknown difficulty score '{name}'; use one of {', '.join(SCORES)}")
        return self.el2n if name == "el2n" else self.grand


def _last_linear(net: nn.Module) -> nn.Linear:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DDError(f"{type(net).__name__} has no linear layer to take GraNd's last-layer gradient from")
    return linears[-1]


@torch.no_grad()
def score_network(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(EL2N, last-layer GraNd) of every sample under one network; inputs on the network's device."""
    captured: list[torch.Tensor] = []
    hook = _last_linear(net).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    net.eval()
    el2n, grand = [], []
    try:
        for start in range(0, len(images), batch_size):
            captured.clear()
            logits = net(images[start : start + batch_size]).float()
            error = logits.softmax(dim=1) - F.one_hot(labels[start : start + batch_size], logits.shape[1]).float()
            error_norm = error.norm(dim=1)
            features = captured[-1].float().flatten(1)
            el2n.append(error_norm)
            grand.append(error_norm * (features.pow(2).sum(dim=1) + 1).sqrt())
    finally:
        hook.remove()
    return torch.cat(el2n).cpu(), torch.cat(grand).cpu()


def _cache_file(dataset: str, channels: int, num_classes: int, image_size: int, config: DifficultyConfig) -> Path:
    arch = architecture_fingerprint(config.model, channels, num_classes, image_size)
    key = (
        f"{dataset}-{image_size}px_{config.model}-{arch}_{config.networks}nets_{config.epochs}ep_"
        f"lr{config.lr:g}_bs{config.batch_size}_seed{config.seed}.pt"
    )
    return cache_dir() / "difficulty" / key


def scores_cached(dataset: str, channels: int, num_classes: int, image_size: int, config: DifficultyConfig) -> bool:
    """Whether the cache holds the scores of `config` (without loading the data set)."""
    return _cache_file(dataset, channels, num_classes, image_size, config).exists()


def difficulty_scores(
    data: RealDataset,
    config: DifficultyConfig = DifficultyConfig(),
    device: str | torch.device = "auto",
    refresh: bool = False,
    progress: bool = False,
) -> DifficultyScores:
    """EL2N and GraNd of every training sample, from the cache when it holds this configuration."""
    config.validate()
    path = _cache_file(data.training_part, data.channels, data.num_classes, data.image_size, config)
    with shared_entry(path, lambda: _read_scores(path, len(data.train_labels)) is not None, refresh) as produce:
        if produce:
            _compute_scores(data, config, path, device, progress)
    return _read_scores(path, len(data.train_labels))


def _read_scores(path: Path, samples: int) -> DifficultyScores | None:
    """The cached scores, or None when missing, half-written, foreign, or of another number of samples."""
    if not path.exists():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except Exception:  # a half-written or foreign file: recompute it
        return None
    return DifficultyScores(cached["el2n"], cached["grand"]) if len(cached["el2n"]) == samples else None


def _compute_scores(
    data: RealDataset, config: DifficultyConfig, path: Path, device: str | torch.device, progress: bool
) -> None:
    device = resolve_device(device)
    images, labels = data.train_images.to(device), data.train_labels.to(device)
    el2n = torch.zeros(len(labels))
    grand = torch.zeros(len(labels))
    with progress_bar("difficulty scores", config.networks, enabled=progress) as bar:
        for index in range(config.networks):
            seed = config.seed * 1_000_003 + index
            seed_everything(seed)
            net = get_model(config.model, data.channels, data.num_classes, data.image_size).to(device)
            train_network(net, images, labels, config.protocol(), seed)
            network_el2n, network_grand = score_network(net, images, labels)
            el2n += network_el2n / config.networks
            grand += network_grand / config.networks
            bar.advance()
    write_atomically(path, lambda tmp: torch.save({"el2n": el2n, "grand": grand}, tmp))


def easiest_first_by_class(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Per class, the indices of its samples from the lowest score (easiest) to the highest."""
    ordered = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c, as_tuple=True)[0]
        ordered.append(members[torch.argsort(scores[members], stable=True)])
    return ordered
