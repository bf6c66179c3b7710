"""Train the EO teacher, a baseline, or CSK-Net.

python -m training.train --config training/configs/synthetic.yaml --out DIR \
    [--stage teacher|baseline|csk] [--max-steps N] [--device cpu|cuda] [--resume] [key.sub=value ...]

Multi-GPU: torchrun --nproc_per_node N -m training.train ... (DDP; train.sync_bn=true for SyncBN).
Writes DIR/best.pt, DIR/last.pt (state dict + config, weights_only-loadable),
DIR/metrics.json and TensorBoard scalars under DIR/tb. best.pt is selected on
train.eval_split (val, or a fixed hold-out of train), never on a test split
unless --allow-test-selection is given (then recorded in checkpoint and metrics).
For --stage csk the selection score is the mean of fused and IR-only mIoU.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import load_config
from .distributed import DistInfo, all_reduce_sum, init_distributed, shutdown
from .evaluate import confusion_over
from .losses import gamma_proximal_step, resolve_gamma_l1_mode
from .metrics import summarize
from .model import build_model
from .model.batchnorm import convert_sync_batchnorm
from .objective import STAGES, CskObjective, SupervisedObjective

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict:
    """This process's torch RNG streams: CPU and, where CUDA is present, the current
    CUDA device's (dropout on GPU draws from it)."""
    return {"rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def restore_rng(ckpt: dict, seed: int, rank: int, step: int) -> None:
    """Continue the RNG streams of a resumed run; call it after `step` is restored.

    Checkpoints are written by rank 0 and hold its streams: rank 0 continues
    them (CUDA too where saved and present). Other ranks re-derive theirs from
    (seed, rank, restored step), distinct per rank and per resume point."""
    if rank == 0:
        torch.set_rng_state(ckpt["rng_state"])
        if ckpt.get("cuda_rng_state") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"])
    else:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def stage_model_config(cfg: dict, stage: str) -> dict:
    """The teacher is a DeepLabV3 on EO with the configured backbone; the
    other stages train `model` as configured."""
    model_cfg = dict(cfg["model"])
    if stage == "teacher":
        model_cfg.update(arch="deeplabv3", modality="eo")
    elif stage == "csk" and model_cfg["arch"] != "csknet":
        raise ValueError(f"--stage csk trains model.arch=csknet, config says {model_cfg['arch']!r}")
    elif stage == "baseline" and model_cfg["arch"] == "csknet":
        raise ValueError("--stage baseline needs model.arch=deeplabv3 (with model.modality) or early_fusion")
    return model_cfg


def teacher_data_config(cfg: dict) -> dict:
    """The EO teacher's data: `teacher.data` over `data` (it learns where EO carries
    information), and never EO dropout: a blacked-out frame teaches an EO-only model
    the class prior, which it would then distil."""
    data = {**cfg["data"], **cfg["teacher"]["data"]}
    data["augment"] = {**(data.get("augment") or {}), "eo_dropout": 0.0}
    return data


def load_teacher(cfg: dict, device) -> nn.Module | None:
    path = cfg["teacher"]["checkpoint"]
    if not path:
        return None
    teacher, ckpt = model_from_checkpoint(path)
    if ckpt["config"]["model"]["arch"] != "deeplabv3" or ckpt["config"]["model"]["modality"] != "eo":
        raise ValueError(f"teacher checkpoint {path} is not an EO DeepLabV3 (train it with --stage teacher)")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()


def make_optimizer(params, optim_cfg: dict) -> torch.optim.Optimizer:
    name = optim_cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=optim_cfg["lr"], momentum=optim_cfg["momentum"],
                               weight_decay=optim_cfg["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(params, lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    raise ValueError(f"optim.name must be sgd or adamw, got {name!r}")


def epoch_batches(sampler: DistributedSampler, batch_size: int, epoch: int, skip: int) -> list:
    """This epoch's batches of indices, minus the first `skip` (resume mid-epoch without loading them)."""
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, batch_size, drop_last=True))[skip:]


