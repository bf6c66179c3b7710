"""Adapting a trained model to a robot's own thermal camera from unlabelled EO/IR recordings (issue 25).

`python -m training.adapt` (cli.py): a trained CSK-Net (or IR DeepLabV3) checkpoint and unlabelled
pairs in (target.py: folders or a rosbag2 recording), a checkpoint of the same format out. Steps,
each switchable:
- adabn.py: the IR-only path's BatchNorm statistics re-estimated on the target thermal frames;
- selftrain.py: the fused pass of a frozen or EMA copy (teacher.py) labels the target pairs, its
  confident pixels supervise the IR-only pass, labelled source frames (source.py) mixed in;
- signals.py and validation.py measure before and after (label-free, and labelled where given);
  report.py records and prints it.
Reconstruction note: CSK-Net's paper has no adaptation; AdaBN (Li et al. 2016) and confidence-gated
self-training with a mean teacher (Tarvainen & Valpola 2017) are standard parts, the cross-modal
teacher (the model's own fused pass labelling its IR-only pass) is this product's.
"""

from .cli import adapt, main
from .options import AdaptOptions

__all__ = ["AdaptOptions", "adapt", "main"]
