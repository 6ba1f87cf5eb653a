"""DSA: differentiable, siamese under one seed, each op changes the image."""
import pytest
import torch

from ddcore.augment import OPERATIONS, DSAParams, default_dsa_strategy, dsa
from ddcore.errors import DDError


@pytest.mark.parametrize("op", list(OPERATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_is_differentiable_and_changes_images(op, channels):
    torch.manual_seed(0)
    x = torch.randn(8, channels, 16, 16, requires_grad=True)
    y = dsa(x, op, seed=1)
    assert y.shape == x.shape and not torch.equal(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_seed_same_transformation_for_real_and_synthetic():
    torch.manual_seed(0)
    real = torch.randn(6, 3, 16, 16)
    synthetic = real.clone().requires_grad_(True)  # the same pixels on the synthetic side
    strategy = "color_crop_cutout_flip_scale_rotate"
    for seed in range(10):
        assert torch.equal(dsa(real, strategy, seed), dsa(synthetic, strategy, seed).detach())
    assert not torch.equal(dsa(real, strategy, 0), dsa(real, strategy, 1))


def test_all_mode_applies_every_op_in_turn():
    x = torch.randn(4, 1, 8, 8)
    always = DSAParams(mode="all", flip_probability=1.0)
    assert torch.equal(dsa(x, "flip_flip", seed=0, params=always), x)  # two flips cancel
    assert torch.equal(dsa(x, "flip_flip", seed=0, params=DSAParams(flip_probability=1.0)), x.flip(3))  # single: one


def test_flip_probability_one_flips_everything():
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(dsa(x, "flip", seed=0, params=DSAParams(flip_probability=1.0)), x.flip(3))


def test_none_is_identity_and_unknown_op_rejected():
    x = torch.randn(2, 1, 8, 8)
    assert dsa(x, "none", seed=0) is x and dsa(x, "", seed=0) is x
    with pytest.raises(DDError, match="unknown DSA operation"):
        dsa(x, "color_blur", seed=0)


def test_digit_data_sets_are_not_flipped():
    assert "flip" not in default_dsa_strategy("mnist") and "flip" not in default_dsa_strategy("digits")
    assert "flip" in default_dsa_strategy("mhist")
