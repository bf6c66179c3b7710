"""CSK-Net (arXiv 2312.02240) and the baselines built from the same parts.

Reconstruction note: the paper's code is not public. What follows is built
from its description and from CEN (Wang et al., NeurIPS 2020): shared convs
with per-modality BN and channel exchange in the encoder, one ASPP stream per
modality (F_eo, F_ir), a Gated Spectral Unit fusing them, and three heads.
The exact GSU wiring, exchange placement and fused-head depth are our
reading of the text, each switchable from the config for ablations.

IR-only inference runs the shared convs with the IR BNs, no exchange, the IR
ASPP stream and the IR head: a plain single-modality DeepLabV3, so it costs
exactly what `DeepLabV3` below costs (tested).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from .batchnorm import fused_pass
from .decoder import ASPPStream, GatedSpectralUnit, conv_bn_relu, upsample_to
from .normalize import IMAGENET_MEAN, IMAGENET_STD, IR_MEAN, IR_STD, Normalize
from .resnet import ModalResNet

MODES = ("fused", "ir_only", "eo_only")
OUTPUT_KEYS = ("out", "eo", "ir", "enc_eo", "enc_ir", "dec_eo", "dec_ir")


def _backbone(cfg: dict, num_modalities: int, in_channels: int = 3, exchange: bool = False) -> ModalResNet:
    return ModalResNet(
        depth=cfg["depth"],
        width=cfg["width"],
        output_stride=cfg["output_stride"],
        num_modalities=num_modalities,
        in_channels=in_channels,
        exchange=exchange,
        exchange_threshold=cfg["exchange_threshold"],
        exchange_direction=cfg["exchange_direction"],
    )


def _stream(cfg: dict, cin: int, two_pass: bool = False) -> ASPPStream:
    return ASPPStream(cin, cfg["aspp_channels"], cfg["aspp_rates"], cfg["dropout"], two_pass)


def _normalizers(cfg: dict) -> tuple[Normalize, Normalize]:
    norm = cfg["normalization"]
    return Normalize(norm["eo_mean"], norm["eo_std"]), Normalize(norm["ir_mean"], norm["ir_std"], repeat_to=3)


class CSKNet(nn.Module):
    """EO+IR segmentation with exchange, two decoder streams, GSU, three heads.

    `forward(eo, ir, mode)` takes camera-range tensors (EO Bx3xHxW RGB, IR
    Bx1xHxW) and runs ONE pass: "fused" (both modalities, exchange on, the
    fused head), "ir_only" or "eo_only" (one modality, no exchange). Like
    torchvision's segmentation models it returns the same keys in every mode
    (OUTPUT_KEYS): "out" is the mode's prediction (fused head / IR head / EO
    head) at input size; "eo"/"ir" the per-stream head logits; "enc_*" and
    "dec_*" the encoder and decoder (ASPP) features; entries of an absent
    modality are None. The model knows nothing of losses: the training
    objective decides which passes to run (objective.py runs the fused and
    the IR-only pass).

    With exchange into EO only (the default, resnet.py) the fused pass's IR
    stream is the IR-only pass: the IR path's BatchNorms use and update their
    one set of statistics in both modes, and `ir_stream_is_ir_only` tells the
    objective that one pass serves both. With CEN's symmetric exchange
    (`exchange_direction: both`) the fused pass's IR stream carries EO
    channels, so there the IR BatchNorms read and update separate fused-pass
    running statistics (batchnorm.py) and the IR-only path keeps its own.
    """

    supported_modes = MODES

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.aspp_channels = channels = cfg["aspp_channels"]  # width of the decoder features and the heads' input
        self.exchange = cfg["exchange"]  # whether the encoder exchanges channels in the fused pass
        self.norm_eo, self.norm_ir = _normalizers(cfg)
        self.backbone = _backbone(cfg, 2, exchange=self.exchange)
        cin, classes = self.backbone.out_channels, cfg["num_classes"]
        self.aspp_eo, self.aspp_ir = _stream(cfg, cin), _stream(cfg, cin, two_pass=True)
        self.head_eo = nn.Conv2d(channels, classes, 1)
        self.head_ir = nn.Conv2d(channels, classes, 1)
        self.gsu = GatedSpectralUnit(channels) if cfg["gsu"] else None
        self.head_fused = nn.Sequential(conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, classes, 1))

    @property
    def ir_stream_is_ir_only(self) -> bool:
        """Whether the fused pass's IR stream (features and IR-head logits) equals the IR-only pass."""
        return not self.backbone.ir_stream_exchanged

    def fuse(self, f_eo: torch.Tensor, f_ir: torch.Tensor) -> torch.Tensor:
        return self.gsu(f_eo, f_ir) if self.gsu is not None else f_eo + f_ir

    def forward(self, eo: torch.Tensor | None = None, ir: torch.Tensor | None = None, mode: str = "fused") -> dict:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        use_eo, use_ir = mode != "ir_only", mode != "eo_only"
        size = (ir if use_ir else eo).shape[-2:]
        xs = [self.norm_eo(eo) if use_eo else None, self.norm_ir(ir) if use_ir else None]
        with fused_pass(self) if mode == "fused" and not self.ir_stream_is_ir_only else nullcontext():
            enc_eo, enc_ir = self.backbone(xs)
            dec_eo = self.aspp_eo(enc_eo) if use_eo else None
            dec_ir = self.aspp_ir(enc_ir) if use_ir else None
        logits_eo = upsample_to(self.head_eo(dec_eo), size) if use_eo else None
        logits_ir = upsample_to(self.head_ir(dec_ir), size) if use_ir else None
        if mode == "fused":
            main = upsample_to(self.head_fused(self.fuse(dec_eo, dec_ir)), size)
        else:
            main = logits_ir if mode == "ir_only" else logits_eo
        return {"out": main, "eo": logits_eo, "ir": logits_ir,
                "enc_eo": enc_eo, "enc_ir": enc_ir, "dec_eo": dec_eo, "dec_ir": dec_ir}

    def logits(self, eo, ir, mode: str) -> torch.Tensor:
        return self.forward(eo, ir, mode)["out"]


