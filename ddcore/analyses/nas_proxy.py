"""A distilled set as a proxy for architecture search (the idea of Such et al., ICML 2020, as
evaluated in DC, Zhao et al. 2021, Sec. 4.3, and DM, Zhao & Bilen 2023).

A pool of candidate networks (ConvNet depth, width and norm variants) is trained twice: on the
synthetic set (the DC protocol, as `ddorch run` evaluates it) and on real data (the
full-data protocol). If the synthetic set ranks the candidates as the real data does, the search
can run on it for a fraction of the cost. We report Spearman's rank correlation between the two
accuracy columns (means over seeds), the training time of each side and the time saved, and
where the proxy's best candidate ranks on real data.

Differences from DC's experiment, on purpose: DC's 720-network pool and its 100-epoch,
whole-training-set ground truth are beyond a CPU, so the pool is short and the real side may use
fewer epochs (`full_epochs`) and a per-class random subset (`full_per_class`); both are stated in
the results. Times are measured training seconds on the device used, summed over the pool and
seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ddcore.analyses.cross_arch import check_models
from ddcore.baseline import baseline_protocol
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalResult, evaluate, get_protocol
from ddcore.runtime import resolve_device
from ddcore.synthetic import SyntheticSet
from ddcore.tables import ResultTable, percent
from ddcore.visualize import save_scatter

# Depth 2-4 at width 128 (instance norm, the ConvNet default), widths 32/64 at depth 3, batch
# norm and no norm at depth 3, and two mixed candidates (narrow shallow without norm, deep with BN).
DEFAULT_POOL = (
    "ConvNetD2",
    "ConvNetD3",
    "ConvNetD4",
    "ConvNetD3W32",
    "ConvNetD3W64",
    "ConvNetD3BN",
    "ConvNetD3NN",
    "ConvNetD2W32NN",
    "ConvNetD4W64BN",
)


@dataclass
class NasProxyConfig:
    pool: tuple[str, ...] = DEFAULT_POOL
    seeds: int = 1
    proxy_epochs: int | None = None  # DC protocol epochs on the distilled set (None: its 1000)
    full_epochs: int | None = None  # full-data protocol epochs on real data (None: its 20)
    full_per_class: int | None = None  # real training images per class for the real side (None: all)
    device: str = "auto"


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span (scipy.stats.rankdata 'average')."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks; NaN when a side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise DDError(f"rank correlation needs two equally long lists of at least 2 values, got {len(x)} and {len(y)}")
    rx, ry = average_ranks(x), average_ranks(y)
    mean_x, mean_y = sum(rx) / len(rx), sum(ry) / len(ry)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(rx, ry))
    spread = math.sqrt(sum((a - mean_x) ** 2 for a in rx) * sum((b - mean_y) ** 2 for b in ry))
    return covariance / spread if spread > 0 else float("nan")


def _norm_of(name: str) -> str:
    return "batch norm" if name.endswith("BN") else "no norm" if name.endswith("NN") else "instance norm"


@dataclass
class NasProxyResult:
    dataset: str
    ipc: int
    proxy_protocol: str
    full_protocol: str
    full_images: int  # real training images per candidate on the real side
    pool: list[str]
    proxy: dict[str, EvalResult]
    full: dict[str, EvalResult]

    @property
    def spearman(self) -> float:
        return spearman(
            [self.proxy[m].accuracy_mean for m in self.pool], [self.full[m].accuracy_mean for m in self.pool]
        )

    @property
    def proxy_seconds(self) -> float:
        return sum(run.train_seconds for m in self.pool for run in self.proxy[m].runs)

    @property
    def full_seconds(self) -> float:
        return sum(run.train_seconds for m in self.pool for run in self.full[m].runs)

    def proxy_pick_full_rank(self) -> int:
        """Where the proxy's best candidate ranks on real data (1 = the real best)."""
        pick = max(self.pool, key=lambda m: self.proxy[m].accuracy_mean)
        return 1 + sum(self.full[m].accuracy_mean > self.full[pick].accuracy_mean for m in self.pool)

    def table(self) -> ResultTable:
        proxy_ranks = average_ranks([-self.proxy[m].accuracy_mean for m in self.pool])
        full_ranks = average_ranks([-self.full[m].accuracy_mean for m in self.pool])
        rows = [
            [
                m,
                percent(self.proxy[m].accuracy_mean, self.proxy[m].accuracy_std),
                f"{proxy_ranks[i]:g}",
                percent(self.full[m].accuracy_mean, self.full[m].accuracy_std),
                f"{full_ranks[i]:g}",
                f"{self.proxy[m].train_seconds_mean:.1f}",
                f"{self.full[m].train_seconds_mean:.1f}",
            ]
            for i, m in enumerate(self.pool)
        ]
        saved = self.full_seconds - self.proxy_seconds
        seeds = len(self.proxy[self.pool[0]].runs)
        return ResultTable(
            title=f"Architecture-search proxy: {self.dataset}, synthetic set of IPC {self.ipc} vs real data",
            columns=["candidate", "on synthetic %", "rank", "on real %", "rank", "synthetic train s", "real train s"],
            rows=rows,
            notes=[
                f"Spearman rank correlation {self.spearman:.3f} over {len(self.pool)} candidates, {seeds} seed(s) each",
                f"training time: synthetic {self.proxy_seconds:.1f} s, real {self.full_seconds:.1f} s, "
                f"saved {saved:.1f} s ({self.full_seconds / max(self.proxy_seconds, 1e-9):.1f}x faster)",
                f"the proxy's best candidate ranks {self.proxy_pick_full_rank()} of {len(self.pool)} on real data",
                f"synthetic side: protocol {self.proxy_protocol}; real side: protocol {self.full_protocol} on "
                f"{self.full_images} real training images",
            ],
        )

    def save_plots(self, folder: Path) -> list[Path]:
        points = [(self.proxy[m].accuracy_mean, self.full[m].accuracy_mean, _norm_of(m)) for m in self.pool]
        path = save_scatter(
            points,
            folder / "proxy_vs_real.png",
            "accuracy after training on the synthetic set",
            "accuracy after training on real data",
            names=self.pool,
        )
        return [path]

    def metrics(self) -> dict[str, float]:
        return {
            "nas_spearman": self.spearman,
            "nas_proxy_seconds": self.proxy_seconds,
            "nas_full_seconds": self.full_seconds,
            "nas_proxy_pick_full_rank": self.proxy_pick_full_rank(),
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "spearman": self.spearman}


