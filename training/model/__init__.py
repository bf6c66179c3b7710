"""CSK-Net model, baselines and their building blocks."""

from .csknet import (
                     ARCHS,
                     DEFAULTS,
                     MODES,
                     CSKNet,
                     DeepLabV3,
                     EarlyFusion,
                     build_model,
                     ir_only_as_deeplabv3,
                     model_config,
)

__all__ = [
    "ARCHS", "DEFAULTS", "MODES", "CSKNet", "DeepLabV3", "EarlyFusion", "build_model", "ir_only_as_deeplabv3",
    "model_config",
]
