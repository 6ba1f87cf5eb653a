"""Class-incremental continual learning with a distilled memory.

Classes arrive in tasks of `classes_per_task` (natural class order: task 0 = classes 0 and 1,
...). After each task a memory holds a fixed number of images per seen class, and a network is
trained FROM SCRATCH on the memory of all seen classes, then tested on the real test images of
all seen classes (predicting among the seen classes only). This is the GDumb-style protocol
(Prabhu et al. 2020) with which DC and DM evaluate distilled memories (Zhao & Bilen 2023, Sec.
5.4), after Masarczyk & Tautkute (2020) and Sangermano et al. (2022), who replace exemplars with
synthetic images.

Memories of equal size per class (the synthetic set's class sizes):
- `distilled`: the synthetic images of the class (with its soft labels and learned lr, if any);
- `random`: random real images of the class (a new draw per seed);
- `herding`: real images chosen by herding (Rebuffi et al., iCaRL, CVPR 2017, Alg. 4) on the
  L2-normalised embeddings of a network trained on the task's real data: greedily add the image
  that brings the mean of the chosen embeddings closest to the class mean.

Differences from the papers, on purpose: every memory is trained with the DC protocol
(ddcore.evaluate: SGD, step decay, DSA), so the memories differ only in their images; the
herding network is trained with the full-data protocol for `herding_epochs` epochs (fewer than
its 20, stated in the results) since only its embedding ranks images; herding picks without
replacement.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ddcore.analyses.cross_arch import check_models
from ddcore.baseline import baseline_protocol
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, get_protocol, train_network
from ddcore.models import get_model
from ddcore.progress import progress_bar
from ddcore.runtime import resolve_device, seed_everything
from ddcore.synthetic import SyntheticSet
from ddcore.tables import ResultTable, percent
from ddcore.visualize import save_curves

MEMORIES = ("distilled", "random", "herding")


@dataclass
class ContinualConfig:
    classes_per_task: int = 2
    model: str = "ConvNetD3"  # the network trained on each memory (and the herding feature network)
    seeds: int = 3
    epochs: int | None = None  # DC protocol epochs per memory training (None: its 1000)
    herding_epochs: int = 5  # full-data protocol epochs of the herding feature network, per task
    memories: tuple[str, ...] = MEMORIES
    device: str = "auto"


@dataclass
class ContinualStep:
    """The state after one task: which classes are seen, what each memory holds, the accuracies."""

    task: int
    new_classes: list[int]
    seen_classes: list[int]
    test_images: int  # real test images of the seen classes
    memory_sizes: dict[str, int] = field(default_factory=dict)
    memory_classes: dict[str, list[int]] = field(default_factory=dict)  # the classes each memory holds
    accuracies: dict[str, list[float]] = field(default_factory=dict)  # one per seed

    def mean(self, memory: str) -> float:
        return statistics.fmean(self.accuracies[memory])

    def std(self, memory: str) -> float:
        return statistics.pstdev(self.accuracies[memory])


@dataclass
class ContinualResult:
    dataset: str
    model: str
    ipc: int
    protocol: str
    herding_protocol: str
    memories: list[str]
    steps: list[ContinualStep]

    def curve(self, memory: str) -> list[tuple[int, float]]:
        """(number of seen classes, mean accuracy) after each task."""
        return [(len(step.seen_classes), step.mean(memory)) for step in self.steps]

    def table(self) -> ResultTable:
        rows = [
            [str(step.task + 1), ",".join(map(str, step.seen_classes)), str(step.memory_sizes[self.memories[0]])]
            + [percent(step.mean(m), step.std(m)) for m in self.memories]
            for step in self.steps
        ]
        seeds = len(self.steps[0].accuracies[self.memories[0]])
        return ResultTable(
            title=f"Class-incremental accuracy % on seen classes: {self.dataset}, {self.model}, {self.ipc} images per class",
            columns=["task", "seen classes", "memory images", *self.memories],
            rows=rows,
            notes=[
                f"mean ± std over {seeds} seed(s); each memory trained from scratch with protocol {self.protocol}",
                f"herding on embeddings of a {self.model} trained on each task's real data ({self.herding_protocol})",
            ],
        )

    def save_plots(self, folder: Path) -> list[Path]:
        curves = {memory: self.curve(memory) for memory in self.memories}
        return [
            save_curves(
                curves, folder / "accuracy_vs_classes.png", "number of classes seen", "test accuracy on seen classes"
            )
        ]

    def metrics(self) -> dict[str, float]:
        return {f"cl_{m}_{len(step.seen_classes)}cls": step.mean(m) for step in self.steps for m in self.memories}

    def to_dict(self) -> dict:
        return asdict(self)


def class_incremental_tasks(num_classes: int, classes_per_task: int) -> list[list[int]]:
    """Consecutive classes in tasks of `classes_per_task` (the last one smaller if they do not divide)."""
    if not 1 <= classes_per_task <= num_classes:
        raise DDError(f"classes per task must be between 1 and {num_classes}, got {classes_per_task}")
    return [
        list(range(start, min(start + classes_per_task, num_classes)))
        for start in range(0, num_classes, classes_per_task)
    ]


def herding_selection(embeddings: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of `n` rows chosen by herding (iCaRL, Alg. 4), in the order chosen, no repeats.

    Step k picks the row x that minimises || mu - (sum of the k-1 chosen + x) / k || with mu the
    mean of all L2-normalised rows.
    """
    if not 1 <= n <= len(embeddings):
        raise DDError(f"herding needs 1 to {len(embeddings)} exemplars, got {n}")
    features = F.normalize(embeddings.float(), dim=1)
    target = features.mean(dim=0)
    chosen_sum = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool)
    chosen = []
    for k in range(1, n + 1):
        distances = (target - (chosen_sum + features) / k).norm(dim=1)
        distances[~available] = float("inf")
        pick = int(distances.argmin())
        chosen.append(pick)
        chosen_sum += features[pick]
        available[pick] = False
    return torch.tensor(chosen, dtype=torch.long)