class DeepLabV3(nn.Module):
    """Single-modality DeepLabV3: the EO teacher and the IR-only baseline."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.aspp_channels = cfg["aspp_channels"]  # width of the decoder features ("dec"), e.g. for KD adapters
        self.modality = cfg["modality"]
        if self.modality not in ("eo", "ir"):
            raise ValueError(f"deeplabv3 model.modality must be 'eo' or 'ir', got {self.modality!r}")
        self.supported_modes = ("eo_only",) if self.modality == "eo" else ("ir_only",)
        norm_eo, norm_ir = _normalizers(cfg)
        self.norm = norm_eo if self.modality == "eo" else norm_ir
        self.backbone = _backbone(cfg, 1)
        self.aspp = _stream(cfg, self.backbone.out_channels)
        self.head = nn.Conv2d(self.aspp_channels, cfg["num_classes"], 1)

    def forward(self, eo=None, ir=None, mode: str | None = None) -> dict:
        x = eo if self.modality == "eo" else ir
        enc = self.backbone([self.norm(x)])[0]
        dec = self.aspp(enc)
        return {"out": upsample_to(self.head(dec), x.shape[-2:]), "enc": enc, "dec": dec}

    def logits(self, eo, ir, mode: str) -> torch.Tensor:
        return self.forward(eo, ir)["out"]


class EarlyFusion(nn.Module):
    """DeepLabV3 on the 4-channel concatenation of normalised EO and IR."""

    supported_modes = ("fused",)

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.aspp_channels = cfg["aspp_channels"]
        self.norm_eo, _ = _normalizers(cfg)
        norm = cfg["normalization"]
        self.norm_ir = Normalize(norm["ir_mean"], norm["ir_std"])
        self.backbone = _backbone(cfg, 1, in_channels=4)
        self.aspp = _stream(cfg, self.backbone.out_channels)
        self.head = nn.Conv2d(self.aspp_channels, cfg["num_classes"], 1)

    def forward(self, eo=None, ir=None, mode: str | None = None) -> dict:
        x = torch.cat([self.norm_eo(eo), self.norm_ir(ir)], dim=1)
        dec = self.aspp(self.backbone([x])[0])
        return {"out": upsample_to(self.head(dec), x.shape[-2:])}

    def logits(self, eo, ir, mode: str) -> torch.Tensor:
        return self.forward(eo, ir)["out"]


def ir_path_batchnorms(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """name -> every BatchNorm of the deployed IR-only path: a CSK-Net's IR BNs of the shared trunk
    (`backbone.*.bns.1`) and of the IR ASPP stream (`aspp_ir`); all of an IR DeepLabV3's."""
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if isinstance(model, CSKNet):
        return {n: m for n, m in bns.items() if (n.startswith("backbone.") and ".bns.1." in n + ".")
                or n.startswith("aspp_ir.")}
    return bns


