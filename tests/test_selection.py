"""Choices on held-out validation data (issue 36): the split, what learns from it (nothing), what reads it."""

import pytest
import torch

from ddcore.baseline import full_data_baseline
from ddcore.data import load_dataset
from ddcore.data.base import RealDataset, stratified_sample
from ddcore.errors import DDError
from ddcore.evaluate import evaluate, get_protocol


def rows(images: torch.Tensor) -> set[bytes]:
    """The images as byte strings: digits holds no two equal images across its split (checked below)."""
    return {image.numpy().tobytes() for image in images}


@pytest.fixture(scope="module")
def digits() -> RealDataset:
    return load_dataset("digits").with_validation()


def test_split_is_stratified_fixed_and_disjoint(digits):
    whole = load_dataset("digits")
    assert len(digits.val_labels) == 252 and len(digits.train_labels) == 1258 - 252
    assert digits.val_labels.bincount().tolist() == [25, 26, 25, 26, 26, 25, 25, 25, 24, 25]
    assert load_dataset("digits").with_validation().val_digest == digits.val_digest  # drawn once, the same
    assert len(rows(digits.val_images)) == 252
    assert not rows(digits.val_images) & rows(digits.train_images)
    assert not rows(digits.val_images) & rows(whole.test_images)
    assert torch.equal(digits.test_images, whole.test_images)
    assert digits.training_part.startswith("digits-without-val252-")
    assert digits.with_validation() is digits


def test_stratified_sample_takes_exactly_the_size():
    labels = torch.tensor([0] * 7 + [1] * 2 + [2])
    picked = stratified_sample(labels, 5, seed=0)
    assert len(picked) == 5 and labels[picked].bincount().tolist() == [4, 1]
    with pytest.raises(DDError, match="does not fit"):
        stratified_sample(labels, 10, seed=0)


def test_evaluate_reports_validation_beside_test(digits):
    protocol = get_protocol("full", epochs=1)
    picked = digits.sample_per_class(2).flatten()
    result = evaluate("MLP", digits.train_images[picked], digits.train_labels[picked], digits, protocol, (0, 1), "cpu")
    assert all(0 <= run.val_accuracy <= 1 for run in result.runs)
    assert result.val_accuracy_mean is not None and result.val_accuracy_mean != result.accuracy_mean
    whole = evaluate(
        "MLP", torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), load_dataset("digits"), protocol, (0,), "cpu"
    )
    assert whole.val_accuracy_mean is None and whole.runs[0].val_accuracy is None


def test_baseline_learns_only_the_training_part(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("DDORCH_CACHE_DIR", str(tmp_path))
    import ddcore.baseline

    seen = []
    real = ddcore.baseline.train_and_test
    monkeypatch.setattr(
        ddcore.baseline, "train_and_test", lambda m, images, *a, **k: seen.append(images) or real(m, images, *a, **k)
    )
    result, _ = full_data_baseline(digits, "MLP", protocol=get_protocol("full", epochs=1), device="cpu")
    assert len(seen[0]) == 1006 and not rows(seen[0]) & rows(digits.val_images)
    assert result.runs[0].val_accuracy is not None
    assert digits.training_part in str(next(tmp_path.rglob("*.json")))  # cached apart from the whole-set baseline
