"""MViTv2-S: reference key layout, portrait rel-pos tables, SDPA vs explicit attention, checkpoint adaptation."""

from __future__ import annotations


import pytest
import torch
from shared_data import read_listing

from pmv.errors import ConfigError
from pmv.models import create_model
from pmv.models.attention import DepthwiseConv3d, decomposed_rel_pos_bias, rel_pos_indices, resize_rel_pos
from pmv.models.mvit import MViT, mvitv2_s

SMALL = (1, 1, 1, 1)  # one block per stage: same structure (every stage transition), a quarter of the blocks

# Rel-pos rows (H, W) per block group, from the seed's state-dict listings; rel_pos_t has 15 rows at T=16.
EXPECTED_REL_POS = {
    (224, 224): {0: (111, 111), 1: (55, 55), 3: (27, 27), 14: (27, 27), 15: (13, 13)},
    (256, 192): {0: (127, 95), 1: (63, 47), 3: (31, 23), 14: (31, 23), 15: (15, 11)},
    (288, 192): {0: (143, 95), 1: (71, 47), 3: (35, 23), 14: (35, 23), 15: (17, 11)},
}


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def build_shapes_only(**kwargs) -> MViT:
    """A full-size model on the meta device: real module tree and shapes, no memory, no init cost."""
    with torch.device("meta"):
        return create_model("mvitv2_s", **kwargs)


def test_parameter_count_and_layout():
    model = build_shapes_only(num_classes=400, input_size=(16, 224, 224))
    assert sum(p.numel() for p in model.parameters()) == 34_537_744
    assert len(model.state_dict()) == 397
    assert model.head.dropout.p == 0.5
    assert [round(b.drop_path.drop_prob, 4) for b in model.blocks][::5] == [0.0, 0.0667, 0.1333, 0.2]


def test_initialisation_follows_reference():
    torch.manual_seed(0)
    model = mvitv2_s(num_classes=400, input_size=(2, 64, 64), stage_depths=SMALL)
    block = model.blocks[2]
    assert torch.all(block.attn.qkv.bias == 0) and torch.all(block.mlp.fc1.bias == 0)
    assert torch.all(block.norm1.weight == 1) and torch.all(block.norm1.bias == 0)
    for weight in (block.attn.rel_pos_h, block.mlp.fc1.weight, model.head.projection.weight, block.attn.pool_q.weight):
        assert 0.015 < weight.std().item() < 0.025 and weight.abs().max().item() <= 2.0


def test_state_dict_equals_reference_listing():
    reference = read_listing("statedict_mvitv2_s_16x4.txt")
    model = build_shapes_only(num_classes=400, input_size=(16, 224, 224))
    assert list(shapes_of(model).items()) == list(reference.items())


@pytest.mark.parametrize("height, width", [(224, 224), (256, 192), (288, 192)])
def test_rel_pos_tables_follow_height_and_width(height, width):
    model = build_shapes_only(input_size=(16, height, width))
    for index, (rows_h, rows_w) in EXPECTED_REL_POS[(height, width)].items():
        attn = model.blocks[index].attn
        assert attn.rel_pos_h.shape == (rows_h, 96) and attn.rel_pos_w.shape == (rows_w, 96)
        assert attn.rel_pos_t.shape == (15, 96)
    if (height, width) != (224, 224):
        reference = read_listing(f"statedict_mvitv2_s_16x4_rect{height}x{width}_relpos.txt")
        shapes = shapes_of(model)
        assert {key: shapes[key] for key in reference} == reference


@pytest.mark.parametrize("height, width", [(224, 224), (256, 192), (288, 192), (192, 256)])
def test_forward_backward_square_and_portrait(height, width):
    torch.manual_seed(1)
    model = mvitv2_s(num_classes=7, input_size=(2, height, width), stage_depths=SMALL, drop_path=0.1)
    logits = model(torch.randn(1, 3, 2, height, width))
    assert logits.shape == (1, 7)
    logits.square().sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.blocks[0].attn.rel_pos_h.grad.abs().sum() > 0
    assert model.blocks[0].attn.rel_pos_t.grad.abs().sum() > 0


def test_full_depth_forward_sdpa_matches_math():
    torch.manual_seed(2)
    model = mvitv2_s(num_classes=11, input_size=(2, 64, 32)).eval()
    clip = torch.randn(2, 3, 2, 64, 32)
    with torch.no_grad():
        fast = model(clip)
        model.set_attention_impl("math")
        reference = model(clip)
    assert fast.shape == (2, 11)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast[0], fast[1])  # logits depend on the input (no softmax, no collapse)


def test_sdpa_and_math_gradients_agree():
    torch.manual_seed(3)
    grads = {}
    for impl in ("sdpa", "math"):
        torch.manual_seed(3)
        model = mvitv2_s(num_classes=5, input_size=(2, 64, 32), stage_depths=SMALL, dropout=0.0,
                         drop_path=0.0, attention_impl=impl)
        model(torch.ones(1, 3, 2, 64, 32).cumsum(-1) / 32).sum().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads["sdpa"].items():
        torch.testing.assert_close(grad, grads["math"][name], rtol=1e-3, atol=1e-5, msg=name)


