from pathlib import Path

import pytest

from pmv.config import Config, load_config, save_config
from pmv.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_and_override_parsing():
    cfg = load_config(overrides=["transform.train_crop=[256,192]", "data.target_fps=30", "train.epochs=3"])
    assert isinstance(cfg, Config)
    assert cfg.transform.train_crop == [256, 192]
    assert cfg.data.target_fps == 30.0 and isinstance(cfg.data.target_fps, float)
    assert cfg.train.epochs == 3


def test_recipe_extends_base_and_overrides_win(tmp_path):
    write(tmp_path / "base.yaml", "data:\n  num_frames: 8\n  sampling_rate: 2\ntrain:\n  epochs: 4\n")
    (tmp_path / "sub").mkdir()
    recipe = write(tmp_path / "sub" / "r.yaml", "_base_: ../base.yaml\ndata:\n  num_frames: 16\n")
    cfg = load_config(recipe, ["train.epochs=9"])
    assert cfg.data.num_frames == 16  # recipe beats base
    assert cfg.data.sampling_rate == 2  # inherited
    assert cfg.train.epochs == 9  # override beats recipe


def test_misspelt_key_names_key_and_closest(tmp_path):
    recipe = write(tmp_path / "r.yaml", "data:\n  num_frame: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(recipe)
    message = str(info.value)
    assert "data.num_frame" in message and "data.num_frames" in message and "r.yaml" in message


def test_unknown_section_suggests_or_lists_sections():
    with pytest.raises(ConfigError, match="did you mean 'data'"):
        load_config(overrides=["dat.num_frames=3"])
    with pytest.raises(ConfigError, match="valid keys: data, mixup, model"):
        load_config(overrides=["zzz.num_frames=3"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs=abc", "'train.epochs' must be int"),
        ("transform.train_crop=5", "must be a list of int"),
        ("transform.random_flip=3", "must be bool"),
        ("data.mean=[0.4, x, 0.4]", "data.mean'[1]"),
        ("data=3", "is a section"),
        ("novalue", "section.key=value"),
    ],
)
def test_wrong_types_fail_at_load(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert fragment in str(info.value)


def test_base_loop_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["model.name=x3d_m", "test.num_temporal_views=5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------- values checked at load
@pytest.mark.parametrize(
    "override, fragment",
    [
        ("test.num_spatial_views=2", "'test.num_spatial_views' must be one of 1, 3"),
        ("test.num_temporal_views=0", "'test.num_temporal_views' must be >= 1; got 0"),
        ("test.spatial_index=3", "'test.spatial_index' must be one of 0, 1, 2 (top/left, centre, bottom/right)"),
        ("train.precision=fp8", "'train.precision' must be one of fp32, bf16, fp16; got 'fp8'"),
        ("train.loss=mse", "'train.loss' must be one of cross_entropy, soft_cross_entropy"),
        ("optim.method=adam", "'optim.method' must be one of adamw, sgd"),
        ("optim.lr_scaling=gpus", "'optim.lr_scaling' must be one of none, nodes, sqrt_nodes, batch"),
        ("test.aggregation=mean", "'test.aggregation' must be one of softmax_sum, logits_sum, softmax_max"),
        ("transform.interpolation=nearest", "'transform.interpolation' must be one of bilinear, bicubic"),
        ("transform.randaugment_interpolation=area", "'transform.randaugment_interpolation' must be one of"),
        ("transform.num_sample=0", "'transform.num_sample' must be >= 1"),
        ("train.grad_accum=0", "'train.grad_accum' must be >= 1"),
        ("transform.erase_prob=1.5", "'transform.erase_prob' must be in [0.0, 1.0]; got 1.5"),
        ("mixup.switch_prob=-0.1", "'mixup.switch_prob' must be in [0.0, 1.0]"),
        ("transform.jitter_scales=[320,256]", "'transform.jitter_scales' must be [min, max] with 0 < min <= max"),
        ("transform.scale_relative=[0.5]", "'transform.scale_relative' must be [] or [min, max]"),
        ("test.batch_size=0", "'test.batch_size' must be >= 1"),
        ("train.epochs=0", "'train.epochs' must be >= 1"),
        ("train.batch_size=0", "'train.batch_size' must be >= 1"),
        ("test.batch_size=-1", "'test.batch_size' must be >= 1"),
        ("train.num_workers=-1", "'train.num_workers' must be >= 0"),
        ("test.crop=[224]", "'test.crop' must be [height, width] with two positive ints; got [224]"),
        ("transform.train_crop=[256,0]", "'transform.train_crop' must be [height, width] with two positive ints"),
        ("data.num_frames=0", "'data.num_frames' must be >= 1"),
        ("data.std=[0.2,0.2,0]", "'data.std' must be 3 values, each > 0"),
        ("data.target_fps=0", "'data.target_fps' must be > 0"),
        ("model.drop_path=1.0", "'model.drop_path' must be in [0.0, 1.0)"),
        ("model.checkpoint_blocks=[0,-1]", "'model.checkpoint_blocks' must be a list of values, each >= 0"),
        ("optim.betas=[0.9]", "'optim.betas' must be 2 values, each in [0.0, 1.0)"),
        ("optim.reference_batch=0", "'optim.reference_batch' must be >= 1"),
    ],
)
def test_values_out_of_range_fail_at_load_naming_key_and_accepted_values(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert fragment in str(info.value)


def test_range_errors_name_the_recipe_and_optional_model_options_pass():
    recipe = CONFIGS / "pmv400" / "x3d_m" / "shorter.yaml"
    with pytest.raises(ConfigError, match=r"shorter\.yaml: 'test\.num_spatial_views'"):
        load_config(recipe, ["test.num_spatial_views=4"])
    cfg = load_config(overrides=["model.dropout=null", "model.options={attention_impl: math}"])
    assert cfg.model.dropout is None and cfg.model.options == {"attention_impl": "math"}


def test_config_built_in_python_is_checked_by_validate():
    from pmv.config import TestConfig, validate

    cfg = Config(test=TestConfig(spatial_index=5))
    with pytest.raises(ConfigError, match="'test.spatial_index' must be one of 0, 1, 2"):
        validate(cfg)
    assert validate(Config()) == Config()


@pytest.mark.parametrize("text, form", [("256x192", "[256,192]"), ("288X192", "[288,192]"), ("256,192", "[256,192]")])
def test_crop_written_as_hxw_shows_the_accepted_form(text, form):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"transform.train_crop={text}"])
    message = str(info.value)
    assert "'transform.train_crop' must be a list of int" in message
    assert f"write it as transform.train_crop={form} (H x W, height first)" in message


def test_misspelt_config_path_suggests_the_closest_file(tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    with pytest.raises(ConfigError) as info:
        load_config("configs/pmv400/x3d_m/shortr.yaml")
    assert str(info.value) == ("config file not found: configs/pmv400/x3d_m/shortr.yaml; "
                               "did you mean configs/pmv400/x3d_m/shorter.yaml?")
    with pytest.raises(ConfigError, match="did you mean configs/pmv400/mvitv2_s/rect_256x192.yaml"):
        load_config("configs/pmv400/mvit_s/rect_256x192.yaml")  # a misspelt folder
    write(tmp_path / "recipe.yaml", "_base_: bse.yaml\n")
    write(tmp_path / "base.yaml", "train:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"bse\.yaml; did you mean .*base\.yaml"):
        load_config(tmp_path / "recipe.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nothing_like_it_at_all.yaml")
    assert "did you mean" not in str(info.value)


# ------------------------------------------------------------------------------------- overlays and size scaling
def test_overlay_sits_between_recipe_and_overrides(tmp_path):
    recipe = write(tmp_path / "r.yaml", "train:\n  epochs: 9\n  batch_size: 6\n")
    overlay = write(tmp_path / "o.yaml", "train:\n  epochs: 1\n  num_workers: 1\n")
    cfg = load_config(recipe, ["train.num_workers=0"], overlays=[overlay])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers) == (1, 6, 0)


def test_scale_sizes_keeps_the_aspect_in_multiples(tmp_path):
    recipe = write(tmp_path / "r.yaml", "transform:\n  train_crop: [256, 192]\n  jitter_scales: [256, 320]\n"
                                        "test:\n  crop: [288, 192]\n")
    overlay = write(tmp_path / "o.yaml", "_scale_sizes_: {factor: 0.5, multiple: 32}\ntest:\n  batch_size: 2\n")
    cfg = load_config(recipe, ["test.short_side=100"], overlays=[overlay])
    assert cfg.transform.train_crop == [128, 96] and cfg.transform.jitter_scales == [128, 160]
    assert cfg.test.crop == [160, 96] and cfg.test.short_side == 100  # overrides are not scaled
    assert cfg.data.decode_short_side == 0  # "off" stays off
    stacked = write(tmp_path / "s.yaml", "_base_: [r.yaml, o.yaml]\n")  # the same overlay stacked with _base_
    assert load_config(stacked).transform.train_crop == [128, 96]
    bad = write(tmp_path / "b.yaml", "_scale_sizes_: {factor: -1}\n")
    with pytest.raises(ConfigError, match="_scale_sizes_ must be"):
        load_config(recipe, overlays=[bad])
