"""The three built-in architectures, wrapped so the exported model takes raw features.

The `Classifier` wrapper carries the training set's feature mean and std as buffers: whoever serves
the artifact sends the same raw rows the dataset holds and needs no separate preprocessing recipe.
All three bodies are TorchScript-compatible, which is how the default artifact is exported (no
`from __future__ import annotations` here: TorchScript cannot resolve string annotations of attributes).
"""

import math

import torch
from torch import nn

from modelops.api.trainingjob import ModelSpec


class MLP(nn.Module):
    """Tabular data: Linear -> ReLU -> Dropout, `layers` times, then a linear head."""

    def __init__(self, n_features: int, n_classes: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """Image-like data: 2-D convolutions over an (h, w) image, or 1-D over the feature vector.

    Digits (8x8) and npz files with 3-D X are images; any other table is treated as a 1-D signal, which
    is what makes a CNN usable (if not always wise) on plain tabular data.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int,
        layers: int,
        dropout: float,
        image_shape: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.two_d = image_shape is not None
        self.h, self.w = image_shape if image_shape is not None else (1, n_features)
        conv = nn.Conv2d if self.two_d else nn.Conv1d
        channels = max(8, hidden // 4)
        blocks: list[nn.Module] = []
        c_in = 1
        for _ in range(layers):
            blocks += [conv(c_in, channels, kernel_size=3, padding=1), nn.ReLU()]
            c_in = channels
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((2, 2)) if self.two_d else nn.AdaptiveAvgPool1d(4)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.h, self.w) if self.two_d else x.reshape(x.shape[0], 1, self.w)
        out: torch.Tensor = self.head(self.pool(self.features(x)))
        return out


class TabTransformer(nn.Module):
    """Each feature is a token (its value times a learned vector plus a feature embedding); a CLS token
    summarises them through a pre-norm transformer encoder. Small here; it is the large-model path."""

    def __init__(
        self, n_features: int, n_classes: int, hidden: int, layers: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(n_features, hidden) / math.sqrt(hidden))
        self.position = nn.Parameter(torch.zeros(n_features, hidden))
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=hidden * 2, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.value + self.position
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        out: torch.Tensor = self.head(self.norm(self.encoder(tokens)[:, 0]))
        return out


class Classifier(nn.Module):
    """Normalises raw features with the training set's statistics, then runs the body; returns logits."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, body: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body((x - self.mean) / self.std)
        return out


def build(
    spec: ModelSpec,
    n_features: int,
    n_classes: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    image_shape: tuple[int, int] | None = None,
) -> Classifier:
    """The architecture the spec names, sized for the data."""
    body: nn.Module
    if spec.architecture == "mlp":
        body = MLP(n_features, n_classes, spec.hidden_size, spec.layers, spec.dropout)
    elif spec.architecture == "cnn":
        body = CNN(n_features, n_classes, spec.hidden_size, spec.layers, spec.dropout, image_shape)
    else:
        body = TabTransformer(n_features, n_classes, spec.hidden_size, spec.layers, spec.heads, spec.dropout)
    return Classifier(body, mean, std)
