"""DC's evaluation augmentation: crop and scale give the very pixels of DC's per-image procedure."""

import pytest
import torch
import torch.nn.functional as F

from ddcore.dc_augment import DCAugParams, dc_augment, rotate
from ddcore.errors import DDError

SIZE = 28


def _images(n=8, channels=1, seed=0):
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _their_crop(image, fill, r, c, crop=4):
    """DC's cropfun for one image: pad with the channel means, cut the window at (r, c)."""
    padded = fill.view(-1, 1, 1).expand(-1, SIZE + 2 * crop, SIZE + 2 * crop).clone()
    padded[:, crop : crop + SIZE, crop : crop + SIZE] = image
    return padded[:, r : r + SIZE, c : c + SIZE]


def _their_scale(image, h, w):
    """DC's scalefun for one image resized to h x w: nearest resize, paste centred on zeros, centre crop."""
    resized = F.interpolate(image[None], [h, w])[0]
    side = max(h, w, SIZE)
    canvas = torch.zeros(image.shape[0], side, side)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, top : top + h, left : left + w] = resized
    top = left = (side - SIZE) // 2
    return canvas[:, top : top + SIZE, left : left + SIZE]


def _some_crop(image, augmented, fill):
    """Whether `augmented` is DC's crop of `image` for one of the 8 x 8 windows."""
    return any(torch.equal(augmented, _their_crop(image, fill, r, c)) for r in range(8) for c in range(8))


def _some_scale(image, augmented):
    """Whether `augmented` is DC's scale of `image` for one of the sizes int(u * 28), u in [0.8, 1.2):
    22..33 per axis, both drawn from the height as theirs."""
    return any(torch.equal(augmented, _their_scale(image, h, w)) for h in range(22, 34) for w in range(22, 34))


@pytest.mark.parametrize("channels", [1, 3])
def test_crop_is_their_crop_for_some_window(channels):
    x = _images(channels=channels)
    fill = x.mean(dim=(0, 2, 3))
    out = dc_augment(x, seed=3, params=DCAugParams(strategy="crop"))
    assert all(_some_crop(image, augmented, fill) for image, augmented in zip(x, out))


def test_scale_is_their_scale_for_some_size():
    x = _images(n=16)
    out = dc_augment(x, seed=5, params=DCAugParams(strategy="scale"))
    assert all(_some_scale(image, augmented) for image, augmented in zip(x, out))


def test_rotation_turns_about_the_centre():
    x = _images(n=2)
    turned = rotate(x, torch.tensor([90, -90]), fill=0.0)
    assert torch.allclose(turned[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-5) or torch.allclose(
        turned[0], torch.rot90(x[0], -1, (1, 2)), atol=1e-5
    )
    assert torch.allclose(rotate(turned, torch.tensor([-90, 90]), fill=0.0), x, atol=1e-5)
    flat = torch.full((4, 1, SIZE, SIZE), 0.3)  # the fill is the mean: a flat image stays flat
    assert torch.allclose(dc_augment(flat, seed=0, params=DCAugParams(strategy="rotate")), flat, atol=1e-6)


def test_each_image_gets_one_of_the_three_operations_and_seeds_repeat():
    x = _images(n=32)
    out = dc_augment(x, seed=7)
    assert torch.equal(out, dc_augment(x, seed=7)) and not torch.equal(out, dc_augment(x, seed=8))
    fill = x.mean(dim=(0, 2, 3))
    cropped = [_some_crop(image, augmented, fill) for image, augmented in zip(x, out)]
    scaled = [_some_scale(image, augmented) for image, augmented in zip(x, out)]
    rotated = [not (c or s) for c, s in zip(cropped, scaled)]
    assert sum(cropped) and sum(scaled) and sum(rotated)  # each about a third of 32 images
    state = torch.get_rng_state()
    dc_augment(x, seed=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_operation_is_a_one_line_error():
    with pytest.raises(DDError, match="unknown DC augmentation 'flip'"):
        dc_augment(_images(), seed=0, params=DCAugParams(strategy="crop_flip"))