def ir_only_as_deeplabv3(model: CSKNet) -> DeepLabV3:
    """The IR-only path of a CSK-Net as a plain single-modality DeepLabV3
    (shared convs, IR BatchNorms, IR ASPP stream, IR head). Its outputs equal
    `model(ir=..., mode="ir_only")`: the "no extra cost" claim made concrete.
    The IR path's fused-pass BatchNorm statistics are not part of it."""
    baseline = DeepLabV3(dict(model.cfg, arch="deeplabv3", modality="ir", pretrained=None))
    state = {}
    for key, value in model.state_dict().items():
        if ".fused_running_" in key:
            continue
        if key.startswith("backbone.") and ".bns.0." not in key:
            state[key.replace(".bns.1.", ".bns.0.")] = value
        elif key.startswith("aspp_ir."):
            state["aspp." + key[len("aspp_ir."):]] = value
        elif key.startswith("head_ir."):
            state["head." + key[len("head_ir."):]] = value
    baseline.load_state_dict(state, strict=True)
    return baseline.eval()


DEFAULTS = {
    "arch": "csknet",  # csknet | deeplabv3 | early_fusion
    "modality": "eo",  # deeplabv3 only
    "depth": 50,
    "width": 64,
    "output_stride": 8,
    "aspp_channels": 256,
    "aspp_rates": [12, 24, 36],
    "dropout": 0.1,
    "num_classes": 9,
    "exchange": True,
    "exchange_threshold": 2e-2,
    # "into_eo": EO's low-gamma channels take IR's, the IR stream stays whole (resnet.py: the
    # fallback keeps every channel); "both": CEN's symmetric exchange (ablation, older checkpoints).
    "exchange_direction": "into_eo",
    "gsu": True,
    "pretrained": None,  # null | path to a torchvision ResNet state dict | "torchvision"
    "normalization": {
        "eo_mean": list(IMAGENET_MEAN), "eo_std": list(IMAGENET_STD),
        "ir_mean": list(IR_MEAN), "ir_std": list(IR_STD),
    },
}

ARCHS = {"csknet": CSKNet, "deeplabv3": DeepLabV3, "early_fusion": EarlyFusion}


def model_config(overrides: dict | None = None) -> dict:
    """DEFAULTS with `overrides` applied; unknown keys are an error."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown model config key {key!r}; known: {sorted(DEFAULTS)}")
        if key == "normalization":
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def build_model(overrides: dict | None = None) -> nn.Module:
    cfg = model_config(overrides)
    if cfg["arch"] not in ARCHS:
        raise ValueError(f"model.arch must be one of {sorted(ARCHS)}, got {cfg['arch']!r}")
    model = ARCHS[cfg["arch"]](cfg)
    if cfg["pretrained"]:
        from .pretrained import load_imagenet_backbone

        load_imagenet_backbone(model.backbone, cfg["pretrained"])
    return model
