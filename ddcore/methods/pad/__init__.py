"""PAD: Prioritize Alignment in Dataset Distillation (Li et al., 2024), trajectory matching in DATM's style.

Stage 1 (`prepare`, `ddcore.methods.pad.experts`): N expert networks trained on the real data with PAD's
difficulty schedule, their parameters saved after every epoch.

Stage 2 (`distill`), per iteration (MTT, Cazenavette et al. 2022, Eq. 1-2; DATM, Guo et al. 2024):
pick an expert and a start epoch t in [min_start_epoch, upper) where the upper bound grows
linearly from `current_max_start_epoch` to `max_start_epoch` over `expansion_end_iteration`
iterations (DATM's sequential generation: easy, early trajectory segments first); start a
student at theta_t and take `syn_steps` SGD steps on batches of `batch_syn` synthetic images
(DSA-augmented) with the learnable learning rate alpha, towards soft targets softmax(Y):

    theta_{i+1} = theta_i - alpha * grad CE(f(theta_i, x_i), softmax(Y_i))

then match the expert `expert_epochs` later:

    L = || (theta_N - theta*_{t+M}) * m ||^2 / || (theta*_t - theta*_{t+M}) * m ||^2

with m PAD's alignment filter (Sec. 3.2): `filter="depth"` masks the first `depth_ratio` of the
flat parameter vector, i.e. the shallow layers (parameters are laid out input to output), as the
paper and the repository's `PAD_depth.py` do; `filter="loss"` masks the `loss_ratio` entries with
the smallest matching error, as the repository's current `PAD.py` does; `"none"` is DATM. The
images (SGD, momentum 0.5), alpha (SGD lr `lr_lr`, momentum 0.5) and the label logits Y (SGD lr
`lr_y`, momentum `momentum_y`; DATM) are updated only when L <= `threshold` (DATM's guard
against segments the set cannot follow yet).

Initialisation (DATM, `pix_init="samples_predicted_correctly"`): `init="real"` takes, per class,
random real images that the first expert at `label_epoch` (-1: its last epoch) classifies
correctly; Y starts as the mean logits of the experts that classify each image correctly.
`init="noise"` starts from Gaussian images with one-hot-like Y.

Defaults are the official CIFAR-10 IPC 10 config and buffer command; the `paper` preset takes the
official row of the run's IPC (`CIFAR10_SETTINGS`, from NUS-HPC-AI-Lab/PAD at 2a4bc91:
`configs/CIFAR-10/ConvIN/IPC{1,10,50,500,1000}.yaml`, the defaults they extend in `utils/cfg.py`,
the distillation loop in `distill/PAD.py`; PAD's configs extend DATM's, NUS-HPC-AI-Lab/DATM at
97ae510 `configs/CIFAR-10/ConvIN/`, adding the filter ratios and changing batch_syn, IPC 50's
expert_epochs (2 -> 3) and IPC 500's window (40..60 throughout -> 40..60 widening to 40..70)). The
official experts are trained 100 epochs (the README's `buffer_CL.py --train_epochs=100 --num_experts=100`;
the script's own default, 50, is MTT's and too short for IPC 500's window up to epoch 70+2).
Differences, on purpose:
- the student is any registry network evaluated at a flat parameter vector with
  `torch.func.functional_call` (the official code re-parametrises a module, `ReparamModule`);
- each iteration draws its expert at random (the official code walks a shuffled buffer list);
- the synthetic set stores Y as probabilities softmax(Y), which the evaluation protocol trains on
  with cross-entropy: the same loss as DATM's `SoftCrossEntropy(logits, Y)`;
- no ZCA whitening (the official CIFAR configs whiten; MNIST/MHIST runs here are not whitened).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddcore.augment import dsa
from ddcore.data import get_spec
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import PER_IMAGE
from ddcore.methods.base import Cost, DistillRun, Method, MethodConfig, Preparation, register_method
from ddcore.methods.pad.difficulty import scores_cached
from ddcore.methods.pad.experts import DataSchedule, ExpertBank, ExpertConfig, cached_experts, obtain_experts
from ddcore.models import get_model
from ddcore.runtime import resolve_device
from ddcore.synthetic import SyntheticSet

FILTERS = ("depth", "loss", "none")
OFFICIAL_EXPERT_EPOCHS = DataSchedule().reference_epochs  # the official buffers' length, 100
MAX_EXPERTS = 1000  # ten times the official buffer; more is a typo (each expert is a training run and a file)


@dataclass
class PADConfig(MethodConfig):
    """PAD's knobs; defaults from the official CIFAR-10 IPC 10 config and buffer command."""

    iterations: int = 10000
    # Stage 1: the experts (buffer_CL.py).
    num_experts: int = 10
    trajectory_epochs: int = 100  # epochs each expert is trained (train_epochs)
    lr_teacher: float = 0.01  # the experts' SGD lr, and the learned lr's start
    expert_batch: int = 256  # the buffer's batch_train (the data set's full-data batch in presets)
    data_schedule: bool = True  # PAD's easy-to-hard schedule; False = all data every epoch (MTT/DATM)
    difficulty_score: str = "el2n"  # el2n or grand: orders the samples of the data schedule
    # Stage 2: matching.
    syn_steps: int = 80  # student steps on the synthetic set per iteration
    expert_epochs: int = 2  # expert epochs the student's steps are matched to
    min_start_epoch: int = 0
    current_max_start_epoch: int = 10
    max_start_epoch: int = 20
    expansion_end_iteration: int = 1000  # the official `expansion_end_epoch` (it counts iterations)
    lr_images: float = 100.0
    momentum_images: float = 0.5
    lr_lr: float = 1e-5
    lr_y: float = 2.0
    momentum_y: float = 0.9
    learn_labels: bool = True
    label_epoch: int = -1  # expert epoch whose logits initialise the labels (-1: the last)
    batch_syn: int = 0  # synthetic images per student step; 0 = the whole set
    filter: str = "depth"
    depth_ratio: float = 0.5
    loss_ratio: float = 0.5
    threshold: float = 1.0

    def expert_config(self, dataset: str, image_size: int) -> ExpertConfig:
        return ExpertConfig.for_dataset(
            dataset,
            image_size,
            self.model,
            schedule=self.data_schedule,
            epochs=self.trajectory_epochs,
            lr=self.lr_teacher,
            batch_size=self.expert_batch,
            score=self.difficulty_score,
            seed=self.seed,
            dsa_strategy=self.dsa_strategy,  # the official buffer and distillation share one DSA strategy
        )

    def validate(self, images_per_class: list[int] | None = None) -> None:
        super().validate(images_per_class)
        trained = self.trajectory_epochs
        if self.expert_epochs < 1 or self.syn_steps < 1:
            raise DDError(
                f"expert_epochs and syn_steps must be at least 1, got {self.expert_epochs} and {self.syn_steps}"
            )
        if not 1 <= self.num_experts <= MAX_EXPERTS:
            raise DDError(
                f"num_experts must be within 1..{MAX_EXPERTS} (the official buffer holds 100), got {self.num_experts}"
            )
        if self.expert_epochs > trained:
            raise DDError(
                f"expert_epochs {self.expert_epochs} is more than the {trained} epochs the experts "
                "are trained for (trajectory_epochs)"
            )
        if self.max_start_epoch + self.expert_epochs > trained:
            raise DDError(
                f"max_start_epoch {self.max_start_epoch} + expert_epochs {self.expert_epochs} is more than "
                f"the {trained} epochs the experts are trained for (trajectory_epochs)"
            )
        if not 0 <= self.min_start_epoch < self.current_max_start_epoch <= self.max_start_epoch:
            raise DDError(
                "start epochs must satisfy 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch, "
                f"got {self.min_start_epoch}, {self.current_max_start_epoch}, {self.max_start_epoch}"
            )
        if self.filter not in FILTERS:
            raise DDError(f"filter must be one of {', '.join(FILTERS)}, got '{self.filter}'")
        for name in ("depth_ratio", "loss_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise DDError(f"{name} must be within [0, 1), got {getattr(self, name)}")
        if self.batch_syn < 0 or self.expansion_end_iteration < 1:
            raise DDError(
                f"batch_syn must be >= 0 and expansion_end_iteration >= 1, got {self.batch_syn}, "
                f"{self.expansion_end_iteration}"
            )
        if not -trained - 1 <= self.label_epoch <= trained:
            raise DDError(f"label_epoch {self.label_epoch} is outside the experts' epochs 0..{trained}")


@dataclass(frozen=True)
class OfficialSettings:
    """One official CIFAR-10 config in PADConfig's names, for experts trained OFFICIAL_EXPERT_EPOCHS.

    Renamed: lr_img -> lr_images, Momentum_y -> momentum_y, Iteration -> iterations,
    expansion_end_epoch -> expansion_end_iteration (it counts iterations). Where a config turns
    Sequential_Generation off the window is full from the start: current_max_start_epoch =
    max_start_epoch. Defaults are the values every CIFAR-10 config shares or, for
    expansion_end_iteration, `utils/cfg.py`'s (inert where the window does not grow).
    """

    syn_steps: int
    expert_epochs: int
    min_start_epoch: int
    current_max_start_epoch: int
    max_start_epoch: int
    lr_images: float
    lr_lr: float
    lr_y: float
    threshold: float
    batch_syn: int  # more than the set holds: the whole set per step
    depth_ratio: float
    loss_ratio: float
    expansion_end_iteration: int = 3000
    iterations: int = 10000
    lr_teacher: float = 0.01
    momentum_y: float = 0.9

    def scaled(self, epochs: int) -> OfficialSettings:
        """The same row for experts trained `epochs`: the start-epoch window times epochs / 100.

        The factor and rounding are the data schedule's (`DataSchedule.scaled`), so the student
        starts in the same phase of the experts' training (and of their curriculum) as officially;
        the window stays at least one epoch wide (validate's min < current <= max).
        """
        factor = epochs / OFFICIAL_EXPERT_EPOCHS
        low = round(self.min_start_epoch * factor)
        current = max(low + 1, round(self.current_max_start_epoch * factor))
        return replace(
            self,
            min_start_epoch=low,
            current_max_start_epoch=current,
            max_start_epoch=max(current, round(self.max_start_epoch * factor)),
        )


# PAD at 2a4bc91, configs/CIFAR-10/ConvIN/IPC<ipc>.yaml; columns in OfficialSettings' field order.
CIFAR10_SETTINGS: dict[int, OfficialSettings] = {
    ipc: OfficialSettings(*row)
    for ipc, row in {
        # ipc: (syn_steps, expert_epochs, min/current/max start epoch, lr_images, lr_lr, lr_y, threshold,
        #       batch_syn, depth_ratio, loss_ratio, expansion_end_iteration)
        1: (80, 2, 0, 4, 4, 100.0, 1e-7, 5.0, 1.1, 1000, 0.0, 0.0, 3000),
        10: (80, 2, 0, 10, 20, 100.0, 1e-5, 2.0, 1.0, 500, 0.5, 0.5, 1000),
        50: (80, 3, 0, 20, 40, 1000.0, 1e-5, 2.0, 1.0, 1000, 0.25, 0.25, 2000),
        500: (40, 2, 40, 60, 70, 50.0, 1e-5, 10.0, 1.0, 1000, 0.5, 0.5, 2000),
        1000: (100, 2, 40, 60, 60, 50.0, 1e-5, 10.0, 1.0, 1000, 0.5, 0.5, 3000),
    }.items()
}


def official_settings(ipc: int) -> OfficialSettings:
    """The row of the largest official IPC at or below `ipc` (the smallest row below IPC 1).

    At or below, not nearest: the official window moves to later expert epochs as the IPC grows
    (DATM: only larger sets can follow the later, harder segments), so a set is never asked to
    match segments later than those tuned for a set no larger than itself.
    """
    at_or_below = [row for row in CIFAR10_SETTINGS if row <= ipc]
    return CIFAR10_SETTINGS[max(at_or_below, default=min(CIFAR10_SETTINGS))]


# Neither PAD nor DATM distils these; our choices, applied over the (scaled) official row.
DATASET_CHOICES: dict[str, dict[str, Any]] = {
    "mnist": dict(trajectory_epochs=20, syn_steps=40, iterations=5000),
    "mhist": dict(ipc=50, trajectory_epochs=30, syn_steps=40, batch_syn=50, iterations=5000),
    "digits": dict(
        num_experts=3, trajectory_epochs=10, syn_steps=20, iterations=300, expansion_end_iteration=100, log_every=10
    ),
}


def paper_preset(dataset: str, ipc: int | None = None) -> PADConfig:
    """The official CIFAR-10 settings of the run's IPC, fitted to its experts; our choices where the papers have none.

    Row: `official_settings` (IPC 20 takes IPC 10's row, IPC 100 IPC 50's). Its start-epoch window
    is scaled to the experts' length (`OfficialSettings.scaled`): 20-epoch MNIST experts are matched
    from epochs 0..4 at IPC 10, the phase the official 0..20 of 100 covers. expert_epochs, syn_steps
    and expansion_end_iteration are not scaled.

    Differences from the official settings, everywhere: 10 experts, not 100 (each is a training
    run; `num_experts=100` gives the official buffer); no ZCA whitening; the configs' batch_train
    (128) belongs to their evaluation, our evaluation protocol has its own; ema_decay is read by no
    official code.
    Per data set (`DATASET_CHOICES`), and why:
    - mnist: experts trained 20 epochs (a ConvNet passes 99 % on MNIST within a few epochs, so
      later epochs barely move), 40 student steps and 5,000 iterations (half the official cost);
    - mhist: ConvNetD7 at 128 px, IPC 50 (the course's) so IPC 50's row, 30 expert epochs with
      batches of 32 (2,175 images), 40 steps on batches of 50 synthetic images (memory), 5,000
      iterations;
    - digits (8 px, our quick embedded set): 3 experts of 10 epochs with batches of 32, 20 steps,
      300 iterations, the window fully open by iteration 100.
    The schedule's epochs (0.75, 20, 40 / 10 %, 60 / 20 %) are scaled to each run's length likewise.
    """
    spec = get_spec(dataset)
    config = PADConfig(model=spec.model, dsa_strategy=spec.dsa_strategy, expert_batch=spec.full_data_batch)
    choices = DATASET_CHOICES.get(dataset, {})
    ipc = choices.get("ipc", config.ipc) if ipc is None else ipc
    row = official_settings(ipc).scaled(choices.get("trajectory_epochs", config.trajectory_epochs))
    return config.with_overrides(**{**asdict(row), **choices, "ipc": ipc})


PRESETS = {"paper": paper_preset}


class FlatNetwork:
    """A registry network evaluated at a flat parameter vector (the layout of `flatten_parameters`)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.names = [name for name, _ in net.named_parameters()]
        self.shapes = [p.shape for p in net.parameters()]
        self.sizes = [p.numel() for p in net.parameters()]
        self.buffers = dict(net.named_buffers())

    @property
    def num_parameters(self) -> int:
        return sum(self.sizes)

    def __call__(self, flat: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        pieces = flat.split(self.sizes)
        params = {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}
        return functional_call(self.net, {**params, **self.buffers}, (images,))

    def masked_by_depth(self, depth_ratio: float) -> list[tuple[str, int]]:
        """(parameter name, entries masked) of every parameter the depth filter touches, shallow first."""
        remaining = int(depth_ratio * self.num_parameters)
        masked = []
        for name, size in zip(self.names, self.sizes):
            if remaining <= 0:
                break
            masked.append((name, min(size, remaining)))
            remaining -= size
        return masked


def kept_entries(errors: torch.Tensor, config: PADConfig) -> torch.Tensor:
    """Indices of the flat parameters that count in the loss: PAD's alignment filter."""
    count = len(errors)
    if config.filter == "depth":
        return torch.arange(int(config.depth_ratio * count), count, device=errors.device)
    if config.filter == "loss":
        return torch.argsort(errors.detach())[int(config.loss_ratio * count) :]
    return torch.arange(count, device=errors.device)


def matching_loss(student: torch.Tensor, start: torch.Tensor, target: torch.Tensor, config: PADConfig) -> torch.Tensor:
    """|| student - target ||^2 / || start - target ||^2 over the parameters the filter keeps."""
    errors = (student - target).pow(2)
    keep = kept_entries(errors, config)
    return errors[keep].sum() / (start - target)[keep].pow(2).sum().clamp_min(1e-12)


def unroll_student(
    student: FlatNetwork,
    start: torch.Tensor,
    images: torch.Tensor,
    targets: torch.Tensor,
    lr: torch.Tensor,
    config: PADConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """`syn_steps` differentiable SGD steps from `start` on batches of the synthetic set."""
    params = start.clone().requires_grad_(True)
    batch = config.batch_syn or len(images)
    chunks: list[torch.Tensor] = []
    for _ in range(config.syn_steps):
        if not chunks:
            chunks = list(torch.randperm(len(images), generator=generator).to(images.device).split(batch))
        index = chunks.pop()
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        x = dsa(images[index], config.dsa_strategy, seed, params=PER_IMAGE)
        loss = F.cross_entropy(student(params, x), targets[index])
        grad = torch.autograd.grad(loss, params, create_graph=True)[0]
        params = params - lr * grad
    return params


def _label_epoch(config: PADConfig) -> int:
    return config.label_epoch % (config.trajectory_epochs + 1)


@torch.no_grad()
def _predictions(student: FlatNetwork, params: torch.Tensor, images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    student.net.eval()
    logits = torch.cat([student(params, part) for part in images.split(chunk)])
    student.net.train()
    return logits


def initial_images(
    data: RealDataset,
    bank: ExpertBank,
    student: FlatNetwork,
    config: PADConfig,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Per class, random real images the experts (first ones first) classify correctly (DATM)."""
    if config.init == "noise":
        shape = (data.num_classes * config.ipc, data.channels, data.image_size, data.image_size)
        return torch.randn(shape, generator=generator).to(device)
    chosen = []
    for c in range(data.num_classes):
        members = data.class_indices[c][torch.randperm(len(data.class_indices[c]), generator=generator)]
        picked = torch.empty(0, dtype=torch.long)
        for expert in range(len(bank)):
            if len(picked) >= config.ipc:
                break
            params = bank.parameters(expert, _label_epoch(config)).to(device)
            candidates = members[~torch.isin(members, picked)]
            correct = _predictions(student, params, data.train_images[candidates].to(device)).argmax(1).cpu() == c
            picked = torch.cat([picked, candidates[correct][: config.ipc - len(picked)]])
        if len(picked) < config.ipc:  # no expert is right often enough: top up with random images of the class
            picked = torch.cat([picked, members[~torch.isin(members, picked)][: config.ipc - len(picked)]])
        chosen.append(picked)
    return data.train_images[torch.cat(chosen)].clone().to(device)


def initial_label_logits(
    images: torch.Tensor, classes: torch.Tensor, bank: ExpertBank, student: FlatNetwork, config: PADConfig
) -> torch.Tensor:
    """Mean logits of the experts that classify each image correctly; one-hot-like where none does."""
    total = torch.zeros(len(images), classes.max().item() + 1, device=images.device)
    count = torch.zeros(len(images), 1, device=images.device)
    for expert in range(len(bank)):
        logits = _predictions(student, bank.parameters(expert, _label_epoch(config)).to(images.device), images)
        correct = (logits.argmax(1) == classes).float().unsqueeze(1)
        total += logits * correct
        count += correct
    one_hot_like = logits_of(F.one_hot(classes, total.shape[1]).float())
    return torch.where(count > 0, total / count.clamp_min(1), one_hot_like)


def logits_of(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is (almost exactly) `probabilities`."""
    return probabilities.clamp_min(1e-6).log()


def experts(data: RealDataset, config: PADConfig, progress: bool = False) -> ExpertBank:
    """Stage 1: the experts, from the cache or trained here (`ddorch experts` trains them on Ray)."""
    return obtain_experts(
        data,
        config.expert_config(data.name, data.image_size),
        config.num_experts,
        device=config.device,
        progress=progress,
    )


def preparation_left(config: PADConfig, dataset: str) -> tuple[int, int]:
    """What stage 1 still has to train for `config` at the data set's own size, by the cache:
    (experts, epochs of difficulty networks); (0, 0) when the distillation can start at once."""
    spec = get_spec(dataset)
    experts = config.expert_config(dataset, spec.image_size)
    missing = config.num_experts - cached_experts(experts, config.num_experts, spec.channels, spec.num_classes)
    difficulty = experts.difficulty
    scores_needed = missing and experts.schedule is not None
    if scores_needed and not scores_cached(dataset, spec.channels, spec.num_classes, spec.image_size, difficulty):
        return missing, difficulty.networks * difficulty.epochs
    return missing, 0


class PADRun(DistillRun):
    """One PAD distillation: images, soft-label logits and the learned lr, matched to expert segments."""

    def __init__(
        self, data: RealDataset, config: PADConfig, resume: SyntheticSet | None, start_iteration: int, progress: bool
    ):
        self.data, self.config = data, config
        device = self.device = resolve_device(config.device)
        bank = experts(data, config, progress)
        # A resumed run draws anew from its iteration (the checkpoint holds the set, not the RNG).
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + start_iteration)
        net = get_model(config.model, data.channels, data.num_classes, data.image_size).to(device).train()
        self.student = FlatNetwork(net)
        self.classes = torch.arange(data.num_classes, device=device).repeat_interleave(config.ipc)
        if resume is not None:
            images = resume.images.to(device)
            hard = resume.labels.dim() == 1
            probabilities = (
                F.one_hot(resume.labels.to(device), data.num_classes).float() if hard else resume.labels.to(device)
            )
            label_logits = logits_of(probabilities)
            lr = resume.learned_lr if resume.learned_lr is not None else config.lr_teacher
        else:
            images = initial_images(data, bank, self.student, config, self.generator, device)
            label_logits = initial_label_logits(images, self.classes, bank, self.student, config)
            lr = config.lr_teacher
        self.images = images.detach().requires_grad_(True)
        self.label_logits = label_logits.detach().requires_grad_(config.learn_labels)
        self.syn_lr = torch.tensor(float(lr), device=device, requires_grad=True)
        self.optimizers = [
            torch.optim.SGD([self.images], lr=config.lr_images, momentum=config.momentum_images),
            torch.optim.SGD([self.syn_lr], lr=config.lr_lr, momentum=0.5),
        ]
        if config.learn_labels:
            self.optimizers.append(torch.optim.SGD([self.label_logits], lr=config.lr_y, momentum=config.momentum_y))
        self.trajectories = [bank.trajectory(i) for i in range(len(bank))]  # memory-mapped: read when used

    def _segment(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random expert's parameters at a random start epoch of the (growing) window, and N epochs later."""
        config = self.config
        growth = (config.max_start_epoch - config.current_max_start_epoch) * iteration // config.expansion_end_iteration
        upper = min(config.max_start_epoch, config.current_max_start_epoch + growth)
        start_epoch = int(torch.randint(config.min_start_epoch, upper, (1,), generator=self.generator))
        trajectory = self.trajectories[int(torch.randint(len(self.trajectories), (1,), generator=self.generator))]
        return trajectory[start_epoch].to(self.device), trajectory[start_epoch + config.expert_epochs].to(self.device)

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        config = self.config
        begin, target = self._segment(iteration)
        targets = self.label_logits.softmax(1) if config.learn_labels else self.classes
        final = unroll_student(self.student, begin, self.images, targets, self.syn_lr, config, self.generator)
        loss = matching_loss(final, begin, target, config)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        skipped = bool(loss.item() > config.threshold)  # DATM's guard: no update from a diverged segment
        if not skipped:
            for optimizer in self.optimizers:
                optimizer.step()
        return {"loss": loss, "learned_lr": self.syn_lr, "skipped": torch.tensor(float(skipped))}

    def after_window(self, iteration: int) -> None:
        if not self.syn_lr.item() > 0:
            raise DDError(
                f"the learned learning rate became {self.syn_lr.item():.4g} by iteration {iteration}; lower lr_lr"
            )

    def snapshot(self) -> SyntheticSet:
        config, data = self.config, self.data
        labels = self.label_logits.detach().softmax(1).cpu() if config.learn_labels else self.classes.cpu()
        return SyntheticSet.of(data, self.images, labels, "pad", config.to_dict(), float(self.syn_lr.item()))


@register_method
class PAD(Method):
    name = "pad"
    config_class = PADConfig
    presets = PRESETS
    run_class = PADRun

    def prepare(self, data: RealDataset, config: PADConfig, progress: bool = False) -> Preparation:
        """What a trial runs, times and logs before distilling: the experts and their manifest."""
        bank = experts(data, config, progress)
        return Preparation(
            artefacts=[bank.manifest],
            metrics={
                "experts_seconds": bank.seconds,
                "experts_trained_now": float(len(bank.trained_now)),
            },
        )

    def cost(self, config: PADConfig, dataset: str) -> Cost:
        """`syn_steps` student steps an iteration; before them, the expert epochs and difficulty-network
        epochs (with their scoring passes) that the cache still lacks (`preparation_left`)."""
        experts_left, difficulty_epochs = preparation_left(config, dataset)
        preparation = {"expert_epoch": experts_left * config.trajectory_epochs, "difficulty_epoch": difficulty_epochs}
        return Cost(config.ipc, {"pad_student_step": config.syn_steps}, preparation)