HOLDOUT_SEED = 20231204  # fixed, not train.seed: every run of a multi-seed study selects on the same images


def holdout_split(n: int, fraction: float, stride: int | None = None) -> tuple[list[int], list[int]]:
    """(kept train indices, held-out indices): a deterministic `fraction` of a
    train split of `n` images, the same for every training seed, used as the
    model-selection split of datasets without a val split; with `stride` k,
    every k-th image instead (indices k-1, 2k-1, ...)."""
    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 2:
            raise ValueError(f"train.holdout_stride must be an integer >= 2, got {stride!r}")
        held = list(range(stride - 1, n, stride))
        if not held or len(held) >= n:
            raise ValueError(f"train split has {n} images, too few to hold out every {stride}th for model selection")
        return [i for i in range(n) if (i + 1) % stride], held
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"train.holdout_fraction must be in (0, 1), got {fraction}")
    held = max(1, round(n * fraction))
    if held >= n:
        raise ValueError(f"train split has {n} images, too few to hold out {fraction:.0%} for model selection")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    return sorted(order[held:].tolist()), sorted(order[:held].tolist())


def selection_datasets(cfg: dict, allow_test_selection: bool):
    """(train set, the Dataset behind it, model-selection set, selection record).

    Model selection never looks at a test split unless forced; the record
    (written into checkpoints and metrics) says which split chose best.pt."""
    from .data import build_dataset

    tcfg = cfg["train"]
    split = str(tcfg["eval_split"])
    if split.startswith("test") and not allow_test_selection:
        raise ValueError(f"train.eval_split={split!r} would select best.pt on the split it is reported on; "
                         "use train.eval_split=val (or holdout: a fixed share of train), or pass "
                         "--allow-test-selection to force it (recorded in the checkpoint and metrics)")
    base = build_dataset(cfg["data"], "train", train=True)
    selection = {"split": split, "test_selection_forced": split.startswith("test")}
    if split == "holdout":
        keep, held = holdout_split(len(base), tcfg["holdout_fraction"], tcfg["holdout_stride"])
        if tcfg["holdout_stride"]:
            selection.update(holdout_stride=tcfg["holdout_stride"], holdout_images=len(held))
        else:
            selection.update(holdout_fraction=tcfg["holdout_fraction"], holdout_images=len(held))
        return Subset(base, keep), base, Subset(build_dataset(cfg["data"], "train", train=False), held), selection
    return base, base, build_dataset(cfg["data"], split, train=False), selection


def validate(objective, loader, mode: str, dataset, device, max_batches, dist_info: DistInfo) -> dict:
    cm, _ = confusion_over(objective.model, loader, mode, dataset.num_classes, device, max_batches)
    # On the training device: NCCL reduces CUDA tensors only.
    cm = all_reduce_sum(torch.as_tensor(cm, device=device), dist_info).cpu().numpy()
    return summarize(cm, dataset.class_names)


def evaluate_for_selection(objective, loader, modes, dataset, device, max_batches, dist_info: DistInfo) -> dict:
    """Validation metrics of the first mode, plus "miou_by_mode" for every mode
    and "score", the mean of their mIoUs, which model selection maximises. For
    CSK-Net the modes are fused and IR-only: the node serves both (IR-only
    whenever EO fails), so best.pt must not trade the fallback for the fused
    mode; single-model stages have one mode and score = its mIoU."""
    by_mode = {mode: validate(objective, loader, mode, dataset, device, max_batches, dist_info) for mode in modes}
    metrics = dict(by_mode[modes[0]])
    metrics["miou_by_mode"] = {mode: m["miou"] for mode, m in by_mode.items()}
    metrics["score"] = sum(metrics["miou_by_mode"].values()) / len(modes)
    for mode in modes[1:]:
        metrics[mode] = by_mode[mode]
    return metrics


