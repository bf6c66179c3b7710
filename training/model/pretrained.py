"""ImageNet weights for the modal backbone from torchvision's ResNet.

Convolutions keep torchvision's names; each BatchNorm `x.bnK.*` is copied into
every modality's `x.bnK.bns.<m>.*`. Works from a local state-dict file (no
torchvision needed) or, where torchvision is installed, from its weights API.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .resnet import ModalResNet

_TORCHVISION_WEIGHTS = {
    18: "ResNet18_Weights", 34: "ResNet34_Weights", 50: "ResNet50_Weights", 101: "ResNet101_Weights"
}
_BN_KEY = re.compile(
    r"^(?P<prefix>.*(?:bn\d|downsample\.1))\."
    r"(?P<field>weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def torchvision_state_dict(depth: int) -> dict:
    try:
        import torchvision.models as tvm
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "model.pretrained='torchvision' needs torchvision installed; otherwise set "
            "model.pretrained to a local torchvision ResNet .pth state-dict file"
        ) from exc
    if depth not in _TORCHVISION_WEIGHTS:
        raise ValueError(f"no torchvision ImageNet weights for ResNet-{depth}")
    return getattr(tvm, _TORCHVISION_WEIGHTS[depth]).IMAGENET1K_V1.get_state_dict(progress=True)


def map_torchvision_keys(state: dict, num_modalities: int) -> dict:
    """torchvision ResNet keys -> ModalResNet keys (fc.* dropped)."""
    mapped = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        match = _BN_KEY.match(key)
        if match:
            for m in range(num_modalities):
                mapped[f"{match['prefix']}.bns.{m}.{match['field']}"] = value.clone()
                if match["field"] in ("running_mean", "running_var"):  # the IR BN's fused-pass statistics
                    mapped[f"{match['prefix']}.bns.{m}.fused_{match['field']}"] = value.clone()
        else:
            mapped[key] = value
    return mapped


def load_imagenet_backbone(backbone: ModalResNet, source: str) -> None:
    """Load ImageNet weights; every backbone tensor must be covered.

    A 4-channel first conv (early fusion) gets the RGB kernels plus their mean
    as the IR kernel.
    """
    if source == "torchvision":
        state = torchvision_state_dict(backbone.depth)
    else:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    mapped = map_torchvision_keys(state, backbone.num_modalities)
    own = backbone.state_dict()
    conv1 = mapped.get("conv1.weight")
    if conv1 is not None and own["conv1.weight"].shape[1] == 4 and conv1.shape[1] == 3:
        mapped["conv1.weight"] = torch.cat([conv1, conv1.mean(dim=1, keepdim=True)], dim=1)
    missing = sorted(set(own) - set(mapped))
    wrong = sorted(k for k in own if k in mapped and mapped[k].shape != own[k].shape)
    if missing or wrong:
        raise ValueError(
            f"pretrained weights do not fit ResNet-{backbone.depth} width {backbone.width}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, wrong shape {wrong[:5]} "
            "(ImageNet weights need width 64 and depth 18/34/50/101)"
        )
    backbone.load_state_dict({k: mapped[k] for k in own}, strict=True)