def test_rel_pos_bias_equals_explicit_sum():
    """The broadcast bias equals q . (R_t + R_h + R_w) summed key by key, with pooled keys and a resampled table."""
    torch.manual_seed(4)
    q_shape, k_shape, dim = (2, 4, 3), (2, 2, 1), 5
    q = torch.randn(1, 2, 2 * 4 * 3, dim)
    table_t, table_h, table_w = torch.randn(3, dim), torch.randn(7, dim), torch.randn(4, dim)  # w: 4 rows, needs 5
    bias = decomposed_rel_pos_bias(q, q_shape, k_shape, table_t, table_h, table_w)
    table_w = resize_rel_pos(table_w, 5)
    idx_t, idx_h, idx_w = rel_pos_indices(2, 2), rel_pos_indices(4, 2), rel_pos_indices(3, 1)
    queries = [(t, h, w) for t in range(2) for h in range(4) for w in range(3)]
    keys = [(t, h, w) for t in range(2) for h in range(2) for w in range(1)]
    expected = torch.zeros(1, 2, len(queries), len(keys))
    for i, (tq, hq, wq) in enumerate(queries):
        for j, (tk, hk, wk) in enumerate(keys):
            rel = table_t[idx_t[tq, tk]] + table_h[idx_h[hq, hk]] + table_w[idx_w[wq, wk]]
            expected[0, :, i, j] = q[0, :, i] @ rel
    torch.testing.assert_close(bias, expected)
    # Pooled keys sit on the query grid stretched by 2: equal physical offsets share a table row.
    assert rel_pos_indices(4, 2).tolist() == [[2, 0], [3, 1], [4, 2], [5, 3]]
    assert resize_rel_pos(table_h, 7) is table_h


def test_rect_checkpoint_loads_into_square_model_and_runs(tmp_path):
    torch.manual_seed(5)
    portrait = mvitv2_s(num_classes=10, input_size=(16, 256, 192), stage_depths=SMALL)
    path = tmp_path / "mvit_256x192.pyth"
    torch.save({"model_state": portrait.state_dict(), "epoch": 3}, path)
    square = mvitv2_s(num_classes=10, input_size=(16, 224, 224), stage_depths=SMALL)
    try:
        from pmv.models.checkpoint import load_checkpoint
    except ImportError:
        square.load_state_dict(square.adapt_state_dict(torch.load(path)["model_state"]), strict=True)
    else:
        load_checkpoint(path, square, strict=True)
    loaded = square.state_dict()
    source = portrait.state_dict()
    torch.testing.assert_close(loaded["blocks.2.attn.qkv.weight"], source["blocks.2.attn.qkv.weight"])
    assert loaded["blocks.0.attn.rel_pos_h"].shape == (111, 96)
    torch.testing.assert_close(loaded["blocks.0.attn.rel_pos_w"], resize_rel_pos(source["blocks.0.attn.rel_pos_w"], 111))
    torch.testing.assert_close(loaded["blocks.0.attn.rel_pos_t"], source["blocks.0.attn.rel_pos_t"])
    with torch.no_grad():
        logits = square.eval()(torch.randn(1, 3, 2, 224, 224))
    assert logits.shape == (1, 10) and torch.isfinite(logits).all()


def test_other_input_size_resamples_tables_like_a_rebuilt_model():
    """Running a 64x64-built model on 96x64 clips equals a 96x64 build loaded with interpolated weights."""
    torch.manual_seed(6)
    built = mvitv2_s(num_classes=4, input_size=(2, 64, 64), stage_depths=SMALL).eval()
    rebuilt = mvitv2_s(num_classes=4, input_size=(2, 96, 64), stage_depths=SMALL).eval()
    rebuilt.load_state_dict(rebuilt.adapt_state_dict(built.state_dict()), strict=True)
    assert rebuilt.blocks[0].attn.rel_pos_h.shape[0] != built.blocks[0].attn.rel_pos_h.shape[0]
    clip = torch.randn(1, 3, 2, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(built(clip), rebuilt(clip), rtol=1e-4, atol=1e-5)


def test_activation_checkpointing_keeps_gradients():
    clip = torch.randn(1, 3, 2, 64, 32)
    grads = []
    for act_checkpoint in (False, True):
        torch.manual_seed(7)
        model = mvitv2_s(num_classes=3, input_size=(2, 64, 32), stage_depths=SMALL, dropout=0.0,
                         drop_path=0.0, act_checkpoint=act_checkpoint)
        model(clip).sum().backward()
        grads.append(model.patch_embed.proj.weight.grad)
    assert model.checkpoint_flags == [True] * 4
    torch.testing.assert_close(grads[0], grads[1])
    partial = build_shapes_only(input_size=(2, 64, 32), act_checkpoint=True, checkpoint_blocks=[0, 1, 2, 0])
    assert partial.checkpoint_flags == [False, True, False, True, True] + [False] * 9 + [False, False]


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="multiples of 32"):
        mvitv2_s(input_size=(16, 224, 200))
    with pytest.raises(ConfigError, match="attention_impl"):
        mvitv2_s(input_size=(2, 64, 64), stage_depths=SMALL, attention_impl="flash")
    with pytest.raises(ConfigError, match="one count per stage"):
        mvitv2_s(input_size=(2, 64, 64), stage_depths=SMALL, act_checkpoint=True, checkpoint_blocks=[1])


def test_depthwise_conv_stays_fp32_under_autocast():
    torch.manual_seed(8)
    conv = DepthwiseConv3d(4, 3, 1, 1)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (4, 1, 3, 3, 3)
    x = torch.randn(1, 4, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = conv(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), conv(x.bfloat16().float()), rtol=1e-2, atol=1e-2)
    low.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32


def test_meta_device_forward_for_flop_counting():
    model = build_shapes_only(num_classes=400, input_size=(16, 256, 192), stage_depths=SMALL).eval()
    model.set_attention_impl("math")
    with torch.device("meta"):
        assert model(torch.randn(1, 3, 16, 256, 192)).shape == (1, 400)
