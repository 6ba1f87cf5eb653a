"""The common shape of every network: a stack of blocks, then a linear classifier."""

from __future__ import annotations

import torch
from torch import nn


class FeatureNet(nn.Module):
    """`blocks` run in order, each followed by its entry in `pools` (identity when not given);
    `classifier` maps the flattened final output to logits.

    Feature-matching methods read `features(x)`: every block's output before its pooling (the
    activation maps DataDAM takes its spatial attention from, as its official code hooks the ReLU
    outputs) and the embedding, the flattened final output that the classifier sees.
    """

    def __init__(self, blocks: nn.ModuleList, classifier: nn.Module, pools: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.blocks = blocks
        self.pools = pools if pools is not None else nn.ModuleList(nn.Identity() for _ in blocks)
        self.classifier = classifier

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps = []
        for block, pool in zip(self.blocks, self.pools):
            x = block(x)
            maps.append(x)
            x = pool(x)
        return maps, x.flatten(1)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
