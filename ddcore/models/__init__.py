"""The networks of the field, created by name from one registry (in the manner of timm).

`get_model("ConvNetD3", channels=1, num_classes=10, image_size=28)`. Every model is a
`FeatureNet`: its `feature_maps(x)` exposes each block's output (attention matching needs them).
"""
from ddcore.models.registry import architecture_fingerprint, get_model, list_models, parameter_count, register_model
from ddcore.models.base import FeatureNet

__all__ = ["FeatureNet", "architecture_fingerprint", "get_model", "list_models", "parameter_count", "register_model"]