@dataclass
class TrainingRun:
    """What one stage's training loop reads and updates, built once by `build_run`."""

    cfg: dict  # the stage's config (model and, for the teacher, data adjusted), saved in every checkpoint
    out: Path
    stage: str
    device: str  # "cpu" | "cuda", as requested
    dev: torch.device  # this process's device
    dist_info: DistInfo
    train_set: Dataset
    train_base: Dataset  # the Dataset behind train_set: epochs, class names
    sampler: DistributedSampler
    val_loader: DataLoader  # this rank's share of the model-selection split
    selection: dict  # which split chose best.pt (checkpoints, metrics)
    steps_per_epoch: int
    max_steps: int
    eval_every: int
    model: nn.Module
    teacher: nn.Module | None
    objective: nn.Module
    eval_modes: tuple[str, ...]
    exchange_on: bool
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    lr_factor: Callable[[int], float]  # the poly schedule, step -> multiple of the base lr
    prox_per_lr: float  # gamma shrink per unit of lr (0: no proximal step)
    use_amp: bool
    scaler: torch.amp.GradScaler
    runner: nn.Module | None = None  # objective, DDP-wrapped when distributed
    writer: SummaryWriter | None = None  # rank 0 only
    step: int = 0
    best: dict = field(default_factory=lambda: {"miou": -math.inf})
    # the validation curve: {"step", "score", "miou_by_mode"} per evaluation (metrics.json)
    history: list = field(default_factory=list)

    @property
    def tcfg(self) -> dict:
        """The `train` section of the config."""
        return self.cfg["train"]


def build_data(cfg: dict, dist_info: DistInfo, allow_test_selection: bool) -> dict:
    """The datasets, this rank's sampler and validation loader, and the run's length in steps."""
    tcfg = cfg["train"]
    train_set, train_base, val_set, selection = selection_datasets(cfg, allow_test_selection)
    if cfg["model"]["num_classes"] != train_base.num_classes:
        raise ValueError(f"model.num_classes={cfg['model']['num_classes']} but the dataset has "
                         f"{train_base.num_classes} classes")
    sampler = DistributedSampler(train_set, dist_info.world_size, dist_info.rank, shuffle=True,
                                 seed=tcfg["seed"], drop_last=True)
    steps_per_epoch = len(sampler) // tcfg["batch_size"]
    if steps_per_epoch == 0:
        raise ValueError(f"train split has {len(train_set)} images, fewer than one batch of {tcfg['batch_size']}")
    # Every rank scores a disjoint share; DistributedSampler would pad the last
    # share with repeated images and count them twice in the mIoU.
    val_share = Subset(val_set, range(dist_info.rank, len(val_set), dist_info.world_size))
    val_loader = DataLoader(val_share, batch_size=tcfg["batch_size"], shuffle=False,
                            num_workers=tcfg["num_workers"], generator=torch.Generator().manual_seed(tcfg["seed"]))
    return dict(train_set=train_set, train_base=train_base, sampler=sampler, val_loader=val_loader,
                selection=selection, steps_per_epoch=steps_per_epoch,
                max_steps=tcfg["max_steps"] or tcfg["epochs"] * steps_per_epoch,
                eval_every=tcfg["eval_every"] or steps_per_epoch)


