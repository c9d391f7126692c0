import pytest
import torch
from thop import profile

from accelnas.core.model import block_specs, build_model, calibrate_batchnorm, count_macs, count_params
from accelnas.core.space import EFFICIENTNET_B0, Architecture, sample


def _thop_macs(arch, size):
    model = build_model(arch).eval()
    macs, _ = profile(model, inputs=(torch.randn(1, 3, size, size),), verbose=False)
    return round(macs)


def test_efficientnet_b0_counts():
    assert count_params(EFFICIENTNET_B0) == 5_288_548  # the reference EfficientNet-B0 parameter count
    assert sum(p.numel() for p in build_model(EFFICIENTNET_B0).parameters()) == 5_288_548


def test_counts_refuse_what_they_would_misread():
    for count in (count_macs, count_params, build_model):
        with pytest.raises(TypeError, match="expected an Architecture, got str"):
            count("b0")
        with pytest.raises(ValueError, match="num_classes must be a whole number >= 1"):
            count(EFFICIENTNET_B0, num_classes=0)
    for size in (0, -5, 64.5, True):
        with pytest.raises(ValueError, match="input_size must be a whole number >= 1"):
            count_macs(EFFICIENTNET_B0, input_size=size)


@pytest.mark.parametrize("arch", [EFFICIENTNET_B0, *sample(6, seed=3)], ids=lambda a: a.id)
def test_analytic_counts_match_the_module_and_thop(arch):
    model = build_model(arch)
    assert count_params(arch) == sum(p.numel() for p in model.parameters())
    for size in (224, 64):
        assert count_macs(arch, size) == _thop_macs(arch, size)


def test_forward_shapes_and_residuals():
    arch = sample(1, seed=7)[0]
    model = calibrate_batchnorm(build_model(arch), 32, batches=1, batch_size=2)
    assert not model.training
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 1000)
    assert torch.isfinite(out).all()
    specs = list(block_specs(arch))
    assert len(specs) == arch.num_layers
    assert all(s.residual == (s.stride == 1 and s.in_channels == s.out_channels) for s in specs)


def test_batchnorm_calibration_sets_statistics():
    model = build_model(EFFICIENTNET_B0)
    calibrate_batchnorm(model, 32, batches=2, batch_size=2)
    bn = model.stem[1]
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert bn.momentum == 0.1


def test_counts_match_every_dataset_record(anb_records):
    """Acceptance: params and MACs (thop convention, 224x224, batch 1) equal every published record."""
    mismatches = []
    for r in anb_records:
        arch = Architecture.from_config(r["architecture"])
        params, macs = count_params(arch) / 1e6, count_macs(arch) / 1e6
        if abs(params - r["model_info"]["params"]) > 1e-6 or abs(macs - r["model_info"]["macs"]) > 1e-4:
            mismatches.append((arch.id, params, r["model_info"]["params"], macs, r["model_info"]["macs"]))
    assert len(anb_records) > 1000
    assert mismatches == []
