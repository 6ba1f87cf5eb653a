"""Cross-architecture generalisation of a synthetic set (DC, Zhao et al. ICLR 2021, Table 3;
DataDAM, Sajedi et al. 2023, Table 3): train every listed network from scratch on the set
distilled with one network, and on a random real subset of the same size, and test each on the
real test set.

Protocol: a named ddcore.evaluate protocol (`dc` unless told; DSA with the set's own strategy, the
set's soft labels, and its learned learning rate where the protocol takes one). The random row uses the same
protocol and DSA, the set's class sizes and the protocol's learning rate; for seed s it draws its
subset with generator seed s and initialises the network with seed s, so its spread includes the
choice of subset (DD-Ranking's point: a distilled set is only worth its gain over random real
images). Cells are mean and population std over the seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ddcore.data import get_spec
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, EvalResult, SeedRun, evaluate, get_protocol
from ddcore.hardware import require_native_bf16
from ddcore.models import get_model
from ddcore.runtime import resolve_device
from ddcore.synthetic import SyntheticSet
from ddcore.tables import ResultTable, percent
from ddcore.visualize import save_heatmap

DEFAULT_MODELS = ("MLP", "ConvNetD3", "LeNet", "AlexNet", "VGG11", "ResNet18")
RANDOM_ROW = "random real"


@dataclass
class CrossArchMatrix:
    """Rows: the synthetic set (labelled by what it was distilled with) and the random real subset;
    columns: the networks trained on them."""

    dataset: str
    ipc: int
    protocol: str
    distilled_on: str  # row label of the synthetic set, e.g. "datadam on ConvNetD3"
    models: list[str]
    synthetic: dict[str, EvalResult]
    random_real: dict[str, EvalResult]

    def rows(self) -> list[tuple[str, dict[str, EvalResult]]]:
        return [(self.distilled_on, self.synthetic), (RANDOM_ROW, self.random_real)]

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: `xarch_{synthetic|random}_{model}_{mean|std}`."""
        values = {}
        for key, row in (("synthetic", self.synthetic), ("random", self.random_real)):
            for model, result in row.items():
                values[f"xarch_{key}_{model}_mean"] = result.accuracy_mean
                values[f"xarch_{key}_{model}_std"] = result.accuracy_std
        return values

    def table(self) -> ResultTable:
        rows = [
            [label] + [percent(row[m].accuracy_mean, row[m].accuracy_std) for m in self.models]
            for label, row in self.rows()
        ]
        gains = [self.synthetic[m].accuracy_mean - self.random_real[m].accuracy_mean for m in self.models]
        rows.append(["gain over random (points)"] + [f"{100 * gain:+.2f}" for gain in gains])
        # The course's 2e asks what training on the set costs against training on the full data.
        rows.append(
            ["training s per network (set)"] + [f"{self.synthetic[m].train_seconds_mean:.1f}" for m in self.models]
        )
        seeds = len(next(iter(self.synthetic.values())).runs)
        return ResultTable(
            title=f"Cross-architecture accuracy %: {self.dataset}, IPC {self.ipc}",
            columns=["trained on \\ evaluated on", *self.models],
            rows=rows,
            notes=[
                f"mean ± std over {seeds} seed(s); protocol {self.protocol}; random real: same class sizes, "
                "a new subset per seed; training s: one network's training on the set, mean over the seeds"
            ],
        )

    def save_plots(self, folder: Path) -> list[Path]:
        return [self.save_heatmap(folder / "heatmap.png")]

    def save_heatmap(self, path: str | Path) -> Path:
        labels = [label for label, _ in self.rows()]
        values = [[row[m].accuracy_mean for m in self.models] for _, row in self.rows()]
        text = [[percent(row[m].accuracy_mean, row[m].accuracy_std) for m in self.models] for _, row in self.rows()]
        return save_heatmap(values, labels, self.models, path, self.table().title, annotations=text)

    def to_dict(self) -> dict:
        return asdict(self)


