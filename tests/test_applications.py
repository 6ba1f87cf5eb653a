"""Applications: continual-learning bookkeeping, herding, seen-class accuracy; our Spearman vs scipy; NAS proxy."""

import math
import random

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from ddcore.analyses.continual import (
    ContinualConfig,
    class_incremental_tasks,
    continual_learning,
    herding_selection,
    seen_class_accuracy,
)
from ddcore.analyses.nas_proxy import NasProxyConfig, average_ranks, nas_proxy, spearman
from ddcore.data import load_dataset
from ddcore.errors import DDError
from ddcore.models import get_model
from ddcore.synthetic import SyntheticSet


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def synthetic(digits):
    picked = digits.sample_per_class(2, torch.Generator().manual_seed(3)).flatten()
    return SyntheticSet(
        digits.train_images[picked],
        digits.train_labels[picked],
        "digits",
        "datadam",
        digits.class_names,
        digits.mean,
        digits.std,
        config={"model": "ConvNetD1", "dsa_strategy": "none"},
    )


def test_tasks_split_classes_in_order():
    assert class_incremental_tasks(10, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert class_incremental_tasks(5, 2) == [[0, 1], [2, 3], [4]]
    for bad in (0, 11):
        with pytest.raises(DDError, match="classes per task must be between 1 and 10"):
            class_incremental_tasks(10, bad)


def test_continual_bookkeeping_on_a_toy_problem(digits, synthetic):
    config = ContinualConfig(classes_per_task=3, model="MLP", seeds=2, epochs=1, herding_epochs=1, device="cpu")
    result = continual_learning(synthetic, digits, config)
    expected_seen = [[0, 1, 2], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8], list(range(10))]
    assert [step.seen_classes for step in result.steps] == expected_seen
    assert [step.new_classes for step in result.steps] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    for step, seen in zip(result.steps, expected_seen):
        assert step.test_images == sum(digits.class_counts("test")[c] for c in seen)
        for memory in ("distilled", "random", "herding"):
            assert step.memory_classes[memory] == seen  # exactly the seen classes, nothing from later tasks
            assert step.memory_sizes[memory] == 2 * len(seen)  # equal size: the synthetic set's 2 per class
            assert len(step.accuracies[memory]) == 2 and all(0 <= a <= 1 for a in step.accuracies[memory])
    assert [n for n, _ in result.curve("herding")] == [3, 6, 9, 10]
    assert set(result.metrics()) == {
        f"cl_{m}_{n}cls" for m in ("distilled", "random", "herding") for n in (3, 6, 9, 10)
    }
    with pytest.raises(DDError, match="unknown or no memory type"):
        continual_learning(synthetic, digits, ContinualConfig(memories=("coreset",), device="cpu"))


def test_herding_follows_the_class_mean():
    # normalised rows a=(1,0), b=(0,1), c=(.707,.707), d=(.981,.196); class mean (.672,.476).
    # By hand: c is nearest the mean; then (c+d)/2 beats (c+a)/2; then (c+d+b)/3 pulls the mean back up; then a.
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [1.0, 0.2]])
    assert herding_selection(embeddings, 4).tolist() == [2, 3, 1, 0]
    assert herding_selection(embeddings, 2).tolist() == [2, 3]
    with pytest.raises(DDError, match="herding needs 1 to 4 exemplars"):
        herding_selection(embeddings, 5)


class FixedLogits(nn.Module):
    """Always prefers class 2, then class 1."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 2], logits[:, 1] = 5.0, 1.0
        return logits


def test_seen_class_accuracy_predicts_among_seen_classes_only(digits):
    labels = digits.test_labels[torch.isin(digits.test_labels, torch.tensor([0, 1]))]
    accuracy = seen_class_accuracy(FixedLogits(), digits, [0, 1], torch.device("cpu"))
    assert accuracy == pytest.approx((labels == 1).float().mean().item())  # class 2 is masked out


@pytest.mark.parametrize(
    "x, y",
    [
        ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
        ([1, 2, 2, 3, 4], [1, 3, 2, 2, 5]),  # ties on both sides
        ([0.9, 0.8, 0.8, 0.8, 0.1, 0.2], [0.5, 0.4, 0.6, 0.4, 0.1, 0.1]),
        ([3, 1, 2], [1, 2, 3]),
        ([1, 2, 3, 4], [4, 3, 2, 1]),  # reversed: -1
    ],
)
def test_spearman_matches_scipy_on_planted_rankings(x, y):
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # scipy warns where both give NaN
def test_spearman_matches_scipy_on_random_tied_values():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 12)
        x, y = [rng.randint(0, 4) for _ in range(n)], [rng.randint(0, 4) for _ in range(n)]
        ours, theirs = spearman(x, y), spearmanr(x, y).statistic
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs, abs=1e-12)
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    with pytest.raises(DDError, match="rank correlation needs"):
        spearman([1], [1])


def test_nas_proxy_pool_on_digits(digits, synthetic, tmp_path):
    config = NasProxyConfig(
        pool=("MLP", "ConvNetD1W32", "ConvNetD1NN"), proxy_epochs=1, full_epochs=1, full_per_class=5, device="cpu"
    )
    result = nas_proxy(synthetic, digits, config)
    assert set(result.proxy) == set(result.full) == set(config.pool)
    assert result.full_images == 50 and result.full_protocol == "full-bs32-1ep"
    assert -1 <= result.spearman <= 1 or math.isnan(result.spearman)
    assert result.proxy_seconds > 0 and result.full_seconds > 0
    notes = " ".join(result.table().notes)
    assert "Spearman rank correlation" in notes and "50 real training images" in notes
    assert result.save_plots(tmp_path)[0].stat().st_size > 0
    with pytest.raises(DDError, match="at least two distinct networks"):
        nas_proxy(synthetic, digits, NasProxyConfig(pool=("MLP",), device="cpu"))


def test_width_variants_are_registered_with_their_width():
    net = get_model("ConvNetD3W32BN", 1, 10, 28)
    assert [block[0].out_channels for block in net.blocks] == [32, 32, 32]
    assert isinstance(net.blocks[0][1], nn.BatchNorm2d) and net.classifier.in_features == 32 * 4 * 4
