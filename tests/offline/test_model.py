"""CSK-Net structure: shared convs / separate BNs, exchange, IR-only cost."""

import pytest
import torch
from torch import nn

from training.model import build_model, csknet
from training.model.resnet import EO, IR, ModalBatchNorm2d

TINY = dict(depth=10, width=8, output_stride=8, aspp_channels=16, aspp_rates=[2, 4, 6])


def inputs(batch=2, h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    eo = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    ir = torch.randint(0, 256, (batch, 1, h, w), dtype=torch.uint8, generator=g)
    return eo, ir


def params_with_grad(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_convs_are_single_shared_tensors_and_bns_are_per_modality():
    model = build_model(dict(TINY, depth=18))
    names = [n for n, _ in model.backbone.named_parameters()]
    conv_names = [n for n in names if ".conv" in n or n.startswith("conv") or "downsample.0" in n]
    assert conv_names and not any(".bns." in n for n in conv_names)
    bn_names = [n for n in names if ".bns." in n]
    assert {n.split(".bns.")[1].split(".")[0] for n in bn_names} == {"0", "1"}
    eo, ir = inputs()
    used_eo = params_with_grad(model, model(eo, ir, "eo_only")["eo"].sum())
    used_ir = params_with_grad(model, model(eo, ir, "ir_only")["ir"].sum())
    shared_convs = {f"backbone.{n}" for n in conv_names}
    assert shared_convs <= used_eo and shared_convs <= used_ir, "both modalities must run the same conv tensors"
    assert not any(".bns.1." in n for n in used_eo), "EO pass touched IR BatchNorms"
    assert not any(".bns.0." in n for n in used_ir), "IR pass touched EO BatchNorms"
    bn = model.backbone.layer1[0].bn1
    assert bn.bns[EO].weight.data_ptr() != bn.bns[IR].weight.data_ptr()


def test_bn_parameters_diverge_under_training_while_convs_stay_shared():
    model = build_model(TINY)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    eo, ir = inputs()
    label = torch.randint(0, 9, (2, 64, 80))
    for _ in range(2):
        out = model(eo, ir, "fused")
        loss = sum(nn.functional.cross_entropy(out[k], label) for k in ("out", "eo", "ir"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    bn = model.backbone.layer2[0].bn1
    assert not torch.allclose(bn.bns[EO].weight, bn.bns[IR].weight)
    assert not torch.allclose(bn.bns[EO].running_mean, bn.bns[IR].running_mean)


def set_exchange_gammas(model, value=1e-3):
    """Push the first half of EO gammas and second half of IR gammas below threshold."""
    with torch.no_grad():
        for bn in model.backbone.exchange_bns():
            half = bn.bns[EO].weight.numel() // 2
            bn.bns[EO].weight[:half] = value
            bn.bns[IR].weight[half:] = value


@pytest.mark.parametrize("direction", ["into_eo", "both"])
def test_exchange_changes_features_only_when_both_modalities_are_present(direction):
    torch.manual_seed(0)
    model = build_model(dict(TINY, exchange_direction=direction)).eval()
    no_exchange = build_model(dict(TINY, exchange=False)).eval()
    set_exchange_gammas(model)
    no_exchange.load_state_dict(model.state_dict())
    eo, ir = inputs()
    with torch.no_grad():
        fused, fused_ref = model(eo, ir, "fused"), no_exchange(eo, ir, "fused")
        assert not torch.allclose(fused["enc_eo"], fused_ref["enc_eo"]), "exchange had no effect on EO features"
        ir_only, ir_only_ref = model(eo, ir, "ir_only"), no_exchange(eo, ir, "ir_only")
        torch.testing.assert_close(ir_only["ir"], ir_only_ref["ir"], rtol=0, atol=0)
        eo_only, eo_only_ref = model(eo, ir, "eo_only"), no_exchange(eo, ir, "eo_only")
        torch.testing.assert_close(eo_only["eo"], eo_only_ref["eo"], rtol=0, atol=0)
        if direction == "both":  # CEN: the IR stream takes EO channels too
            assert not torch.allclose(fused["enc_ir"], fused_ref["enc_ir"])
        else:  # into EO only: even with low IR gammas the IR stream is the IR-only pass
            torch.testing.assert_close(fused["enc_ir"], ir_only["enc_ir"], rtol=0, atol=0)
            torch.testing.assert_close(fused["ir"], ir_only["ir"], rtol=0, atol=0)


def test_one_way_exchange_makes_the_fused_ir_stream_the_ir_only_pass_in_training_too():
    """With exchange into EO the objective reads the IR-only pass off the fused pass:
    outputs and the IR BatchNorms' running statistics must be those of an IR-only pass."""
    torch.manual_seed(0)
    cfg = dict(TINY, dropout=0.0)
    model = build_model(cfg)
    assert model.ir_stream_is_ir_only and not build_model(dict(cfg, exchange_direction="both")).ir_stream_is_ir_only
    set_exchange_gammas(model)  # EO exchange fires; the low IR gammas must change nothing
    reference = build_model(cfg)
    reference.load_state_dict(model.state_dict())
    eo, ir = inputs()
    model.train()
    reference.train()
    fused = model(eo, ir, "fused")
    ir_only = reference(ir=ir, mode="ir_only")
    torch.testing.assert_close(fused["ir"], ir_only["out"], rtol=0, atol=0)
    for bn, ref in zip(ir_path_batchnorms(model), ir_path_batchnorms(reference)):
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)


def test_exchange_is_identity_when_no_gamma_is_below_threshold():
    model = build_model(TINY).eval()
    no_exchange = build_model(dict(TINY, exchange=False)).eval()
    no_exchange.load_state_dict(model.state_dict())  # BN gammas init to 1 > 2e-2
    eo, ir = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(eo, ir, "fused")["out"], no_exchange(eo, ir, "fused")["out"])


def count_macs(model, call) -> int:
    """Multiply-accumulates of every Conv2d executed by `call()`."""
    total = 0

    def hook(module, inp, out):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
        total += out.numel() // out.shape[0] * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        call()
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("depth", [10, 50])
def test_ir_only_costs_exactly_a_single_modality_deeplabv3(depth):
    cfg = dict(TINY, depth=depth)
    csk = build_model(cfg)
    baseline = build_model(dict(cfg, arch="deeplabv3", modality="ir"))
    eo, ir = inputs(batch=2)  # batch 2: the ASPP pooling BN needs > 1 value in train mode
    used = params_with_grad(csk, csk(eo, ir, "ir_only")["ir"].float().pow(2).sum())
    used_count = sum(p.numel() for n, p in csk.named_parameters() if n in used)
    baseline_count = sum(p.numel() for p in baseline.parameters())
    assert used_count == baseline_count
    assert count_macs(csk, lambda: csk.eval()(eo, ir, "ir_only")) == count_macs(
        baseline, lambda: baseline.eval()(eo, ir)
    )
    # and the fused model really is bigger, so the equality above is not vacuous
    assert sum(p.numel() for p in csk.parameters()) > baseline_count


def test_forward_modes_have_stable_keys_and_early_fusion():
    from training.model.csknet import OUTPUT_KEYS

    model = build_model(TINY).eval()
    eo, ir = inputs(batch=2, h=48, w=64)
    with torch.no_grad():
        outs = {mode: model(eo, ir, mode) for mode in ("fused", "ir_only", "eo_only")}
        for mode, out in outs.items():
            assert tuple(out) == OUTPUT_KEYS, mode  # torchvision-style: the same keys in every mode
            assert out["out"].shape == (2, 9, 48, 64)
        assert outs["ir_only"]["eo"] is None and outs["eo_only"]["ir"] is None
        torch.testing.assert_close(outs["ir_only"]["out"], outs["ir_only"]["ir"])
        with pytest.raises(ValueError, match="mode must be one of"):
            model(eo, ir, "train")  # the objective, not the model, runs several passes
        early = build_model(dict(TINY, arch="early_fusion")).eval()
        assert early.backbone.conv1.in_channels == 4
        assert early(eo, ir)["out"].shape == (2, 9, 48, 64)


def test_gsu_can_be_switched_off():
    with_gsu, without = build_model(TINY), build_model(dict(TINY, gsu=False))
    assert with_gsu.gsu is not None and without.gsu is None
    eo, ir = inputs()
    assert without.eval()(eo, ir)["out"].shape == (2, 9, 64, 80)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown model config key 'dept'"):
        build_model({"dept": 50})
    with pytest.raises(ValueError, match="depth must be one of"):
        build_model(dict(TINY, depth=42))
    with pytest.raises(ValueError, match="modality must be 'eo' or 'ir'"):
        build_model(dict(TINY, arch="deeplabv3", modality="rgb"))


def torchvision_like_state(depth: int) -> dict:
    """A state dict named exactly like torchvision's ResNet (made from a
    single-modality trunk by dropping our `.bns.0`), plus an fc layer."""
    single = build_model(dict(TINY, depth=depth, width=64, arch="deeplabv3")).backbone
    state = {k.replace(".bns.0", ""): torch.randn_like(v.float()).to(v.dtype) for k, v in single.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    return state


def test_imagenet_weights_load_into_both_modalities(tmp_path):
    from training.model.pretrained import load_imagenet_backbone

    state = torchvision_like_state(18)
    assert "layer1.0.bn1.weight" in state and "layer2.0.downsample.1.running_var" in state
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = build_model(dict(TINY, depth=18, width=64, pretrained=str(path)))
    bb = model.backbone.state_dict()
    torch.testing.assert_close(bb["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    for m in (0, 1):
        torch.testing.assert_close(bb[f"layer2.0.downsample.1.bns.{m}.running_var"],
                                   state["layer2.0.downsample.1.running_var"])
        torch.testing.assert_close(bb[f"bn1.bns.{m}.weight"], state["bn1.weight"])
    early = build_model(dict(TINY, depth=18, width=64, arch="early_fusion", pretrained=str(path)))
    torch.testing.assert_close(early.backbone.conv1.weight[:, 3], state["conv1.weight"].mean(1))
    with pytest.raises(ValueError, match="do not fit ResNet-18 width 8"):
        load_imagenet_backbone(build_model(dict(TINY, depth=18)).backbone, str(path))
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        build_model(dict(TINY, pretrained=str(tmp_path / "missing.pth")))


def test_modal_batchnorm_skips_absent_modality():
    bn = ModalBatchNorm2d(4, 2).eval()
    x = torch.randn(1, 4, 3, 3)
    out = bn([None, x])
    assert out[0] is None and out[1].shape == x.shape


def test_ir_only_path_is_exactly_a_deeplabv3_with_the_ir_weights():
    from training.model import ir_only_as_deeplabv3

    torch.manual_seed(0)
    csk = build_model(TINY)
    for m in csk.modules():  # make the IR BatchNorms differ from EO's, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.3, 0.3)
    csk.eval()
    baseline = ir_only_as_deeplabv3(csk)
    eo, ir = inputs()
    with torch.no_grad():
        torch.testing.assert_close(baseline(ir=ir)["out"], csk(eo, ir, "ir_only")["out"], rtol=0, atol=0)
        assert not torch.allclose(baseline(ir=ir)["out"], csk(eo, ir.flip(-1), "ir_only")["out"])


def ir_path_batchnorms(model):
    """Every BatchNorm of CSK-Net's IR-only path (IR BNs of the trunk, IR ASPP stream)."""
    return list(csknet.ir_path_batchnorms(model).values())


def as_sync_bn(model):
    from training.model.batchnorm import TwoPassSyncBatchNorm, convert_sync_batchnorm

    model = convert_sync_batchnorm(model)  # train.sync_bn; without a process group SyncBN runs locally
    assert all(isinstance(bn, TwoPassSyncBatchNorm) for bn in ir_path_batchnorms(model))
    assert isinstance(model.backbone.layer1[0].bn1.bns[EO], nn.SyncBatchNorm)
    return model


@pytest.mark.parametrize("convert", [lambda m: m, as_sync_bn], ids=["bn", "sync_bn"])
def test_fused_pass_leaves_the_ir_only_running_statistics_alone(convert):
    """Bug: the fused pass (EO channels exchanged in) updated the IR BNs' running
    statistics, which IR-only inference then used. Now the IR-only path's
    statistics are a function of IR-only passes alone, and the fused pass
    keeps (and uses at inference) its own."""
    torch.manual_seed(0)
    # no random masks: the two models must see identical IR-only passes; CEN's symmetric
    # exchange, where the fused pass's IR stream differs from the IR-only pass
    cfg = dict(TINY, dropout=0.0, exchange_direction="both")
    model = build_model(cfg)
    set_exchange_gammas(model, 1e-3)  # exchange really fires in the fused pass
    eo, ir = inputs()
    reference = build_model(cfg)
    reference.load_state_dict(model.state_dict())
    model = convert(model)

    model.train()
    model(eo, ir, "fused")
    model(ir=ir, mode="ir_only")
    reference.train()
    reference(ir=ir, mode="ir_only")  # the IR-only pass alone
    for bn, ref in zip(ir_path_batchnorms(model), ir_path_batchnorms(reference)):
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)
    # the fused pass did collect statistics, into its own buffers
    fused_moved = [not torch.equal(bn.fused_running_mean, torch.zeros_like(bn.fused_running_mean))
                   for bn in ir_path_batchnorms(model)]
    assert all(fused_moved)

    # IR-only inference is unaffected by the fused buffers; fused inference uses them
    model.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ir=ir, mode="ir_only")["out"], reference(ir=ir, mode="ir_only")["out"],
                                   rtol=0, atol=0)
        fused = model(eo, ir, "fused")["out"]
        for bn in ir_path_batchnorms(model):
            bn.fused_running_mean.zero_()
            bn.fused_running_var.fill_(1.0)
        assert not torch.allclose(fused, model(eo, ir, "fused")["out"])


def test_fused_statistics_are_buffers_outside_the_ir_only_graph():
    from training.model import ir_only_as_deeplabv3

    csk = build_model(TINY)
    fused_keys = [k for k in csk.state_dict() if ".fused_running_" in k]
    assert fused_keys and all(".bns.1." in k or k.startswith("aspp_ir.") for k in fused_keys)
    assert not any("fused_running" in n for n, _ in csk.named_parameters())
    assert not any("fused_running" in k for k in ir_only_as_deeplabv3(csk).state_dict())


def test_checkpoints_from_before_the_exchange_direction_load_with_cen_exchange(tmp_path):
    """A checkpoint trained with CEN's symmetric exchange (no exchange_direction in its
    config) must not be served with one-way exchange: its IR stream was trained exchanged."""
    from tests.conftest import tiny_config
    from training.checkpoint import model_from_checkpoint, save_checkpoint

    cfg = tiny_config()
    net = build_model(cfg["model"])
    old_cfg = dict(cfg, model={k: v for k, v in cfg["model"].items() if k != "exchange_direction"})
    save_checkpoint(tmp_path / "old.pt", model_state=net.state_dict(), config=old_cfg, stage="csk", step=0)
    model, _ = model_from_checkpoint(tmp_path / "old.pt")
    assert not model.ir_stream_is_ir_only
    save_checkpoint(tmp_path / "new.pt", model_state=net.state_dict(),
                    config=dict(cfg, model=dict(cfg["model"], exchange_direction="into_eo")), stage="csk", step=0)
    assert model_from_checkpoint(tmp_path / "new.pt")[0].ir_stream_is_ir_only


def test_checkpoints_without_fused_statistics_still_load(tmp_path):
    """Checkpoints written before the fused pass had its own BN statistics load,
    with the fused statistics starting from the (then shared) running ones."""
    from tests.conftest import tiny_config
    from training.checkpoint import model_from_checkpoint, save_checkpoint

    net = build_model(tiny_config()["model"])
    old = {k: v for k, v in net.state_dict().items() if ".fused_running_" not in k}
    save_checkpoint(tmp_path / "old.pt", model_state=old, config=tiny_config(), stage="csk", step=0)
    model, _ = model_from_checkpoint(tmp_path / "old.pt")
    bn = model.backbone.layer1[0].bn1.bns[IR]
    torch.testing.assert_close(bn.fused_running_var, bn.running_var)
