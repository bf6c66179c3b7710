"""The adaptation's switches and their defaults, in one place: the CLI fills them, the checkpoint records them.

The defaults are what the study of issue 25 (benchmarks/adapt_study.py --stage tune) chose on the second
pipeline's train frames (it reports on the val frames): pure AdaBN, self-training of the IR path with
class-balanced pseudo-labels. They fit a robot that only ever sees its new camera; `--no-adabn
--trainable all` is the operating point for one that keeps the old camera too (docs/adaptation.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

TEACHERS = ("frozen", "ema")
PSEUDO_LOSSES = ("ce", "kl")
TRAINABLE = ("ir_path", "all")


@dataclass
class AdaptOptions:
    # -- steps
    adabn: bool = True  # re-estimate the IR-only path's BatchNorm statistics on target thermal frames
    selftrain: bool = True  # cross-modal self-training (fused pass -> IR-only pass)
    adabn_prior: float = 0.0  # share of the source statistics kept (adabn.py): 0 fits the new camera only
    # -- self-training
    steps: int = 400
    batch_size: int = 8
    lr: float = 3e-4  # AdamW, poly decay; a tenth of the CPU configs' training lr: adapt, do not retrain
    weight_decay: float = 1e-4
    crop: tuple[int, int] | None = None  # None: the checkpoint's training crop (or the whole frame)
    teacher: str = "frozen"  # frozen copy taken after AdaBN, or an EMA of the student
    ema_decay: float = 0.999
    loss: str = "ce"  # CE on the teacher's argmax, or KL to its softened distribution
    temperature: float = 2.0  # KL only
    confidence: float = 0.7  # teacher max-softmax a pixel needs to teach (self_kd_confidence's default)
    # pixels weigh (mean count per teacher class / their class's count) ** this. 1.0 chosen by the study's
    # tune stage on the 126 train frames of the second pipeline (+4.2 IR-only mIoU over 0 there)
    class_balance: float = 1.0
    # Night (name ends in N, or EO mean luma below night_luma): EO carries little, so the fused
    # teacher is mostly the IR stream itself; stricter pixels and a weight keep its mistakes out.
    night_confidence: float = 0.9
    night_weight: float = 1.0
    night_luma: float = 40.0  # MSRS day frames' EO mean luma is >= 42, 95% of its night frames < 50
    trainable: str = "ir_path"  # IR BNs' scale/shift + IR ASPP + IR head; "all" adds the shared convs
    fused_weight: float = 0.0  # > 0: the fused pass learns the teacher's labels too
    source_weight: float = 0.5  # labelled source frames (CE, IR-only pass) against forgetting; 0: none
    source_config: str | None = None  # a training config whose data section names them (default: the checkpoint's)
    source_root: str | None = None  # overrides that data section's root
    log_every: int = 10
    # -- data
    max_pairs: int = 2000  # evenly spaced subset of longer recordings (held in memory at the model's size)
    every: int = 1  # bags: keep every N-th EO/IR pair
    slop_s: float = 0.05  # bags: max |EO stamp - IR stamp| of a pair
    eo_topic: str | None = None
    ir_topic: str | None = None
    params: str | None = None  # the node's parameters file, for eo_to_ir_homography (rigs of two sizes)
    # -- measurement
    signal_pairs: int = 200  # target pairs the label-free signals read (evenly spaced)
    seed: int = 0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)  # reserved for callers (a study's labels); recorded as is

    def check(self) -> None:
        """One-line ValueError for a setting no run could use."""
        if self.teacher not in TEACHERS:
            raise ValueError(f"--teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.loss not in PSEUDO_LOSSES:
            raise ValueError(f"--loss must be one of {PSEUDO_LOSSES}, got {self.loss!r}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"--trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.selftrain and self.steps < 1:
            raise ValueError(f"--steps must be >= 1 for self-training (or pass --no-selftrain), got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"--batch-size must be >= 2 (BatchNorm needs two frames), got {self.batch_size}")
        for name in ("confidence", "night_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        for name in ("night_weight", "fused_weight", "source_weight", "lr", "class_balance"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.adabn_prior < 1.0:
            raise ValueError(f"--adabn-prior must be in [0, 1), got {self.adabn_prior}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in (0, 1), got {self.ema_decay}")
        if self.max_pairs < 2 or self.signal_pairs < 1 or self.every < 1:
            raise ValueError("--max-pairs must be >= 2, --signal-pairs and --every >= 1")

    def record(self) -> dict:
        """Plain types only: the checkpoint stays loadable with weights_only=True."""
        out = asdict(self)
        out["crop"] = list(self.crop) if self.crop else None
        return out
