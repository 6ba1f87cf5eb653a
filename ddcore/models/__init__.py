"""The networks of the field, created by name from one registry (in the manner of timm).

`get_model("ConvNetD3", channels=1, num_classes=10, image_size=28)`. Every model is a
`FeatureNet`: its `feature_maps(x)` exposes each block's output (attention matching needs them).
"""

# Each network module registers its names on import (the registry itself imports none of them).
from ddcore.models import alexnet, convnet, lenet, mlp, resnet, vgg  # noqa: E402, F401
from ddcore.models.base import FeatureNet
from ddcore.models.registry import (
    architecture_fingerprint,
    get_model,
    list_models,
    parameter_count,
    register_model,
    reinitialize,
)

__all__ = [
    "FeatureNet",
    "architecture_fingerprint",
    "get_model",
    "list_models",
    "parameter_count",
    "register_model",
    "reinitialize",
]
