"""Every registry network on 1 and 3 channels at 8 to 128 px: shapes, backward, feature maps."""

import pytest
import torch

from ddcore.errors import DDError
from ddcore.models import get_model, list_models, parameter_count, reinitialize

# Narrow ConvNets (ConvNetD{n}W{w}...) share the code path of their width-128 names: two stand in for all 42.
ARCHITECTURES = [name for name in list_models() if "W" not in name] + ["ConvNetD3W32", "ConvNetD1W64BN"]


@pytest.mark.parametrize("size", [8, 28, 32, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_shapes_backward_and_feature_maps(name, channels, size):
    torch.manual_seed(0)
    net = get_model(name, channels, 10, size)
    x = torch.randn(2, channels, size, size)
    logits = net(x)
    assert logits.shape == (2, 10)

    logits.square().sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0

    maps, embedding = net.features(x)
    assert len(maps) == len(net.feature_maps(x)) == len(net.blocks)
    assert embedding.shape == (2, net.classifier.in_features)
    # the embedding is the last block's map after its pooling, flattened: what the classifier sees
    assert torch.equal(net.pools[-1](maps[-1]).flatten(1), embedding)
    assert torch.equal(net.embed(x), embedding)
    assert torch.allclose(net.classifier(embedding), logits, atol=1e-5)


def test_every_paper_name_is_registered():
    depths = [
        f"ConvNetD{d}{width}{suffix}"
        for d in range(1, 8)
        for width in ("", "W32", "W64")
        for suffix in ("", "BN", "NN")
    ]
    expected = {"ConvNet", *depths, "MLP", "LeNet", "AlexNet", "VGG11", "VGG11BN", "ResNet18", "ResNet18BN"}
    assert set(list_models()) == expected


def test_construction_is_deterministic_under_manual_seed():
    torch.manual_seed(3)
    a = get_model("ConvNetD3", 1, 10, 28).state_dict()
    torch.manual_seed(3)
    b = get_model("ConvNetD3", 1, 10, 28).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_convnet_d3_parameter_count_on_mnist():
    conv_in = 1 * 128 * 3 * 3 + 128  # 1,280: first conv, 1 -> 128 channels, with bias
    conv = 128 * 128 * 3 * 3 + 128  # 147,584: each of the two 128 -> 128 convs
    norm = 2 * 128  # 256: instance norm (GroupNorm) weight and bias, after each conv
    linear = 128 * 4 * 4 * 10 + 10  # 20,490: DC's maps, 32 -> 16 -> 8 -> 4 after three poolings
    expected = conv_in + 2 * conv + 3 * norm + linear
    assert expected == 317_706
    assert parameter_count(get_model("ConvNetD3", 1, 10, 28)) == expected
    assert parameter_count(get_model("ConvNet", 1, 10, 28)) == expected


def test_mlp_and_lenet_parameter_counts_match_dc_on_mnist():
    mlp = (784 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    assert parameter_count(get_model("MLP", 1, 10, 28)) == mlp == 118_282
    # DC's LeNet on 28 px MNIST: 28 -> pool 14 -> conv5x5 10 -> pool 5, so 16*5*5 into the MLP head
    lenet = (6 * 25 + 6) + (6 * 16 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert parameter_count(get_model("LeNet", 1, 10, 28)) == lenet == 61_706


def test_convnet_maps_are_relu_outputs_before_pooling():
    # DataDAM hooks the ReLU of every ConvNet block: non-negative maps at 32, 16, 8 px on MNIST
    # (DC pads the first convolution of 1-channel 28 px input by 3).
    maps = get_model("ConvNetD3", 1, 10, 28).feature_maps(torch.randn(2, 1, 28, 28))
    assert [m.shape[1:] for m in maps] == [(128, 32, 32), (128, 16, 16), (128, 8, 8)]
    assert all(m.min() >= 0 for m in maps)


@pytest.mark.parametrize("suffix", ["", "BN", "NN", "W32", "W64BN"])
def test_convnets_on_mnist_are_dcs_network(suffix):
    # DC's networks.py: 28 px, 1 channel -> padding 3 -> maps 32, 16, 8, 4; embedding 128*4*4 = 2048.
    net = get_model(f"ConvNetD4{suffix}", 1, 10, 28)
    width = 32 if "W32" in suffix else 64 if "W64" in suffix else 128
    maps, embedding = net.features(torch.randn(2, 1, 28, 28))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]
    d3 = get_model(f"ConvNetD3{suffix}", 1, 10, 28)
    assert d3.embed(torch.randn(2, 1, 28, 28)).shape == (2, width * 4 * 4)
    assert net.blocks[0][0].padding == (3, 3) and net.blocks[1][0].padding == (1, 1)


@pytest.mark.parametrize("channels, size", [(3, 28), (1, 32), (1, 8), (3, 32)])
def test_other_sizes_keep_padding_one(channels, size):
    net = get_model("ConvNetD3", channels, 10, size)
    assert all(block[0].padding == (1, 1) for block in net.blocks)
    assert net.feature_maps(torch.randn(1, channels, size, size))[0].shape[-1] == size


def test_convnet_d7_reduces_128px_to_1x1():
    net = get_model("ConvNetD7", 3, 2, 128)
    assert net.feature_maps(torch.randn(2, 3, 128, 128))[-1].shape == (2, 128, 2, 2)
    assert net.classifier.in_features == 128  # pooled to 1x1


def test_deep_instance_norm_keeps_signal_on_tiny_images():
    # Instance norm of a 1x1 map is identically 0, so it is left out there: D7 on 8 px still
    # gives different outputs for different inputs.
    torch.manual_seed(0)
    out = get_model("ConvNetD7", 1, 10, 8)(torch.randn(4, 1, 8, 8))
    assert (out - out[0]).abs().amax() > 1e-6  # with the norm: exactly 0


def test_unknown_model_lists_names():
    with pytest.raises(DDError, match="unknown model 'Nope'; known models: .*ConvNetD3"):
        get_model("Nope", 1, 10, 28)


@pytest.mark.parametrize("name", ["ConvNetD3", "ConvNetD3BN", "ConvNetD2W32NN", "LeNet", "MLP", "AlexNet", "VGG11BN"])
def test_reinitialize_draws_what_a_newly_built_network_holds(name):
    """In place, seeded alike: the same weights (and fresh batch-norm statistics) as a new network."""
    torch.manual_seed(5)
    built = get_model(name, 1, 10, 28)
    used = get_model(name, 1, 10, 28)
    used(torch.randn(4, 1, 28, 28))  # training-mode forward: batch-norm statistics move
    torch.manual_seed(5)
    reinitialize(used)
    for (key, expected), actual in zip(built.state_dict().items(), used.state_dict().values()):
        assert torch.equal(expected, actual), key


def test_reinitialize_changes_every_parameter_of_a_residual_network():
    net = get_model("ResNet18", 1, 10, 28)
    before = [p.detach().clone() for p in net.parameters() if p.dim() > 1]
    reinitialize(net)
    after = [p for p in net.parameters() if p.dim() > 1]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
