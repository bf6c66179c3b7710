"""Every training term is finite and matters; a tiny CSK-Net overfits one batch."""

import math

import pytest
import torch

from training import losses
from training.model import build_model
from training.objective import CskObjective, SupervisedObjective

TINY = dict(depth=10, width=8, output_stride=8, aspp_channels=16, aspp_rates=[2, 4, 6], dropout=0.0)


def structured_batch(batch=2, h=48, w=64, seed=0):
    """Labels that the images actually explain: class k where EO is bright in
    band k and IR is warm for even k, so the batch is learnable."""
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(batch, h, w, dtype=torch.long)
    eo = torch.randint(0, 40, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    ir = torch.randint(0, 40, (batch, 1, h, w), dtype=torch.uint8, generator=g)
    for k in range(1, 9):
        x0 = (k - 1) * w // 8
        label[:, h // 4: 3 * h // 4, x0: x0 + w // 8] = k
        eo[:, k % 3, h // 4: 3 * h // 4, x0: x0 + w // 8] = 30 * k
        ir[:, 0, h // 4: 3 * h // 4, x0: x0 + w // 8] = 200 if k % 2 == 0 else 90
    label[:, :2] = losses.IGNORE_INDEX
    return eo, ir, label


def teacher_and_outputs(eo):
    teacher = build_model(dict(TINY, arch="deeplabv3", modality="eo")).eval()
    with torch.no_grad():
        return teacher, teacher(eo=eo)


def test_every_loss_term_is_finite_and_positive():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    teacher, t_out = teacher_and_outputs(eo)
    every_term = {"gamma_l1_mode": "loss", "kd_confidence": 0.0, "ce_ir": 0.5, "kd_feature_ir_only": 1.0,
                  "kd_logit_ir_only": 0.5, "self_kd": 1.0, "self_kd_confidence": 0.0,
                  "self_kd_correct_only": False}
    # CEN's symmetric exchange: the only model whose fused IR stream (ce_ir) differs from the IR-only pass
    objective = CskObjective(build_model(dict(TINY, exchange_direction="both")), losses.loss_config(every_term),
                             (teacher.backbone.out_channels, teacher.aspp_channels))
    total, parts = objective(eo, ir, label, t_out)
    expected = {"ce_fused", "ce_eo", "ce_ir", "ce_ir_only", "kd_feature", "kd_feature_ir_only", "kd_logit",
                "kd_logit_ir_only", "self_kd", "contrastive", "gamma_l1"}
    assert set(parts) == expected
    for name, value in parts.items():
        assert math.isfinite(value.item()) and value.item() > 0, name
    assert math.isclose(total.item(), sum(v.item() for v in parts.values()), rel_tol=1e-5)
    total.backward()
    assert objective.projection.net[0].weight.grad is not None
    assert objective.adapt_enc.weight.grad is not None and objective.adapt_dec_ir.weight.grad is not None
    with pytest.raises(ValueError, match="ce_ir"):  # one-way exchange: the fused IR stream is the IR-only pass
        CskObjective(build_model(TINY), losses.loss_config(every_term),
                     (teacher.backbone.out_channels, teacher.aspp_channels))


def test_zero_weight_switches_a_term_off_and_kd_without_teacher_is_an_error():
    eo, ir, label = structured_batch()
    cfg = losses.loss_config({"kd_feature": 0, "kd_logit": 0, "contrastive": 0, "ce_ir_only": 0, "self_kd": 0,
                              "gamma_l1_mode": "loss"})
    objective = CskObjective(build_model(TINY), cfg, None)
    _, parts = objective(eo, ir, label)
    assert set(parts) == {"ce_fused", "ce_eo", "gamma_l1"}
    with pytest.raises(ValueError, match="need a teacher checkpoint"):
        CskObjective(build_model(TINY), losses.loss_config(), None)
    with pytest.raises(ValueError, match="unknown loss config key"):
        losses.loss_config({"kd": 1.0})


def test_logit_kd_is_zero_for_identical_logits_and_ignores_unlabelled_pixels():
    logits = torch.randn(1, 9, 4, 4)
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    assert losses.logit_kd(logits, logits, label, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(1, 9, 4, 4)
    assert losses.logit_kd(other, logits, label, 2.0).item() > 0
    label[:] = losses.IGNORE_INDEX
    assert losses.logit_kd(other, logits, label, 2.0).item() == 0.0


def test_infonce_prefers_class_aligned_embeddings():
    label = torch.tensor([[[0, 1], [2, 3]]]).repeat_interleave(4, 1).repeat_interleave(4, 2)
    onehot = torch.nn.functional.one_hot(label, 8).permute(0, 3, 1, 2).float()
    aligned = losses.cross_modal_infonce(onehot, onehot, label, 64, 0.1, torch.Generator().manual_seed(0))
    shuffled = losses.cross_modal_infonce(onehot, onehot.roll(1, dims=1), label, 64, 0.1,
                                          torch.Generator().manual_seed(0))
    assert aligned.item() < shuffled.item()


def test_gamma_l1_covers_eo_half_only_unless_exchange_is_symmetric():
    model = build_model(TINY)
    bns = model.backbone.exchange_bns()
    eo_halves = sum(bn.bns[0].weight.numel() // 2 for bn in bns)
    assert losses.gamma_l1(model.backbone).item() == pytest.approx(eo_halves)  # gammas start at 1
    cen = build_model(dict(TINY, exchange_direction="both"))  # CEN: disjoint halves of EO and IR
    ir_halves = sum(bn.bns[1].weight.numel() - bn.bns[1].weight.numel() // 2 for bn in bns)
    assert losses.gamma_l1(cen.backbone).item() == pytest.approx(eo_halves + ir_halves)


def test_tiny_csknet_overfits_one_batch():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    cfg = losses.loss_config({"kd_feature": 0, "kd_logit": 0, "kd_feature_ir_only": 0, "kd_logit_ir_only": 0})
    model = build_model(TINY)
    objective = CskObjective(model, cfg, None)
    opt = torch.optim.Adam(objective.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        total, parts = objective(eo, ir, label)
        first = first if first is not None else parts["ce_fused"].item()
        opt.zero_grad()
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(eo, ir, "fused")["out"].argmax(1)
    valid = label != losses.IGNORE_INDEX
    accuracy = (pred[valid] == label[valid]).float().mean().item()
    assert parts["ce_fused"].item() < 0.3 * first
    assert accuracy > 0.9


def test_supervised_objective_trains_the_teacher():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    objective = SupervisedObjective(build_model(dict(TINY, arch="deeplabv3", modality="eo")))
    assert objective.mode == "eo_only"
    opt = torch.optim.Adam(objective.parameters(), lr=1e-2)
    losses_seen = []
    for _ in range(30):
        loss, _ = objective(eo, ir, label)
        losses_seen.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses_seen[-1] < 0.5 * losses_seen[0]


def test_contrastive_labels_are_read_at_feature_cell_centres():
    """A 1-px stripe through the centre of every stride-8 cell must label the
    cells it crosses; reading the top-left pixel (nearest) misses it entirely."""
    label = torch.zeros(1, 96, 128, dtype=torch.long)
    label[:, :, 4::8] = 5  # vertical 1-px lane marks through the cell centres (column 8j + 4)
    label[:, 44, :] = 7  # a horizontal one through row 5's cell centre (8*5 + 4)
    sub = losses.labels_at_feature_centres(label, (12, 16))
    assert sub.shape == (1, 12, 16)
    assert (sub[0, 5] == 7).all()
    assert (sub[0, :5] == 5).all() and (sub[0, 6:] == 5).all()
    top_left = torch.nn.functional.interpolate(label[:, None].float(), size=(12, 16), mode="nearest")[:, 0]
    assert (top_left == 0).all(), "the old rule misses every stripe"
    # the sub-sampled labels sit where upsampled logits put the cells: the cell-centre label
    # of a smooth (blocky) map equals the block label
    blocks = torch.arange(12 * 16).view(1, 12, 16)
    big = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    assert torch.equal(losses.labels_at_feature_centres(big, (12, 16)), blocks)


@pytest.mark.parametrize("direction", ["into_eo", "both"])
def test_proximal_step_zeroes_only_the_designated_gammas_and_exchange_reports_it(direction):
    model = build_model(dict(TINY, exchange_direction=direction))
    assert model.backbone.exchanged_fraction() == {
        m: dict.fromkeys(("layer1", "layer2", "layer3", "layer4", "all"), 0.0) for m in ("eo", "ir")}
    losses.gamma_proximal_step(model.backbone, 0.6)
    losses.gamma_proximal_step(model.backbone, 0.6)  # 1 - 1.2 -> clamped at 0, not negative
    for bn in model.backbone.exchange_bns():
        half = bn.bns[0].weight.numel() // 2
        assert (bn.bns[0].weight[:half] == 0).all() and (bn.bns[0].weight[half:] == 1).all()
        if direction == "both":  # CEN: the IR second half too
            assert (bn.bns[1].weight[half:] == 0).all() and (bn.bns[1].weight[:half] == 1).all()
        else:  # no IR scale is ever shrunk: the IR-only path keeps every channel
            assert (bn.bns[1].weight == 1).all()
    fractions = model.backbone.exchanged_fraction()
    assert all(v == 0.5 for v in fractions["eo"].values())
    assert all(v == (0.5 if direction == "both" else 0.0) for v in fractions["ir"].values())
    assert losses.resolve_gamma_l1_mode(losses.loss_config(), "adamw") == "proximal"
    assert losses.resolve_gamma_l1_mode(losses.loss_config(), "sgd") == "loss"
    with pytest.raises(ValueError, match="gamma_l1_mode"):
        losses.loss_config({"gamma_l1_mode": "l1"})


def exchanged_after_adamw(mode: str, steps: int = 40, lr: float = 0.03) -> float:
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    model = build_model(TINY)
    cfg = losses.loss_config({"kd_feature": 0, "kd_logit": 0, "kd_feature_ir_only": 0, "kd_logit_ir_only": 0,
                              "contrastive": 0, "gamma_l1_mode": mode})
    objective = CskObjective(model, cfg, None)
    opt = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        total, _ = objective(eo, ir, label)
        opt.zero_grad()
        total.backward()
        opt.step()
        if mode == "proximal":
            losses.gamma_proximal_step(model.backbone, cfg["gamma_prox_budget"] / steps)  # constant lr
    return model.backbone.exchanged_fraction()["eo"]["all"]


def test_exchange_fires_under_adamw_only_with_the_proximal_step():
    assert exchanged_after_adamw("loss") == 0.0  # CEN's 2e-4 loss term is lost in Adam's normalisation
    assert exchanged_after_adamw("proximal") > 0.1


def test_contrastive_anchors_are_class_balanced():
    """A class covering 1% of the pixels gets as many anchors as the others
    (uniform sampling would give it ~1%)."""
    labels = torch.zeros(10000, dtype=torch.long)
    labels[:100] = 3  # rare: 1%
    labels[100:2000] = 5
    labels[2000:2100] = losses.IGNORE_INDEX
    pick = losses.class_balanced_sample(labels, 90, torch.Generator().manual_seed(0))
    assert pick.numel() == 90 and pick.unique().numel() == 90
    counts = torch.bincount(labels[pick], minlength=6)
    assert counts[0] == counts[3] == counts[5] == 30
    # a class with fewer pixels than its share gives all of them; the budget goes to the others
    labels[:100] = 0
    labels[:4] = 3
    counts = torch.bincount(labels[losses.class_balanced_sample(labels, 90)], minlength=6)
    assert counts[3] == 4 and counts[0] == 43 and counts[5] == 43
    assert losses.class_balanced_sample(torch.full((5,), losses.IGNORE_INDEX), 8).numel() == 0


def test_knowledge_reaches_the_ir_only_path_and_is_gated_by_teacher_confidence():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    teacher, t_out = teacher_and_outputs(eo)
    model = build_model(TINY)
    channels = (teacher.backbone.out_channels, teacher.aspp_channels)
    only_ir_only_kd = losses.loss_config({k: 0 for k in ("ce_fused", "ce_eo", "ce_ir", "ce_ir_only", "kd_feature",
                                                          "kd_logit", "contrastive", "gamma_l1", "self_kd")}
                                         | {"kd_confidence": 0.0, "kd_feature_ir_only": 1.0, "kd_logit_ir_only": 0.5})
    objective = CskObjective(model, only_ir_only_kd, channels)
    total, parts = objective(eo, ir, label, t_out)
    assert set(parts) == {"kd_feature_ir_only", "kd_logit_ir_only"}
    model.zero_grad()
    total.backward()
    # the gradient reaches the IR-only path's own parameters: IR BNs, IR ASPP, IR head
    assert model.head_ir.weight.grad.abs().sum() > 0
    assert model.backbone.layer1[0].bn1.bns[1].weight.grad.abs().sum() > 0
    assert model.backbone.layer1[0].bn1.bns[0].weight.grad is None  # and nothing of EO's

    # contrast against the IR-only pass's decoder features: a second pass only where the
    # fused pass's IR stream is not the IR-only pass (CEN's symmetric exchange)
    contrast = losses.loss_config({"kd_feature": 0, "kd_logit": 0, "ce_ir_only": 0, "self_kd": 0})
    for net, passes in ((model, ["fused"]), (build_model(dict(TINY, exchange_direction="both")),
                                             ["fused", "ir_only"])):
        calls = []
        original = net.forward
        net.forward = lambda *a, **k: calls.append(k.get("mode", a[2] if len(a) > 2 else "fused")) or original(*a, **k)
        CskObjective(net, contrast, None)(eo, ir, label)
        assert calls == passes
        net.forward = original

    # a teacher that is never confident teaches nothing; a confident one does
    gated = CskObjective(model, dict(only_ir_only_kd, kd_confidence=0.99), channels)
    _, parts = gated(eo, ir, label, {**t_out, "out": torch.zeros_like(t_out["out"])})  # uniform: 1/9 confidence
    assert parts["kd_feature_ir_only"].item() == 0 and parts["kd_logit_ir_only"].item() == 0
    sharp = t_out["out"].detach().clone()
    sharp[:, 0] += 100.0
    _, parts = gated(eo, ir, label, {**t_out, "out": sharp})
    assert parts["kd_feature_ir_only"].item() > 0 and parts["kd_logit_ir_only"].item() > 0


def test_teacher_confidence_gate_masks_pixels():
    logits = torch.zeros(1, 9, 2, 2)
    logits[0, 2, 0, 0] = 10.0  # one confident pixel
    conf = losses.teacher_confidence(logits)
    assert conf[0, 0, 0] > 0.99 and torch.allclose(conf[0, 1, 1], torch.tensor(1 / 9))
    student = torch.randn(1, 9, 2, 2)
    label = torch.zeros(1, 2, 2, dtype=torch.long)
    gated = losses.logit_kd(student, logits, label, 1.0, conf >= 0.7)
    only_first = losses.logit_kd(student[..., :1, :1], logits[..., :1, :1], label[..., :1, :1], 1.0)
    assert gated.item() == pytest.approx(only_first.item(), rel=1e-5)


def test_teacher_kd_is_masked_on_frames_whose_eo_was_dropped():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    teacher, t_out = teacher_and_outputs(eo)
    only_kd = losses.loss_config({k: 0 for k in ("ce_fused", "ce_eo", "ce_ir_only", "contrastive", "gamma_l1",
                                                  "self_kd")} | {"kd_confidence": 0.0})
    objective = CskObjective(build_model(TINY), only_kd, (teacher.backbone.out_channels, teacher.aspp_channels))
    objective.eval()  # running BN statistics: a frame's terms do not depend on the rest of its batch
    _, kept = objective(eo, ir, label, t_out, torch.tensor([False, False]))
    _, dropped = objective(eo, ir, label, t_out, torch.tensor([True, True]))
    assert kept["kd_feature"].item() > 0 and kept["kd_logit"].item() > 0
    assert dropped["kd_feature"].item() == 0 and dropped["kd_logit"].item() == 0
    _, half = objective(eo, ir, label, t_out, torch.tensor([True, False]))  # frame 1 alone teaches
    _, second = objective(eo[1:], ir[1:], label[1:], {k: v[1:] for k, v in t_out.items()}, torch.tensor([False]))
    assert half["kd_logit"].item() == pytest.approx(second["kd_logit"].item(), rel=1e-5)


def test_self_distillation_teaches_confident_correct_pixels_and_leaves_the_fused_side_alone():
    fused = torch.zeros(1, 9, 2, 2)
    fused[0, 3, 0, 0] = 10.0  # confident, right
    fused[0, 4, 0, 1] = 10.0  # confident, wrong
    fused[0, 5, 1, 0] = 10.0  # confident, unlabelled
    label = torch.tensor([[[3, 3], [losses.IGNORE_INDEX, 3]]])  # pixel (1, 1): not confident (uniform)
    mask = losses.self_distillation_mask(fused, label, 0.7, correct_only=True)
    assert mask.tolist() == [[[True, False], [True, False]]]
    assert losses.self_distillation_mask(fused, label, 0.7, correct_only=False).tolist() == [[[True, True],
                                                                                              [True, False]]]
    fused.requires_grad_(True)
    student = torch.zeros(1, 9, 2, 2, requires_grad=True)
    loss = losses.self_distillation(student, fused, label, 2.0, 0.7, True)
    loss.backward()
    assert loss.item() > 0 and fused.grad is None  # detached: the fused head is not pulled toward IR-only
    taught = student.grad.abs().sum(dim=1)[0]
    assert taught[0, 0] > 0 and taught[1, 0] > 0 and taught[0, 1] == 0 and taught[1, 1] == 0
    # a student that already agrees learns nothing
    assert losses.self_distillation(fused.detach().clone(), fused, label, 2.0, 0.7, True).item() == pytest.approx(
        0.0, abs=1e-6)


def test_self_distillation_trains_the_ir_only_path_in_the_objective():
    torch.manual_seed(0)
    eo, ir, label = structured_batch()
    model = build_model(TINY)
    only_self_kd = losses.loss_config({k: 0 for k in ("ce_fused", "ce_eo", "ce_ir_only", "kd_feature", "kd_logit",
                                                       "contrastive", "gamma_l1")}
                                      | {"self_kd": 1.0, "self_kd_confidence": 0.0, "self_kd_correct_only": False})
    total, parts = CskObjective(model, only_self_kd, None)(eo, ir, label)
    assert set(parts) == {"self_kd"} and total.item() > 0
    total.backward()
    assert model.head_ir.weight.grad.abs().sum() > 0
    assert model.head_fused[1].weight.grad is None and model.gsu is not None  # the fused side is the teacher
