"""Evaluation protocol: learns a separable toy set, accepts soft labels, counts FLOPs exactly."""

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ddcore.baseline import full_data_baseline
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, architecture_flops, count_flops, evaluate, measure_accuracy
from ddcore.models import FeatureNet

QUICK = EvalProtocol("quick", epochs=15, lr=0.05, batch_size=32, schedule="cosine", augment=False)


def toy_dataset(n_per_class: int = 60, seed: int = 0) -> RealDataset:
    """Three classes told apart by which third of an 8x8 image is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(3).repeat_interleave(n)
        images = 0.3 * torch.randn(len(labels), 1, 8, 8, generator=g)
        for c in range(3):
            images[labels == c, :, :, c * 3 : c * 3 + 2] += 1.0
        return images, labels

    (train_x, train_y), (test_x, test_y) = make(n_per_class), make(n_per_class // 2)
    return RealDataset("toy", train_x, train_y, test_x, test_y, ["a", "b", "c"], (0.0,), (1.0,))


def test_learns_separable_toy_set():
    data = toy_dataset()
    result = evaluate("ConvNetD2", data.train_images, data.train_labels, data, QUICK, seeds=(0, 1), device="cpu")
    assert len(result.runs) == 2
    assert result.accuracy_mean > 0.95
    assert result.balanced_accuracy_mean > 0.95
    assert all(r.train_seconds > 0 for r in result.runs)


def test_untrained_network_is_near_chance():
    data = toy_dataset()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always answers class 0
    accuracy, balanced = measure_accuracy(net, data, torch.device("cpu"))
    assert accuracy == pytest.approx(1 / 3)
    assert balanced == pytest.approx(1 / 3)


@pytest.fixture
def step_lrs():
    """The lr of every optimizer step taken while the test runs, as the optimizer holds it when it steps
    (a global pre-hook: `torch.optim.optimizer.register_optimizer_step_pre_hook`, torch.optim's docs)."""
    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["lr"])
    )
    yield seen
    handle.remove()


def test_soft_labels_and_learned_lr_accepted(step_lrs):
    data = toy_dataset()
    soft = torch.nn.functional.one_hot(data.train_labels, 3).float() * 0.8 + 0.2 / 3
    result = evaluate("MLP", data.train_images, soft, data, QUICK, seeds=(0,), device="cpu", lr=0.02)
    assert result.accuracy_mean > 0.9
    # The network trained with the learned lr: QUICK's cosine schedule starts there and only decays.
    steps = QUICK.epochs * -(-len(data.train_images) // QUICK.batch_size)
    assert len(step_lrs) == steps and step_lrs[0] == 0.02 and max(step_lrs) == 0.02 and step_lrs[-1] < 0.02


def test_bad_labels_rejected():
    data = toy_dataset()
    with pytest.raises(DDError, match="labels must be"):
        evaluate("MLP", data.train_images, data.train_labels[:5], data, QUICK, device="cpu")


def test_seeds_are_deterministic():
    data = toy_dataset()
    first = evaluate("MLP", data.train_images, data.train_labels, data, QUICK, seeds=(3,), device="cpu")
    second = evaluate("MLP", data.train_images, data.train_labels, data, QUICK, seeds=(3,), device="cpu")
    assert first.runs[0].accuracy == second.runs[0].accuracy


def test_flops_match_hand_count():
    # conv 1->2, 3x3, padding 1 on 8x8: 2 out channels * 9 taps * 64 positions = 1152 multiply-adds;
    # linear 128->3: 384 multiply-adds. fvcore counts one multiply-add as one FLOP, biases not counted.
    net = FeatureNet(nn.ModuleList([nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())]), nn.Linear(128, 3))
    assert count_flops(net, channels=1, image_size=8) == 1152 + 384


