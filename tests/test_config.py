import pytest

from pmv.config import Config, load_config, save_config
from pmv.errors import ConfigError


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