def build_objective(cfg: dict, stage: str, device: str, dev: torch.device, dist_info: DistInfo) -> dict:
    """The model, the teacher (csk) and the stage's objective on `dev`, with SyncBN where asked."""
    model = build_model(cfg["model"])
    teacher = load_teacher(cfg, dev) if stage == "csk" else None
    use_prox = False  # CEN's gamma sparsity as a proximal step (losses.gamma_proximal_step)
    exchange_on = stage == "csk" and cfg["model"]["exchange"]
    if stage == "csk":
        channels = (teacher.backbone.out_channels, teacher.aspp_channels) if teacher else None
        loss_cfg = dict(cfg["loss"], gamma_l1_mode=resolve_gamma_l1_mode(cfg["loss"], cfg["optim"]["name"]))
        objective = CskObjective(model, loss_cfg, channels)
        use_prox = exchange_on and loss_cfg["gamma_l1_mode"] == "proximal" and loss_cfg["gamma_l1"] > 0
        eval_modes = ("fused", "ir_only")  # the node serves both: best.pt is chosen on their mean mIoU
    else:
        objective = SupervisedObjective(model)
        eval_modes = (objective.mode,)
    if dist_info.enabled and cfg["train"]["sync_bn"]:
        if device == "cuda":  # torch's SyncBatchNorm runs on GPU modules only
            objective = convert_sync_batchnorm(objective)  # keeps the IR path's two-pass BN statistics
            model = objective.model
        elif dist_info.is_main:
            print("note: train.sync_bn applies to CUDA only; CPU DDP keeps per-process BatchNorm", file=sys.stderr)
    objective.to(dev)
    return dict(model=model, teacher=teacher, objective=objective, eval_modes=eval_modes, exchange_on=exchange_on,
                use_prox=use_prox)


def poly_schedule(max_steps: int, power: float) -> Callable[[int], float]:
    """The poly lr factor of a `max_steps` run (a plain function: LambdaLR's state dict then holds no lambda state)."""
    def poly(s: int) -> float:
        return max(0.0, 1 - s / max_steps) ** power

    return poly


