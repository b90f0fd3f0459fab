"""The attention path chosen per device and dtype (``attention_impl="auto"``, the models' default)."""

import pytest
import torch

from pmv.errors import ConfigError
from pmv.models import attention
from pmv.models.attention import choose_attention_impl, multi_head_attention
from pmv.models.mvit import mvitv2_s
from pmv.models.uniformer import uniformer_s

SMALL = (1, 1, 1, 1)


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU computes bf16 with AVX512-BF16 and no AMX (where the explicit path measured faster)."""
    monkeypatch.setattr(attention, "cpu_bf16_support", lambda: "avx512_bf16")


def test_cpu_low_precision_takes_the_explicit_path_fp32_takes_sdpa(native_bf16):
    q = torch.randn(1, 2, 5, 8)
    assert choose_attention_impl(q) == "sdpa"
    assert choose_attention_impl(q.bfloat16()) == "math"
    assert choose_attention_impl(q.half()) == "math"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert choose_attention_impl(q) == "math"  # fp32 tensors inside a bf16 region: the matmuls run in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert choose_attention_impl(q) == "sdpa"
    assert choose_attention_impl(torch.empty(1, 2, 5, 8, device="meta")) == "sdpa"  # not CPU


@pytest.mark.parametrize("support", ["amx", "none"])
def test_with_amx_or_without_native_bf16_sdpa_everywhere(monkeypatch, support):
    monkeypatch.setattr(attention, "cpu_bf16_support", lambda: support)
    q = torch.randn(1, 2, 5, 8)
    assert choose_attention_impl(q.bfloat16()) == "sdpa"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert choose_attention_impl(q) == "sdpa"


def test_bf16_probe_names_one_kind():
    assert attention.cpu_bf16_support() in ("amx", "avx512_bf16", "none")


def test_auto_equals_the_chosen_path_exactly(native_bf16):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    bias = torch.randn(2, 3, 7, 7, generator=g)
    assert torch.equal(multi_head_attention(q, k, v, bias, impl="auto"), multi_head_attention(q, k, v, bias, impl="sdpa"))
    low = [t.bfloat16() for t in (q, k, v, bias)]
    assert torch.equal(multi_head_attention(*low, impl="auto"), multi_head_attention(*low, impl="math"))


@pytest.mark.parametrize("build, frames", [
    (lambda: mvitv2_s(num_classes=7, input_size=(2, 64, 32), stage_depths=SMALL), 2),
    (lambda: uniformer_s(num_classes=7, input_size=(4, 64, 32), stage_depths=SMALL), 4),
])  # fmt: skip
def test_models_under_cpu_bf16_autocast_take_the_explicit_path(build, frames, native_bf16):
    """With native bf16 the models' default is the explicit path; its outputs stay within bf16 tolerance."""
    torch.manual_seed(4)
    model = build().eval()
    clip = torch.randn(2, 3, frames, 64, 32)
    outputs = {}
    with torch.no_grad():
        for impl in ("auto", "math", "sdpa"):
            model.set_attention_impl(impl)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outputs[impl] = model(clip).float()
        model.set_attention_impl("auto")
        fp32 = model(clip)
    assert torch.equal(outputs["auto"], outputs["math"])
    torch.testing.assert_close(outputs["auto"], outputs["sdpa"], rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(outputs["auto"], fp32, rtol=1e-1, atol=1e-1)
    with pytest.raises(ConfigError, match="attention_impl"):
        model.set_attention_impl("flash")