def check_nas_proxy(synthetic: SyntheticSet, data: RealDataset, config: NasProxyConfig) -> None:
    """One-line errors for settings no run can use (before anything is recorded or trained)."""
    pool = list(config.pool)
    check_models(pool, data)
    synthetic.check_matches(data)
    if len(pool) < 2 or len(set(pool)) != len(pool):
        raise DDError(f"the pool needs at least two distinct networks, got {', '.join(pool) or 'none'}")
    if config.seeds < 1:
        raise DDError(f"seeds must be positive, got {config.seeds}")
    if config.full_per_class is not None and not 1 <= config.full_per_class <= min(data.class_counts()):
        raise DDError(
            f"real images per class must be between 1 and {min(data.class_counts())}, got {config.full_per_class}"
        )
    get_protocol("dc", epochs=config.proxy_epochs)
    get_protocol("full", epochs=config.full_epochs)
    resolve_device(config.device)


def nas_proxy(
    synthetic: SyntheticSet, data: RealDataset, config: NasProxyConfig = NasProxyConfig(), progress: bool = False
) -> NasProxyResult:
    """Train each candidate on the synthetic set and on real data; rank-correlate the accuracies."""
    check_nas_proxy(synthetic, data, config)
    pool = list(config.pool)
    seeds = tuple(range(config.seeds))
    proxy_protocol = get_protocol("dc", epochs=config.proxy_epochs)
    full_protocol = get_protocol("full", baseline_protocol(data.name).batch_size, config.full_epochs)
    if config.full_per_class is None:
        real_images, real_labels = data.train_images, data.train_labels
    else:
        picked = data.sample_per_class(config.full_per_class, torch.Generator().manual_seed(0)).flatten()
        real_images, real_labels = data.train_images[picked], data.train_labels[picked]
    dsa_strategy = str(synthetic.config.get("dsa_strategy", ""))
    result = NasProxyResult(
        data.name, synthetic.ipc, proxy_protocol.name, full_protocol.name, len(real_labels), pool, {}, {}
    )
    for model in pool:
        result.proxy[model] = evaluate(
            model,
            synthetic.images,
            synthetic.labels,
            data,
            proxy_protocol,
            seeds,
            config.device,
            lr=synthetic.learned_lr,
            dsa_strategy=dsa_strategy,
            progress=progress,
        )
        result.full[model] = evaluate(
            model, real_images, real_labels, data, full_protocol, seeds, config.device, progress=progress
        )
    return result