def build_optimization(objective: nn.Module, cfg: dict, max_steps: int, use_prox: bool) -> dict:
    """Optimizer, poly lr schedule and the proximal step's shrink per unit of lr."""
    optimizer = make_optimizer([p for p in objective.parameters() if p.requires_grad], cfg["optim"])
    poly = poly_schedule(max_steps, cfg["optim"]["poly_power"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly)
    prox_per_lr = 0.0
    if use_prox:  # shrink_t = budget * lr_t / sum of the run's lr schedule
        prox_per_lr = cfg["loss"]["gamma_prox_budget"] / (cfg["optim"]["lr"] * sum(poly(s) for s in range(max_steps)))
    return dict(optimizer=optimizer, scheduler=scheduler, lr_factor=poly, prox_per_lr=prox_per_lr)


def build_run(cfg: dict, out: Path, stage: str, device: str, allow_test_selection: bool) -> TrainingRun:
    """Everything a stage trains with, built in one fixed order: the global RNG draws (seeding, then model and
    head initialisation) are part of the result."""
    dist_info = init_distributed(device)
    seed_everything(cfg["train"]["seed"] + dist_info.rank)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(cfg, model=stage_model_config(cfg, stage))
    if stage == "teacher":
        cfg["data"] = teacher_data_config(cfg)
    dev = torch.device(device if device == "cpu" else f"cuda:{dist_info.local_rank}")
    data = build_data(cfg, dist_info, allow_test_selection)
    parts = build_objective(cfg, stage, device, dev, dist_info)
    use_prox = parts.pop("use_prox")
    optimization = build_optimization(parts["objective"], cfg, data["max_steps"], use_prox)
    use_amp = device == "cuda" and cfg["train"]["amp"]
    return TrainingRun(cfg=cfg, out=out, stage=stage, device=device, dev=dev, dist_info=dist_info, **data, **parts,
                       **optimization, use_amp=use_amp, scaler=torch.amp.GradScaler("cuda", enabled=use_amp))


def resume_from(run: TrainingRun, path: Path) -> None:
    """Continue an interrupted run from its last.pt: weights, optimizer, schedule, scaler, step and RNG streams."""
    ckpt = load_checkpoint(path)
    run.objective.load_state_dict(ckpt["objective"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.step, run.best = ckpt["step"], ckpt["best_metrics"] or run.best
    run.history = list(ckpt.get("history") or [])
    restore_rng(ckpt, run.tcfg["seed"], run.dist_info.rank, run.step)
    # The saved lr belongs to the old schedule; recompute it for this run's max_steps.
    for group, base_lr in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
        group["lr"] = base_lr * run.lr_factor(run.step)


def distributed_runner(run: TrainingRun) -> nn.Module:
    """The module each step calls: the objective, wrapped in DDP when distributed (after resume_from: DDP starts
    every rank from rank 0's state)."""
    if not run.dist_info.enabled:
        return run.objective
    return nn.parallel.DistributedDataParallel(
        run.objective, device_ids=[run.dist_info.local_rank] if run.device == "cuda" else None,
        find_unused_parameters=True)


def open_writer(run: TrainingRun) -> SummaryWriter | None:
    """Rank 0's TensorBoard writer, and the run's config.json beside it; None on other ranks."""
    if not run.dist_info.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run.out / "tb"))
    (run.out / "config.json").write_text(json.dumps(run.cfg, indent=2))
    return writer


def save(run: TrainingRun, name: str, metrics: dict) -> None:
    """Write OUT/name: weights and config plus everything resume_from needs to continue exactly."""
    best = run.best
    save_checkpoint(run.out / name, model_state=run.model.state_dict(), config=run.cfg, stage=run.stage,
                    step=run.step, metrics=metrics, extra={
                        "objective": run.objective.state_dict(), "optimizer": run.optimizer.state_dict(),
                        "scheduler": run.scheduler.state_dict(), **rng_state(),
                        "scaler": run.scaler.state_dict(),
                        "best_metrics": best if math.isfinite(best["miou"]) else None,
                        "history": run.history,
                        "selection": run.selection,
                    })


def train_step(run: TrainingRun, batch: dict) -> tuple[torch.Tensor, dict]:
    """One optimisation step on `batch` (forward, backward, clip, optimizer, proximal step, schedule); returns the
    loss and its parts."""
    tcfg = run.tcfg
    eo, ir, label = (batch[k].to(run.dev, non_blocking=True) for k in ("eo", "ir", "label"))
    with torch.autocast("cuda", dtype=torch.float16, enabled=run.use_amp):
        teacher_out = None
        if run.teacher is not None:
            with torch.no_grad():
                teacher_out = run.teacher(eo=eo)
        eo_dropped = batch.get("eo_dropped")
        loss, parts = run.runner(eo, ir, label, teacher_out, None if eo_dropped is None else eo_dropped.to(run.dev))
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss.item()} at step {run.step}: {({k: v.item() for k, v in parts.items()})}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if tcfg["grad_clip"]:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.objective.parameters(), tcfg["grad_clip"])
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.prox_per_lr:
        gamma_proximal_step(run.model.backbone, run.prox_per_lr * run.optimizer.param_groups[0]["lr"])
    run.scheduler.step()
    run.step += 1
    return loss, parts


def log_step(run: TrainingRun, loss: torch.Tensor, parts: dict, bar: tqdm) -> None:
    """Every train.log_every steps: loss terms, lr and exchanged fractions to TensorBoard, the loss to the bar."""
    step = run.step
    if not run.writer or step % run.tcfg["log_every"]:
        return
    run.writer.add_scalar("loss/total", loss.item(), step)
    for k, v in parts.items():
        run.writer.add_scalar(f"loss/{k}", v.item(), step)
    run.writer.add_scalar("lr", run.scheduler.get_last_lr()[0], step)
    if run.exchange_on:
        for modality, stages in run.model.backbone.exchanged_fraction().items():
            for name, fraction in stages.items():
                run.writer.add_scalar(f"exchanged_fraction/{modality}/{name}", fraction, step)
    bar.set_postfix(loss=f"{loss.item():.3f}")


