"""ResNet backbone whose convolutions are shared by EO and IR and whose
BatchNorms are kept per modality (CEN-style "parallel BN"), with CEN channel
exchange inside every residual block.

Modalities are passed as a list indexed like `MODALITIES` (0 = EO, 1 = IR);
an absent modality is `None`, so the same module runs fused, IR-only or
EO-only. With `num_modalities=1` it is a plain ResNet (the single-modality
DeepLabV3 baseline), which is how "IR-only costs exactly a baseline" is kept
true by construction.

Weight names follow torchvision's ResNet (`layer1.0.conv1.weight`, ...), with
BatchNorm parameters under `<bn>.bns.<modality>.` so ImageNet weights map 1:1
(see `pretrained.py`).

Reconstruction note: CSK-Net has no public code. Exchange placement follows
the CEN reference (after the middle BN of a bottleneck, i.e. bn2); for basic
blocks we place it after bn1, the analogous BN before the block's last conv.

Exchange direction (our design, not CEN's, issue "Method v2"): by default it
runs one way, INTO EO. CEN exchanges both ways (each modality's low-gamma
channels take the other's), which suits a model that always sees both; this
product runs IR alone whenever EO fails, and there a low-gamma IR channel
takes nothing and outputs its BN shift, a constant: CEN's split switched off
half of the fallback's width. One way, the IR stream is never altered, so the
fused pass's IR stream IS the IR-only pass, and EO (the modality that fails)
is the one that borrows. `direction="both"` keeps CEN's symmetric exchange
for the ablation and for checkpoints trained with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .batchnorm import TwoPassBatchNorm2d

MODALITIES = ("eo", "ir")
EXCHANGE_DIRECTIONS = ("into_eo", "both")  # one way (default) or CEN's symmetric exchange
STAGES = ("layer1", "layer2", "layer3", "layer4")
EO, IR = 0, 1
Features = list  # list[torch.Tensor | None], one entry per modality


def each(fn: Callable[[torch.Tensor], torch.Tensor], xs: Features) -> Features:
    """Apply a shared op to every present modality."""
    return [None if x is None else fn(x) for x in xs]


class ModalBatchNorm2d(nn.Module):
    """One BatchNorm2d per modality behind a single layer name.

    With two modalities the IR BN keeps separate running statistics for the
    fused pass (`TwoPassBatchNorm2d`, see batchnorm.py): its own belong to the
    exchange-free IR-only path."""

    def __init__(self, num_features: int, num_modalities: int):
        super().__init__()
        self.bns = nn.ModuleList(
            TwoPassBatchNorm2d(num_features) if (num_modalities == 2 and m == IR) else nn.BatchNorm2d(num_features)
            for m in range(num_modalities))

    def forward(self, xs: Features) -> Features:
        return [None if x is None else bn(x) for bn, x in zip(self.bns, xs)]


class ChannelExchange(nn.Module):
    """CEN exchange: a channel whose BN scale |gamma| fell below `threshold`
    carries little of its own modality, so it is replaced by the other
    modality's channel at the same index. Runs only when both are present.
    `direction` "into_eo" replaces EO channels only (the IR stream stays the
    IR-only path, see the module docstring); "both" is CEN's symmetric rule.
    `torch.where` on a per-channel mask keeps it a static graph for ONNX."""

    def __init__(self, threshold: float, enabled: bool = True, direction: str = "into_eo"):
        super().__init__()
        if direction not in EXCHANGE_DIRECTIONS:
            raise ValueError(f"exchange direction must be one of {EXCHANGE_DIRECTIONS}, got {direction!r}")
        self.threshold = float(threshold)
        self.enabled = enabled
        self.direction = direction

    def replaced(self, bn: ModalBatchNorm2d, modality: int) -> torch.Tensor:
        """Bool per channel: which of `modality`'s channels exchange replaces (when both are present)."""
        if modality == IR and self.direction == "into_eo":
            return torch.zeros_like(bn.bns[IR].weight, dtype=torch.bool)
        return bn.bns[modality].weight.abs() < self.threshold

    def forward(self, xs: Features, bn: ModalBatchNorm2d) -> Features:
        if not self.enabled or len(xs) != 2 or xs[EO] is None or xs[IR] is None:
            return xs
        eo, ir = xs
        eo = torch.where(self.replaced(bn, EO).view(1, -1, 1, 1), ir, eo)
        if self.direction == "into_eo":
            return [eo, ir]
        return [eo, torch.where(self.replaced(bn, IR).view(1, -1, 1, 1), xs[EO], ir)]


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class Downsample(nn.ModuleList):
    """conv1x1 + BN on the shortcut; a ModuleList so names are `downsample.0/1`."""

    def __init__(self, cin: int, cout: int, stride: int, num_modalities: int):
        super().__init__([conv1x1(cin, cout, stride), ModalBatchNorm2d(cout, num_modalities)])

    def forward(self, xs: Features) -> Features:
        return self[1](each(self[0], xs))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, dilation, downsample, num_modalities, exchange):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, dilation)
        self.bn1 = ModalBatchNorm2d(planes, num_modalities)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = ModalBatchNorm2d(planes, num_modalities)
        self.downsample = downsample
        self.exchange = exchange
        self.relu = nn.ReLU(inplace=True)

    @property
    def exchange_bn(self) -> ModalBatchNorm2d:
        return self.bn1

    def forward(self, xs: Features) -> Features:
        identity = xs if self.downsample is None else self.downsample(xs)
        out = self.exchange(self.bn1(each(self.conv1, xs)), self.bn1)
        out = each(self.relu, out)
        out = self.bn2(each(self.conv2, out))
        return [None if o is None else self.relu(o + i) for o, i in zip(out, identity)]


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, dilation, downsample, num_modalities, exchange):
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = ModalBatchNorm2d(planes, num_modalities)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = ModalBatchNorm2d(planes, num_modalities)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = ModalBatchNorm2d(planes * 4, num_modalities)
        self.downsample = downsample
        self.exchange = exchange
        self.relu = nn.ReLU(inplace=True)

    @property
    def exchange_bn(self) -> ModalBatchNorm2d:
        return self.bn2

    def forward(self, xs: Features) -> Features:
        identity = xs if self.downsample is None else self.downsample(xs)
        out = each(self.relu, self.bn1(each(self.conv1, xs)))
        out = self.exchange(self.bn2(each(self.conv2, out)), self.bn2)
        out = each(self.relu, out)
        out = self.bn3(each(self.conv3, out))
        return [None if o is None else self.relu(o + i) for o, i in zip(out, identity)]


