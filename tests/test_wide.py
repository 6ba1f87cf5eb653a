"""K seeds trained as one wide network train the same K networks as K sequential runs."""

import pytest
import torch

from ddcore.evaluate import EvalProtocol, train_and_test, train_and_test_seeds, train_network, train_wide
from ddcore.models import get_model
from ddcore.models.wide import widen
from tests.test_evaluate import toy_dataset

WIDENED = ["ConvNetD3", "ConvNetD3BN", "ConvNetD2NN", "ConvNetD3W32", "LeNet", "MLP", "AlexNet", "VGG11BN"]
PROTOCOL = EvalProtocol("tiny", epochs=3, lr=0.01, batch_size=16, schedule="step", augment=True)


def fresh(name: str, seeds, channels=1, size=28):
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(get_model(name, channels, 10, size))
    return models


@pytest.mark.parametrize("name", WIDENED)
def test_wide_forward_is_each_networks_forward(name):
    models = fresh(name, (0, 1, 2))
    wide = widen(fresh(name, (0, 1, 2)))
    x = torch.randn(3, 5, 1, 28, 28)
    for model in models + [wide]:
        model.eval()
    expected = torch.stack([m(x[k]) for k, m in enumerate(models)])
    torch.testing.assert_close(wide(x), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wide.forward_shared(x[0]), torch.stack([m(x[0]) for m in models]), atol=1e-5, rtol=1e-4)


def test_residual_networks_are_not_widened():
    assert widen(fresh("ResNet18", (0, 1), channels=1, size=8)) is None


@pytest.mark.parametrize("name", ["ConvNetD3", "ConvNetD3BN"])
@pytest.mark.parametrize("soft", [False, True])
def test_wide_training_equals_sequential_training(name, soft):
    """Same shuffles, same DSA draws, same gradients: the trained networks agree to rounding.

    In float64, so that the check is tight: in float32 the grouped kernels' different summation
    order leaves ~1e-7 differences that a few SGD steps can grow past any fixed tolerance."""
    seeds = (3, 7)
    images = torch.randn(40, 1, 28, 28, dtype=torch.float64)
    labels = torch.arange(10).repeat(4)
    if soft:
        labels = torch.randn(40, 10, dtype=torch.float64).softmax(1)
    sequential = [m.double() for m in fresh(name, seeds)]
    for model, seed in zip(sequential, seeds):
        train_network(model, images, labels, PROTOCOL, seed, dsa_strategy="color_crop_cutout_scale_rotate")
    wide = widen([m.double() for m in fresh(name, seeds)])
    train_wide(wide, images, labels, PROTOCOL, seeds, dsa_strategy="color_crop_cutout_scale_rotate")
    probe = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    for model in sequential + [wide]:
        model.eval()
    with torch.no_grad():
        expected = torch.stack([m(probe) for m in sequential])
        torch.testing.assert_close(wide.forward_shared(probe), expected, atol=1e-10, rtol=1e-9)


def test_batched_seeds_report_each_seed_as_its_lone_run():
    data = toy_dataset()
    images, labels = data.train_images, data.train_labels
    cpu = torch.device("cpu")
    runs = train_and_test_seeds(
        "ConvNetD2", images, labels, data, PROTOCOL, (0, 1), cpu, None, "crop", batch_seeds=True
    )
    alone = [train_and_test("ConvNetD2", images, labels, data, PROTOCOL, s, cpu, None, "crop") for s in (0, 1)]
    assert [r.seed for r in runs] == [0, 1]
    for batched, lone in zip(runs, alone):
        assert batched.accuracy == pytest.approx(lone.accuracy, abs=0.01)
        assert batched.balanced_accuracy == pytest.approx(lone.balanced_accuracy, abs=0.01)
        assert batched.train_seconds > 0