@torch.inference_mode()
def embed(model, images: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [model.embed(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    )


@torch.inference_mode()
def seen_class_accuracy(
    model, data: RealDataset, seen: list[int], device: torch.device, batch_size: int = 1024
) -> float:
    """Accuracy on the real test images of the `seen` classes, predicting among those classes only."""
    model.eval()
    keep = torch.isin(data.test_labels, torch.tensor(seen))
    images, labels = data.test_images[keep], data.test_labels[keep]
    unseen = torch.ones(data.num_classes, dtype=torch.bool)
    unseen[seen] = False
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start : start + batch_size].to(device)).cpu()
        logits[:, unseen] = float("-inf")
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def herding_protocol(data: RealDataset, config: ContinualConfig) -> EvalProtocol:
    """The full-data protocol (the data set's batch size) shortened to `herding_epochs`."""
    return get_protocol("full", baseline_protocol(data.name).batch_size, config.herding_epochs)


class MemoryBuilder:
    """Each memory's images and labels per class, built when the class arrives and kept after."""

    def __init__(
        self, synthetic: SyntheticSet, data: RealDataset, config: ContinualConfig, seed: int, device: torch.device
    ):
        self.synthetic, self.data, self.config, self.seed, self.device = synthetic, data, config, seed, device
        self.hard = synthetic.hard_labels()
        self.per_class = torch.bincount(self.hard, minlength=data.num_classes).tolist()
        self.banks: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {m: {} for m in config.memories}
        self.herding_protocol = herding_protocol(data, config)

    def add_task(self, classes: list[int]) -> None:
        for memory in self.config.memories:
            if memory == "distilled":
                for c in classes:
                    members = self.hard == c
                    self.banks[memory][c] = (self.synthetic.images[members], self.synthetic.labels[members])
            elif memory == "random":  # a draw of its own per (seed, task): independent of the other memories
                generator = torch.Generator().manual_seed(self.seed * 1_000 + classes[0])
                for c in classes:
                    pool = self.data.class_indices[c]
                    picked = pool[torch.randperm(len(pool), generator=generator)[: self.per_class[c]]]
                    self.banks[memory][c] = (self.data.train_images[picked], self.data.train_labels[picked])
            else:
                self._add_herding(classes)

    def _add_herding(self, classes: list[int]) -> None:
        task_indices = torch.cat([self.data.class_indices[c] for c in classes])
        seed_everything(self.seed)
        net = get_model(self.config.model, self.data.channels, self.data.num_classes, self.data.image_size).to(
            self.device
        )
        train_network(
            net,
            self.data.train_images[task_indices].to(self.device),
            self.data.train_labels[task_indices].to(self.device),
            self.herding_protocol,
            self.seed,
        )
        for c in classes:
            pool = self.data.class_indices[c]
            picked = pool[herding_selection(embed(net, self.data.train_images[pool], self.device), self.per_class[c])]
            self.banks["herding"][c] = (self.data.train_images[picked], self.data.train_labels[picked])

    def memory(self, name: str, seen: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = zip(*(self.banks[name][c] for c in seen))
        return torch.cat(images), torch.cat(labels)


def train_on_memory(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: RealDataset,
    model_name: str,
    protocol: EvalProtocol,
    seed: int,
    device: torch.device,
    lr: float | None,
    dsa_strategy: str,
):
    seed_everything(seed)
    model = get_model(model_name, data.channels, data.num_classes, data.image_size).to(device)
    train_network(model, images.to(device), labels.to(device), protocol, seed, lr=lr, dsa_strategy=dsa_strategy)
    return model


def check_continual(synthetic: SyntheticSet, data: RealDataset, config: ContinualConfig) -> None:
    """One-line errors for settings no run can use (before anything is recorded or trained)."""
    synthetic.check_matches(data)
    check_models([config.model], data)
    unknown = set(config.memories) - set(MEMORIES)
    if unknown or not config.memories:
        raise DDError(f"unknown or no memory type(s) {', '.join(sorted(unknown))}; known: {', '.join(MEMORIES)}")
    if config.seeds < 1 or config.herding_epochs < 1:
        raise DDError(f"seeds and herding epochs must be positive, got {config.seeds} and {config.herding_epochs}")
    class_incremental_tasks(data.num_classes, config.classes_per_task)
    get_protocol("dc", epochs=config.epochs)
    resolve_device(config.device)


def continual_learning(
    synthetic: SyntheticSet, data: RealDataset, config: ContinualConfig = ContinualConfig(), progress: bool = False
) -> ContinualResult:
    """Train from scratch on each memory after each task; accuracy on all seen classes' test images."""
    check_continual(synthetic, data, config)
    tasks = class_incremental_tasks(data.num_classes, config.classes_per_task)
    protocol = get_protocol("dc", epochs=config.epochs)
    device = resolve_device(config.device)
    dsa_strategy = str(synthetic.config.get("dsa_strategy", ""))
    steps = []
    for t, task in enumerate(tasks):
        seen = [c for done in tasks[: t + 1] for c in done]
        steps.append(ContinualStep(t, task, seen, int(torch.isin(data.test_labels, torch.tensor(seen)).sum())))
    with progress_bar("continual learning", config.seeds * len(tasks) * len(config.memories), enabled=progress) as bar:
        for seed in range(config.seeds):
            builder = MemoryBuilder(synthetic, data, config, seed, device)
            for step in steps:
                builder.add_task(step.new_classes)
                for memory in config.memories:
                    images, labels = builder.memory(memory, step.seen_classes)
                    hard = labels if labels.dim() == 1 else labels.argmax(dim=1)
                    step.memory_sizes[memory] = len(images)
                    step.memory_classes[memory] = sorted(set(hard.tolist()))
                    lr = synthetic.learned_lr if memory == "distilled" else None
                    model = train_on_memory(
                        images, labels, data, config.model, protocol, seed, device, lr, dsa_strategy
                    )
                    step.accuracies.setdefault(memory, []).append(
                        seen_class_accuracy(model, data, step.seen_classes, device)
                    )
                    bar.advance(status=f"seed {seed}, {len(step.seen_classes)} classes, {memory}")
    return ContinualResult(
        data.name,
        config.model,
        synthetic.ipc,
        protocol.name,
        herding_protocol(data, config).name,
        list(config.memories),
        steps,
    )
