"""CSK-Net model, baselines and their building blocks."""

from .csknet import ARCHS, DEFAULTS, MODES, CSKNet, DeepLabV3, EarlyFusion, build_model, model_config

__all__ = ["ARCHS", "DEFAULTS", "MODES", "CSKNet", "DeepLabV3", "EarlyFusion", "build_model", "model_config"]