def test_mnist_convnet_d3_flops_match_hand_count():
    # DC's ConvNetD3 on 1-channel 28 px input: the first conv is padded by 3, so the three blocks
    # see 32, 16 and 8 px maps. fvcore: one multiply-add = one FLOP, conv biases not counted,
    # pooling and ReLU not counted, instance norm (GroupNorm, affine) 5 FLOPs per element.
    convs = 32 * 32 * 128 * (1 * 9) + 16 * 16 * 128 * (128 * 9) + 8 * 8 * 128 * (128 * 9)
    norms = 5 * 128 * (32 * 32 + 16 * 16 + 8 * 8)
    linear = 128 * 4 * 4 * 10
    assert convs + norms + linear == 49_246_208
    assert architecture_flops("ConvNetD3", 1, 10, 28) == convs + norms + linear


def test_baseline_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path))
    data = toy_dataset()
    first, cached_first = full_data_baseline(data, "MLP", seeds=(0,), protocol=QUICK, device="cpu")
    second, cached_second = full_data_baseline(data, "MLP", seeds=(0, 1), protocol=QUICK, device="cpu")
    assert cached_first == [False] and cached_second == [True, False]
    assert second.runs[0] == first.runs[0]
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 2


def test_protocol_batch_size_override_gets_its_own_name():
    from ddcore.evaluate import get_protocol

    assert get_protocol("full").batch_size == 256
    custom = get_protocol("full", batch_size=32)
    assert custom.batch_size == 32 and custom.name == "full-bs32" and custom.epochs == 20
    with pytest.raises(DDError, match="unknown evaluation protocol 'weekly'; known: full, dc, dc-aug, datadam, datm"):
        get_protocol("weekly")


@pytest.mark.parametrize(
    "name, epochs, batch_size, takes_learned_lr",
    [("dc", 1000, 256, True), ("dc-aug", 1000, 256, True), ("datadam", 1800, 64, False), ("datm", 1000, 128, True)],
)
def test_named_protocols_follow_their_official_scripts(name, epochs, batch_size, takes_learned_lr):
    from ddcore.evaluate import get_protocol

    protocol = get_protocol(name)
    assert (protocol.epochs, protocol.batch_size, protocol.use_learned_lr) == (epochs, batch_size, takes_learned_lr)
    assert (protocol.lr, protocol.momentum, protocol.weight_decay) == (0.01, 0.9, 5e-4)
    assert protocol.schedule == "step" and protocol.augment and protocol.source
    assert protocol.training_lr(None) == 0.01
    assert protocol.training_lr(0.003) == (0.003 if takes_learned_lr else 0.01)


def test_each_protocol_augments_with_its_own_augmentation(monkeypatch):
    import ddcore.evaluate as evaluate_module

    seen = []
    monkeypatch.setattr(evaluate_module, "dc_augment", lambda x, seed: seen.append("dc") or x)
    monkeypatch.setattr(evaluate_module, "dsa", lambda x, strategy, seed, params: seen.append(strategy) or x)
    data = toy_dataset(n_per_class=4)  # 12 images: one batch an epoch
    for name in ("dc", "dc-aug", "full"):
        protocol = evaluate_module.get_protocol(name, epochs=2)
        evaluate("MLP", data.train_images, data.train_labels, data, protocol, device="cpu", dsa_strategy="crop")
    assert seen == ["crop", "crop", "dc", "dc"]  # dc-aug: DC's augmentation whatever the set's DSA strategy


def test_learned_lr_reaches_training_only_where_the_protocol_takes_it(step_lrs):
    from ddcore.evaluate import get_protocol

    data = toy_dataset(n_per_class=4)  # 12 images: one step an epoch
    for name in ("datm", "datadam"):
        protocol = get_protocol(name, epochs=2)
        evaluate("MLP", data.train_images, data.train_labels, data, protocol, device="cpu", lr=0.003)
    # The lr each step trained with: the step schedule's, divided by 10 for the second half.
    assert step_lrs == pytest.approx([0.003, 0.0003, 0.01, 0.001])


def test_mhist_baseline_uses_small_batches():
    from ddcore.baseline import baseline_protocol

    assert baseline_protocol("mnist").batch_size == 256 and baseline_protocol("mnist").name == "full"
    assert baseline_protocol("mhist").batch_size == 32 and baseline_protocol("mhist").name == "full-bs32"
    assert baseline_protocol("mhist", 64).batch_size == 64