DEPTHS: dict[int, tuple[type, Sequence[int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),  # CPU tests and the synthetic demo
    18: (BasicBlock, (2, 2, 2, 2)),  # edge
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),  # paper fidelity
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ModalResNet(nn.Module):
    """ResNet trunk (no fc) over a list of modalities.

    `output_stride` 8 or 16 replaces the last strides by dilation, as DeepLabV3
    does (4 keeps thin objects visible on tiny synthetic frames). `width` scales
    every stage (64 = torchvision); small widths make
    CPU tests fast. `in_channels` is 3 (IR is replicated to 3 channels by the
    model so the shared first conv serves both) or 4 for early fusion.
    """

    def __init__(
        self,
        depth: int = 50,
        width: int = 64,
        output_stride: int = 8,
        num_modalities: int = 2,
        in_channels: int = 3,
        exchange: bool = True,
        exchange_threshold: float = 2e-2,
        exchange_direction: str = "into_eo",
    ):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"backbone depth must be one of {sorted(DEPTHS)}, got {depth}")
        if output_stride not in (4, 8, 16, 32):
            raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}")
        block, layers = DEPTHS[depth]
        self.depth, self.width, self.num_modalities = depth, width, num_modalities
        dilate = {4: (True, True, True), 8: (False, True, True), 16: (False, False, True),
                  32: (False, False, False)}[output_stride]
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = ModalBatchNorm2d(width, num_modalities)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin, self._dilation = width, 1
        self._exchange = (exchange and num_modalities == 2, exchange_threshold, exchange_direction)
        self.layer1 = self._make_layer(block, width, layers[0], 1, False)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2, dilate[2])
        self.out_channels = width * 8 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride, dilate) -> nn.Sequential:
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = Downsample(self._cin, planes * block.expansion, stride, self.num_modalities)
        enabled, threshold, direction = self._exchange
        layers = [
            block(self._cin, planes, stride, previous_dilation, downsample, self.num_modalities,
                  ChannelExchange(threshold, enabled, direction))
        ]
        self._cin = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self._cin, planes, 1, self._dilation, None, self.num_modalities,
                                ChannelExchange(threshold, enabled, direction)))
        return nn.Sequential(*layers)

    @property
    def ir_stream_exchanged(self) -> bool:
        """Whether the fused pass alters the IR stream (CEN's symmetric exchange); when
        not, the fused pass's IR stream computes exactly what the IR-only pass does."""
        enabled, _, direction = self._exchange
        return enabled and direction == "both"

    def exchange_bns(self) -> list[ModalBatchNorm2d]:
        """The BNs whose gammas drive exchange (and carry the L1 sparsity term)."""
        return [blk.exchange_bn for stage in STAGES for blk in getattr(self, stage)]

    @torch.no_grad()
    def exchanged_fraction(self) -> dict[str, dict[str, float]]:
        """{modality: {stage: fraction, "all": fraction}}: the share of each
        modality's exchange-BN channels that exchange replaces by the other
        modality's whenever both are present (|gamma| below the threshold; never
        an IR channel when exchange runs into EO only). Zeros when nothing fires."""
        out = {}
        for m, name in enumerate(MODALITIES[: self.num_modalities]):
            below = {stage: torch.cat([blk.exchange.replaced(blk.exchange_bn, m).float()
                                       for blk in getattr(self, stage)]) for stage in STAGES}
            out[name] = {stage: float(b.mean()) for stage, b in below.items()}
            out[name]["all"] = float(torch.cat(list(below.values())).mean())
        return out

    def forward(self, xs: Features) -> Features:
        xs = each(self.maxpool, each(self.relu, self.bn1(each(self.conv1, xs))))
        for stage in STAGES:
            for blk in getattr(self, stage):
                xs = blk(xs)
        return xs