def check_models(models: list[str], data: RealDataset) -> None:
    if not models:
        raise DDError("no models to evaluate; pass e.g. --models ConvNetD3,MLP")
    for name in models:
        get_model(name, data.channels, data.num_classes, data.image_size)  # a one-line DDError for unknown names


def random_real_like(synthetic: SyntheticSet, data: RealDataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random real subset with the synthetic set's class sizes, drawn with generator seed `seed`."""
    counts = torch.bincount(synthetic.hard_labels(), minlength=data.num_classes).tolist()
    picked = data.sample_counts(counts, torch.Generator().manual_seed(seed))
    return data.train_images[picked], data.train_labels[picked]


def evaluate_random_real(
    model: str,
    synthetic: SyntheticSet,
    data: RealDataset,
    protocol: EvalProtocol,
    seeds: tuple[int, ...],
    device: str | torch.device,
    dsa_strategy: str,
    progress: bool = False,
) -> EvalResult:
    """`model` trained on a fresh random real subset per seed (subset and initialisation both from the seed)."""
    runs: list[SeedRun] = []
    flops = 0
    for seed in seeds:
        images, labels = random_real_like(synthetic, data, seed)
        result = evaluate(
            model, images, labels, data, protocol, (seed,), device, dsa_strategy=dsa_strategy, progress=progress
        )
        runs += result.runs
        flops = result.flops_per_image
    return EvalResult(model, protocol.name, flops, runs)


@dataclass
class CrossArchConfig:
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: int = 3  # seeds 0..seeds-1 for every cell
    epochs: int | None = None  # override the protocol's epochs
    device: str = "auto"
    eval_protocol: str | None = None  # a name from ddcore.evaluate.PROTOCOLS; None: the data set's (DatasetSpec)
    eval_batch_size: int | None = None  # override the protocol's batch size
    eval_precision: str = "fp32"  # or "bf16" (ddcore.evaluate.PRECISIONS)
    force_bf16: bool = False  # bf16 even where the device lacks it (ddcore.hardware)

    def protocol(self, dataset: str) -> EvalProtocol:
        name = self.eval_protocol or get_spec(dataset).eval_protocol
        return get_protocol(name, self.eval_batch_size, self.epochs, self.eval_precision)


def check_cross_arch(synthetic: SyntheticSet, data: RealDataset, config: CrossArchConfig) -> None:
    """One-line errors for settings no evaluation can use (before anything is recorded or trained)."""
    check_models(list(config.models), data)
    synthetic.check_matches(data)
    if config.seeds < 1:
        raise DDError(f"cross-architecture evaluation needs at least one seed, got {config.seeds}")
    protocol = config.protocol(synthetic.dataset)
    device = resolve_device(config.device)
    if protocol.precision == "bf16":
        require_native_bf16("bf16 evaluation", device, config.force_bf16)


def cross_architecture(
    synthetic: SyntheticSet, data: RealDataset, config: CrossArchConfig = CrossArchConfig(), progress: bool = False
) -> CrossArchMatrix:
    """Every model in `config.models` trained on the synthetic set and on random real subsets, once per seed."""
    check_cross_arch(synthetic, data, config)
    models = list(config.models)
    seeds = tuple(range(config.seeds))
    protocol = config.protocol(synthetic.dataset)
    dsa_strategy = str(synthetic.config.get("dsa_strategy", ""))
    distilled_on = f"{synthetic.method} on {synthetic.config.get('model', '?')}"
    matrix = CrossArchMatrix(data.name, synthetic.ipc, protocol.name, distilled_on, models, {}, {})
    for model in models:
        matrix.synthetic[model] = evaluate(
            model,
            synthetic.images,
            synthetic.labels,
            data,
            protocol,
            seeds,
            config.device,
            lr=synthetic.learned_lr,
            dsa_strategy=dsa_strategy,
            progress=progress,
        )
        matrix.random_real[model] = evaluate_random_real(
            model, synthetic, data, protocol, seeds, config.device, dsa_strategy, progress
        )
    return matrix