def evaluate_and_select(run: TrainingRun) -> None:
    """Validate on the selection split; rank 0 keeps best.pt (highest score), last.pt and metrics.json current."""
    metrics = evaluate_for_selection(run.objective, run.val_loader, run.eval_modes, run.train_base, run.dev,
                                     run.tcfg["eval_max_batches"], run.dist_info)
    metrics["selection"] = run.selection
    if run.exchange_on:  # the share of channels exchange replaces, per modality and stage
        metrics["exchanged_fraction"] = run.model.backbone.exchanged_fraction()
    run.objective.train()
    if run.writer:
        for mode in run.eval_modes:
            run.writer.add_scalar(f"val/miou_{mode}", metrics["miou_by_mode"][mode], run.step)
        run.writer.add_scalar("val/score", metrics["score"], run.step)
    run.history.append({"step": run.step, "score": metrics["score"], "miou_by_mode": metrics["miou_by_mode"]})
    if run.dist_info.is_main:
        if metrics["score"] > run.best.get("score", run.best["miou"]):
            run.best = dict(metrics, step=run.step, mode=run.eval_modes[0])
            save(run, "best.pt", run.best)
        save(run, "last.pt", metrics)
        (run.out / "metrics.json").write_text(json.dumps({"best": run.best, "last": dict(metrics, step=run.step),
                                                          "history": run.history}, indent=2))


def train_one_epoch(run: TrainingRun, bar: tqdm) -> None:
    """The rest of the current epoch (from mid-epoch after a resume), evaluating every train.eval_every steps and
    at the last step."""
    tcfg = run.tcfg
    epoch, skip = divmod(run.step, run.steps_per_epoch)
    run.train_base.set_epoch(epoch)  # augmentation is seeded by (seed, index, epoch)
    # A private generator: DataLoader otherwise draws its worker seed from the
    # global RNG, which would make a resumed run diverge from an uninterrupted one.
    loader = DataLoader(run.train_set, batch_sampler=epoch_batches(run.sampler, tcfg["batch_size"], epoch, skip),
                        num_workers=tcfg["num_workers"],
                        generator=torch.Generator().manual_seed(tcfg["seed"] * 1000 + epoch))
    run.objective.train()
    for batch in loader:
        loss, parts = train_step(run, batch)
        bar.update(1)
        log_step(run, loss, parts, bar)
        if run.step % run.eval_every == 0 or run.step == run.max_steps:
            evaluate_and_select(run)
        if run.step >= run.max_steps:
            break


def train(cfg: dict, out: Path, stage: str, device: str = "cpu", resume: bool = False,
          allow_test_selection: bool = False) -> dict:
    """Run one stage; returns the best validation metrics."""
    run = build_run(cfg, out, stage, device, allow_test_selection)
    if resume and (out / "last.pt").is_file():
        resume_from(run, out / "last.pt")
    run.runner = distributed_runner(run)
    run.writer = open_writer(run)
    bar = tqdm(total=run.max_steps, initial=run.step, desc=f"train {stage}", disable=not run.dist_info.is_main,
               dynamic_ncols=True)
    while run.step < run.max_steps:
        train_one_epoch(run, bar)
    bar.close()
    if run.writer:
        run.writer.close()
    shutdown(run.dist_info)
    return run.best


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stage", default="csk", choices=STAGES)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--allow-test-selection", action="store_true",
                   help="let train.eval_split be a test split (best.pt chosen on the reported split: the "
                        "numbers are then optimistic; recorded in the checkpoint and metrics)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.batch_size=4 loss.contrastive=0")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.max_steps is not None:
            cfg["train"]["max_steps"] = args.max_steps
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but torch sees no CUDA device")
        best = train(cfg, Path(args.out), args.stage, args.device, args.resume, args.allow_test_selection)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if math.isfinite(best.get("miou", math.nan)):
        modes = ", ".join(f"{mode} mIoU {100 * miou:.2f}" for mode, miou in best["miou_by_mode"].items())
        print(f"best {modes} (selection score {100 * best['score']:.2f}) at step {best['step']} -> {args.out}/best.pt")
        for modality, stages in (best.get("exchanged_fraction") or {}).items():
            print(f"exchanged fraction {modality}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
