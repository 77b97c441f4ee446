"""A tiny OSNet (omni-scale re-id network, Zhou et al., "Omni-Scale Feature Learning for Person
Re-Identification", ICCV 2019), exported to ONNX the way released re-id models are shipped.

The structure follows the paper at a smaller width: a 7x7 stem, three stages of omni-scale
residual blocks (four streams of 1..4 stacked "lite" 3x3 convolutions, mixed by a unified
aggregation gate shared across streams), 1x1 transitions with average pooling, global pooling
and a 512-d fully connected embedding. Random weights; BatchNorm statistics are calibrated on
real crops so the embedding depends on its input. `torch.onnx.export` needs the `onnx` package.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
from torch import nn

EMBED_DIM = 512
HEIGHT, WIDTH = 256, 128
CHANNELS = (16, 32, 48, 64)  # stem, stage 2, 3, 4 (OSNet x1.0 uses 64, 256, 384, 512)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LiteConv3x3(nn.Sequential):
    """Pointwise 1x1 then depthwise 3x3 (the paper's Lite 3x3), BN, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class AggregationGate(nn.Module):
    """Channel-wise stream weights from the stream's own global context (shared across streams)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, max(channels // reduction, 1), 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(max(channels // reduction, 1), channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class OmniScaleBlock(nn.Module):
    """Bottleneck residual block with T=4 streams of receptive fields 3, 5, 7, 9."""

    def __init__(self, cin: int, cout: int, streams: int = 4) -> None:
        super().__init__()
        mid = max(cout // 4, 4)
        self.reduce = ConvBnRelu(cin, mid, 1)
        self.streams = nn.ModuleList(
            nn.Sequential(*[LiteConv3x3(mid) for _ in range(depth)])
            for depth in range(1, streams + 1)
        )
        self.gate = AggregationGate(mid)
        self.expand = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        mixed = sum(self.gate(stream(reduced)) for stream in self.streams)
        return torch.relu(self.expand(mixed) + self.shortcut(x))


class TinyOsnet(nn.Module):
    """(N, 3, 256, 128) normalised RGB -> (N, 512) embedding (not normalised, as torchreid)."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = CHANNELS
        self.stem = nn.Sequential(ConvBnRelu(3, c1, 7, stride=2), nn.MaxPool2d(3, 2, 1))
        self.stages = nn.Sequential(
            OmniScaleBlock(c1, c2),  # the paper stacks two blocks a stage; one keeps export fast
            ConvBnRelu(c2, c2, 1),
            nn.AvgPool2d(2, 2),  # transition
            OmniScaleBlock(c2, c3),
            ConvBnRelu(c3, c3, 1),
            nn.AvgPool2d(2, 2),  # transition
            OmniScaleBlock(c3, c4),
            ConvBnRelu(c4, c4, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Sequential(
            nn.Linear(c4, EMBED_DIM), nn.BatchNorm1d(EMBED_DIM), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pool(self.stages(self.stem(x))).flatten(1))


def preprocess(crops: list[np.ndarray]) -> torch.Tensor:
    """The documented OSNet input: RGB resized to 256x128 (H x W), ImageNet normalisation."""
    resized = [cv2.resize(crop, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR) for crop in crops]
    array = (np.stack(resized).astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(array.transpose(0, 3, 1, 2).copy())


def calibration_crops() -> list[np.ndarray]:
    astronaut, coffee, chelsea = (
        skimage.data.astronaut(),
        skimage.data.coffee(),
        skimage.data.chelsea(),
    )
    return [astronaut[:, 100:350], astronaut[200:, :200], coffee[:, 200:400], chelsea[:, 100:300]]


def tiny_module() -> TinyOsnet:
    """Seeded random weights, BatchNorm statistics set from real crops, in eval mode."""
    torch.manual_seed(0)
    model = TinyOsnet()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the one calibration batch
    model.train()
    with torch.no_grad():
        model(preprocess(calibration_crops()))
    return model.eval()


def export(model: nn.Module, path: Path, *, dynamic_batch: bool) -> Path:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, HEIGHT, WIDTH),),
        str(path),
        dynamo=False,  # the TorchScript exporter needs only `onnx`, not onnxscript
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}} if dynamic_batch else None,
        opset_version=17,
    )
    return path


def build(directory: Path) -> Path:
    """Write `osnet_tiny.onnx` (dynamic batch), `osnet_tiny_batch1.onnx` (batch fixed at 1,
    as some released exports are) and `osnet_tiny.pt` (the same weights, torch state dict)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = tiny_module()
    torch.save(model.state_dict(), directory / "osnet_tiny.pt")
    export(model, directory / "osnet_tiny.onnx", dynamic_batch=True)
    export(model, directory / "osnet_tiny_batch1.onnx", dynamic_batch=False)
    return directory
