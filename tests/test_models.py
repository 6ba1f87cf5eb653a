"""Every registry network: 1 and 3 channels, sizes 8 to 128, shapes, backward, feature maps."""
import pytest
import torch

from ddcore.errors import DDError
from ddcore.models import get_model, list_models, parameter_count

MAIN_MODELS = ["MLP", "ConvNetD3", "ConvNetD3BN", "ConvNetD3NN", "ConvNetD7", "LeNet", "AlexNet", "VGG11", "VGG11BN", "ResNet18", "ResNet18BN"]


@pytest.mark.parametrize("name", MAIN_MODELS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32, 128])
def test_shapes_and_backward(name, channels, size):
    torch.manual_seed(0)
    net = get_model(name, channels, 10, size)
    x = torch.randn(2, channels, size, size)
    logits = net(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    maps, embedding = net.features(x)
    assert len(maps) == len(net.blocks)
    assert embedding.shape == (2, net.classifier.in_features if hasattr(net.classifier, "in_features") else embedding.shape[1])
    assert torch.allclose(net.classifier(embedding), logits, atol=1e-5)


def test_every_registered_name_builds():
    for name in list_models():
        assert get_model(name, 1, 10, 28)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_deep_instance_norm_keeps_signal_on_tiny_images():
    # Instance norm of a 1x1 map is identically 0; the registry leaves it out at that size.
    net = get_model("ConvNetD7", 1, 10, 8).eval()
    out = net(torch.randn(4, 1, 8, 8))
    assert out.std(dim=0).abs().sum() > 0


def test_convnet_d3_parameter_count():
    # conv 1->128: 128*9 + 128 = 1280; norm affine 2*128 = 256
    # conv 128->128 (twice): 128*128*9 + 128 = 147584 each; norms 256 each
    # 28 -> 14 -> 7 -> 3 after three poolings: linear 128*3*3 -> 10 = 11520 + 10
    expected = 1280 + 256 + 2 * (147584 + 256) + 11530
    assert parameter_count(get_model("ConvNetD3", 1, 10, 28)) == expected


def test_convnet_d7_reduces_128px_to_1x1():
    net = get_model("ConvNetD7", 3, 2, 128)
    assert net.classifier.in_features == 128


def test_unknown_model_lists_names():
    with pytest.raises(DDError, match="unknown model 'Nope'; known models: .*ConvNetD3"):
        get_model("Nope", 1, 10, 28)
