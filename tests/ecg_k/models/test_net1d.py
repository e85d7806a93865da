"""Net1D: fidelity to hsd1503/resnet1d (method.md section 9), configs, head freezing, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecg_k.models import NET1D_CONFIGS, Net1D, Net1DConfig, build_net1d, count_parameters
from ecg_k.models.net1d import BasicBlock, SamePadConv1d, SamePadMaxPool1d, same_padding


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("n_leads", "head", "expected"),
    [(1, "ngk03", 30.92e6), (1, "linear", 30.66e6), (12, "ngk03", 30.93e6)],
)
def test_ecgfounder_parameter_count(n_leads: int, head: str, expected: float) -> None:
    model = build_net1d("ecgfounder", n_leads, head=head)
    assert count_parameters(model) == pytest.approx(expected, rel=0.01)


def test_ecgfounder_time_lengths() -> None:
    model = build_net1d("ecgfounder", 1).eval()
    lengths: list[int] = []
    for module in (model.first_conv, *model.stage_list):
        module.register_forward_hook(lambda _m, _i, out: lengths.append(out.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 1, 5000))
    assert lengths == [2500, 1250, 625, 313, 157, 79, 40, 20]
    assert model.time_lengths(5000) == lengths


def test_small_config_is_cpu_sized() -> None:
    model = build_net1d("small", 1)
    assert 0.2e6 <= count_parameters(model) <= 0.5e6
    assert model.time_lengths(5000)[-1] == 20
    assert count_parameters(build_net1d("tiny", 1)) < 5_000


@pytest.mark.parametrize(
    ("length", "kernel_size", "stride", "expected"),
    [
        (7, 3, 1, (1, 1)),
        (7, 4, 1, (1, 2)),
        (7, 3, 2, (1, 1)),
        (9, 16, 2, (7, 8)),
        (5000, 16, 2, (7, 7)),
        (2, 1, 4, (0, 0)),
    ],
)
def test_same_padding_values(length: int, kernel_size: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(length, kernel_size, stride) == expected


@pytest.mark.parametrize(
    ("length", "kernel_size", "stride", "tap"),
    [(7, 3, 1, 1), (7, 4, 1, 1), (9, 3, 2, 1), (11, 5, 4, 1), (10, 6, 3, 2)],
)
def test_same_conv_is_aligned_on_odd_lengths(length: int, kernel_size: int, stride: int, tap: int) -> None:
    """A one-hot kernel at the left-pad offset must return every stride-th input sample exactly."""
    conv = SamePadConv1d(1, 1, kernel_size, stride)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 0, tap] = 1.0
        conv.conv.bias.zero_()
        x = torch.randn(2, 1, length)
        out = conv(x)
    assert out.shape[-1] == -(-length // stride)
    torch.testing.assert_close(out, x[..., ::stride], rtol=0, atol=0)


def test_same_max_pool_pads_with_zeros() -> None:
    x = -torch.arange(1.0, 10.0).reshape(1, 1, 9)  # all negative: a padded window yields 0
    torch.testing.assert_close(SamePadMaxPool1d(4)(x), torch.tensor([[[0.0, -4.0, 0.0]]]))
    torch.testing.assert_close(SamePadMaxPool1d(2)(x[..., :7]), torch.tensor([[[-1.0, -3.0, -5.0, 0.0]]]))
    torch.testing.assert_close(SamePadMaxPool1d(2)(x[..., :7].neg()), torch.tensor([[[2.0, 4.0, 6.0, 7.0]]]))


@pytest.mark.parametrize(("out_channels", "downsample"), [(16, False), (13, False), (16, True)])
def test_channel_growth_shortcut_is_zero_padded(out_channels: int, downsample: bool) -> None:
    """With the residual branch silenced, a widening block returns the input between zero channels."""
    config = Net1DConfig(
        base_filters=8,
        ratio=1.0,
        filter_list=(out_channels,),
        m_blocks_list=(1,),
        kernel_size=3,
        stride=2,
        groups_width=1,
    )
    block = BasicBlock(8, out_channels, config, downsample=downsample, is_first_block=False).eval()
    with torch.no_grad():
        block.conv3.conv.weight.zero_()
        block.conv3.conv.bias.zero_()
        x = torch.randn(2, 8, 11)
        out = block(x)
    identity = SamePadMaxPool1d(2)(x) if downsample else x
    low = (out_channels - 8) // 2
    assert out.shape == (2, out_channels, identity.shape[-1])
    torch.testing.assert_close(out[:, low : low + 8], identity, rtol=0, atol=0)
    assert not out[:, :low].any() and not out[:, low + 8 :].any()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n_leads", [1, 12])
def test_output_shape(batch: int, n_leads: int) -> None:
    model = build_net1d("tiny", n_leads).eval()
    x = torch.randn(batch, n_leads, 5000)
    with torch.no_grad():
        out = model(x)
        features = model.backbone_features(x)
    assert out.shape == (batch,) and out.dtype == torch.float32
    assert features.shape == (batch, model.n_features)
    torch.testing.assert_close(model.head(features).squeeze(-1), out)


def test_wrong_lead_count_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(batch, 12, samples\)"):
        build_net1d("tiny", 12)(torch.randn(2, 1, 5000))


@pytest.mark.parametrize("overrides", [{}, {"use_bn": False, "use_do": False, "head": "linear"}])
def test_every_parameter_gets_a_gradient(overrides: dict[str, object]) -> None:
    """No unused parameters (DDP without find_unused_parameters, no silently untrained weights)."""
    model = build_net1d("tiny", 3, **overrides)
    model(torch.randn(2, 3, 1000)).sum().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize(("head", "n_tensors"), [("ngk03", 4), ("linear", 2)])
def test_freeze_backbone_leaves_only_the_head(head: str, n_tensors: int) -> None:
    model = build_net1d("tiny", 1, head=head)
    head_params = model.freeze_backbone()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert len(head_params) == len(trainable) == n_tensors
    assert all(name.startswith("dense.") for name in trainable)  # not the SE layers (se_fc1/se_fc2)
    model(torch.randn(4, 1, 5000)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head_params)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    assert count_parameters(model, trainable_only=True) == sum(p.numel() for p in head_params)


def test_reset_head_changes_only_the_head() -> None:
    model = build_net1d("tiny", 1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.reset_head()
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed == {name for name, _ in model.head.named_parameters(prefix="dense")}


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout() -> None:
    model = build_net1d("tiny", 1)
    x = torch.randn(3, 1, 5000)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        assert not torch.equal(model(x), model(x))
    assert not any(isinstance(m, nn.Dropout) for m in build_net1d("tiny", 1, use_do=False).modules())


def test_build_net1d_overrides_and_errors() -> None:
    model = build_net1d("tiny", 2, kernel_size=7, filter_list=[8, 32])
    assert isinstance(model, Net1D)
    assert model.config.kernel_size == 7 and model.config.filter_list == (8, 32)
    assert NET1D_CONFIGS["tiny"].kernel_size == 5  # the registry is not mutated
    with pytest.raises(ValueError, match="unknown Net1D config 'huge'"):
        build_net1d("huge", 1)
    with pytest.raises(ValueError, match="kernal_size"):
        build_net1d("tiny", 1, kernal_size=3)
    with pytest.raises(ValueError, match="in_channels"):
        build_net1d("tiny", 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"m_blocks_list": (1, 1, 1)}, "filter_list has 2 stages but m_blocks_list has 3"),
        ({"m_blocks_list": (1, 0)}, "at least one block"),
        ({"filter_list": (8, 24), "ratio": 0.35}, "3 groups for 8 bottleneck channels"),
        ({"groups_width": 32}, "0 groups"),
        ({"filter_list": (8, 2), "groups_width": 1}, "ngk03 head needs at least 4"),
    ],
)
def test_invalid_configs_are_explained(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_net1d("tiny", 1, **overrides)
