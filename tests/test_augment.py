"""DSA: differentiable, siamese under one seed, each op changes the image as it should."""

import pytest
import torch

from ddcore.augment import OPERATIONS, DSAParams, dsa
from ddcore.data import DATASETS
from ddcore.errors import DDError

FULL = "color_crop_cutout_flip_scale_rotate"
ALL_OPS = DSAParams(mode="all")


def _images(n=6, channels=3, size=16, seed=0):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", list(OPERATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_changes_images_and_passes_gradients(op, channels):
    x = _images(channels=channels).requires_grad_(True)
    outputs = [dsa(x, op, seed=s) for s in range(6)]
    assert all(y.shape == x.shape for y in outputs)
    changed = [y for y in outputs if not torch.equal(y, x)]
    assert changed  # flip or crop may draw "no change" for a seed, never for all six
    (changed[0] * torch.randn_like(x)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_is_exact():
    # For a fixed seed the augmentation is a fixed (piecewise) linear map of the pixels.
    x = _images(n=2, channels=3, size=8).double().requires_grad_(True)
    for seed in range(3):
        assert torch.autograd.gradcheck(lambda t, seed=seed: dsa(t, FULL, seed, ALL_OPS), (x,), fast_mode=True)


@pytest.mark.parametrize("params", [DSAParams(), ALL_OPS])
def test_same_seed_same_transformation_for_real_and_synthetic(params):
    real = _images(n=6)
    synthetic = real[:2].clone().requires_grad_(True)  # a smaller batch holding the same pixels
    for seed in range(10):
        augmented_real = dsa(real, FULL, seed, params)
        assert torch.allclose(dsa(synthetic, FULL, seed, params).detach(), augmented_real[:2], atol=1e-6)
        assert torch.equal(dsa(real, FULL, seed, params), augmented_real)  # repeatable
    assert not torch.equal(dsa(real, FULL, 0, ALL_OPS), dsa(real, FULL, 1, ALL_OPS))


def test_siamese_shares_one_transformation_per_batch_and_per_sample_does_not():
    copies = _images(n=1).expand(8, -1, -1, -1)
    shared = dsa(copies, FULL, seed=0, params=ALL_OPS)
    assert torch.allclose(shared, shared[:1].expand_as(shared))
    per_sample = dsa(copies, FULL, seed=0, params=DSAParams(mode="all", per_sample=True))
    assert not torch.allclose(per_sample, per_sample[:1].expand_as(per_sample))


def test_global_rng_is_untouched():
    state = torch.get_rng_state()
    dsa(_images(), FULL, seed=5, params=ALL_OPS)
    assert torch.equal(torch.get_rng_state(), state)


def test_crop_is_a_zero_filled_translation_by_at_most_an_eighth():
    x = _images(n=1, channels=1, size=16)
    reach = 2  # 16 / 8
    for seed in range(10):
        y = dsa(x, "crop", seed)
        padded = torch.nn.functional.pad(x, (reach,) * 4)
        shifts = [
            padded[..., reach + dy : reach + dy + 16, reach + dx : reach + dx + 16]
            for dy in range(-reach, reach + 1)
            for dx in range(-reach, reach + 1)
        ]
        assert any(torch.equal(y, shifted) for shifted in shifts)


def test_cutout_zeroes_one_square_of_half_the_size():
    x = _images(n=1, channels=3, size=16)
    for seed in range(10):
        y = dsa(x, "cutout", seed)
        zeroed = (y == 0).all(dim=1)[0]  # (16, 16); randn pixels are never exactly 0
        rows, cols = zeroed.any(dim=1).nonzero(), zeroed.any(dim=0).nonzero()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        box = zeroed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all() and zeroed.sum() == box.numel()  # one filled rectangle
        assert torch.equal(y[:, :, ~zeroed], x[:, :, ~zeroed])


def test_flip_scale_rotate_limits():
    x = _images(n=4, channels=3, size=16)
    assert torch.equal(dsa(x, "flip", 0, DSAParams(flip_probability=1.0)), x.flip(3))
    assert torch.equal(dsa(x, "flip", 0, DSAParams(flip_probability=0.0)), x)
    assert torch.allclose(dsa(x, "scale", 0, DSAParams(scale=1.0)), x, atol=1e-5)
    assert torch.allclose(dsa(x, "rotate", 0, DSAParams(rotate_degrees=0.0)), x, atol=1e-5)


def test_color_moves_a_uniform_image_by_brightness_only():
    # Saturation and contrast scale deviations from a mean, which a uniform image lacks.
    grey = torch.full((2, 3, 8, 8), 0.25)
    for seed in range(5):
        y = dsa(grey, "color", seed)
        shift = y.flatten()[0] - 0.25
        assert torch.allclose(y, grey + shift) and 0 < shift.abs() <= 0.5


def test_all_mode_applies_every_op_in_turn_single_mode_one():
    x = _images(n=4, channels=1, size=8)
    assert torch.equal(dsa(x, "flip_flip", seed=0, params=DSAParams(mode="all", flip_probability=1.0)), x)  # cancel
    assert torch.equal(dsa(x, "flip_flip", seed=0, params=DSAParams(flip_probability=1.0)), x.flip(3))  # one flip


def test_none_is_identity_and_bad_input_is_rejected():
    x = _images(n=2, channels=1, size=8)
    assert dsa(x, "none", seed=0) is x and dsa(x, "", seed=0) is x
    with pytest.raises(DDError, match="unknown DSA operation.*'blur'.*valid: color, crop, cutout, flip, scale, rotate"):
        dsa(x, "color_blur", seed=0)
    with pytest.raises(DDError, match="unknown DSA mode"):
        DSAParams(mode="multiple")


def test_default_strategy_flips_only_non_digit_data():
    strategy = {name: spec.dsa_strategy for name, spec in DATASETS.items()}
    assert strategy["mnist"] == strategy["digits"] == "color_crop_cutout_scale_rotate"
    assert strategy["fashion_mnist"] == strategy["mhist"] == FULL
