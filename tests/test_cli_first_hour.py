"""The first hour of a new user, command by command: smoke runs of paper recipes, `pmv config show`, the synth
overrides, and the messages for files given in the wrong place (a text file to probe, a YAML as a checkpoint)."""

import logging
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

from pmv.cli.main import main
from pmv.config import config_from_dict, load_config
from pmv.engine import checkpointing as ckpt
from pmv.errors import CheckpointError
from pmv.models.checkpoint import read_checkpoint_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SMOKE = CONFIGS / "smoke.yaml"
PAPER_RECIPES = sorted(p for p in (CONFIGS / "pmv400").glob("*/*.yaml") if not p.name.startswith("_"))


def test_there_are_twelve_paper_recipes():
    assert len(PAPER_RECIPES) == 12


# -------------------------------------------------------------------------------------------------- smoke overlay
@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_paper_recipe_loads_with_the_smoke_overlay(recipe):
    full, smoke = load_config(recipe), load_config(recipe, overlays=[SMOKE])
    assert (smoke.train.epochs, smoke.train.batch_size, smoke.train.num_workers) == (1, 2, 1)
    assert smoke.train.precision == "fp32" and smoke.train.precise_bn_batches == 2
    assert smoke.data.num_frames == 4 and smoke.train.output_dir == "runs/smoke"
    assert (smoke.test.num_temporal_views, smoke.test.num_spatial_views) == (1, 1)
    # Half-size crops in multiples of 32 (what every zoo model accepts) that stay portrait, square or landscape.
    for before, after in [(full.transform.train_crop, smoke.transform.train_crop), (full.test.crop, smoke.test.crop)]:
        assert all(v % 32 == 0 and v <= b for v, b in zip(after, before))
        assert (after[0] > after[1]) == (before[0] > before[1]) and (after[0] == after[1]) == (before[0] == before[1])
    assert smoke.test.short_side >= min(smoke.test.crop)
    # The recipe itself is kept: model, optimiser, augmentation.
    assert smoke.model == full.model and smoke.optim == full.optim and smoke.mixup == full.mixup
    assert smoke.transform.randaugment == full.transform.randaugment


def test_smoke_overlay_keeps_the_rect_aspect_and_overrides_still_win():
    cfg = load_config(CONFIGS / "pmv400" / "x3d_m" / "rect_256x192.yaml", ["train.epochs=2"], overlays=[SMOKE])
    assert cfg.transform.train_crop == [128, 96] and cfg.transform.jitter_scales == [128, 160]
    assert cfg.train.epochs == 2


def synth(out: Path, capsys) -> list[str]:
    """`pmv data synth` into ``out``; the overrides it prints."""
    code = main(["data", "synth", str(out), "--kinds", "motion", "--classes-per-kind", "2", "--train", "1",
                 "--val", "1", "--test", "1", "--size", "64x36", "--duration", "1", "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("use it with: "))
    assert f"--smoke {line.removeprefix('use it with: ')}" in printed  # the example command uses them
    return shlex.split(line.removeprefix("use it with: "))


def test_synth_overrides_point_a_paper_recipe_at_the_synth_lists(tmp_path, capsys):
    from pmv.data.annotations import list_file, load_split

    overrides = synth(tmp_path / "synth dir", capsys)  # a space in the path survives the printed line
    assert "data.subset=" in overrides and "model.num_classes=2" in overrides
    cfg = load_config(CONFIGS / "pmv400" / "mvitv2_s" / "shorter.yaml", overrides)
    assert cfg.data.subset == "" and cfg.model.num_classes == 2
    assert list_file(cfg.data, "train") == tmp_path / "synth dir" / "train.csv"
    split = load_split(cfg.data, "train")
    assert len(split) == 2 and not split.missing and split.num_classes == 2


@pytest.mark.parametrize("model", ["x3d_m", "mvitv2_s", "uniformer_s"])
def test_smoke_run_of_a_paper_recipe_trains_on_synthetic_videos(model, tmp_path, capsys, one_torch_thread):
    overrides = synth(tmp_path / "synth", capsys)
    run = tmp_path / "run"
    code = main(["train", "--config", str(CONFIGS / "pmv400" / model / "rect_256x192.yaml"), "--smoke",
                 "--device", "cpu", *overrides, f"train.output_dir={run}"])
    assert code == 0
    assert "trained 1 epochs (1 steps)" in capsys.readouterr().out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["transform"]["train_crop"] == [128, 96] and saved["data"]["num_frames"] == 4


# ---------------------------------------------------------------------------------------------- pmv config show
def test_config_show_prints_values_with_help_and_loads_back(capsys, tmp_path):
    recipe = CONFIGS / "pmv400" / "uniformer_s" / "rect_256x192.yaml"
    assert main(["config", "show", str(recipe), "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {recipe} + overrides: train.epochs=3\n")
    lines = out.splitlines()
    assert any(line.startswith("  train_crop: [256, 192]") and "# DATA.TRAIN_CROP_SIZE(_RECT): training crop [H, W]"
               in line for line in lines)
    assert any(line.startswith("  epochs: 3") and "# SOLVER.MAX_EPOCH" in line for line in lines)
    assert any(line.startswith("  grad_accum: 1") and "micro-batches per optimizer step" in line for line in lines)
    # The annotated output is YAML: it loads back to the same config.
    assert config_from_dict(yaml.safe_load(out)) == load_config(recipe, ["train.epochs=3"])


def test_config_show_yaml_smoke_and_defaults(capsys):
    recipe = str(CONFIGS / "pmv400" / "x3d_m" / "shorter.yaml")
    assert main(["config", "show", recipe, "--smoke", "--yaml"]) == 0
    out = capsys.readouterr().out
    assert "#" not in out and config_from_dict(yaml.safe_load(out)) == load_config(recipe, overlays=[SMOKE])
    assert main(["config", "show", "train.epochs=4"]) == 0  # no recipe: the defaults plus overrides
    out = capsys.readouterr().out
    assert out.startswith("# (defaults) + overrides: train.epochs=4") and "  epochs: 4" in out


def test_config_show_errors_are_pmv_errors(capsys):
    assert main(["config", "show", "configs/pmv400/x3d_m/shortr.yaml"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_schema_help_and_seed_options_match_the_docs():
    """Every key is documented in docs/seed-options.md, and so is each seed option a key names."""
    import dataclasses

    from pmv.config import Config

    table = (REPO / "docs" / "seed-options.md").read_text()
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(type(section.default_factory())):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"
            assert f"{section.name}.{f.name}" in table, f"{section.name}.{f.name} is not in docs/seed-options.md"
            for option in filter(None, (o.strip() for o in f.metadata.get("seed", "").split(" / "))):
                base = option.split(" (")[0].replace("(_RECT)", "").replace("(_BY_SQRT)", "")
                assert base in table, f"{option} ({section.name}.{f.name}) is not in docs/seed-options.md"


# ---------------------------------------------------------------------------------- files given in the wrong place
def test_data_probe_on_a_text_file_prints_one_clean_error(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    assert main(["data", "probe", str(notes)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no empty table
    assert captured.err == f"pmv: error: {notes}: not a video: it is a text file\n"
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(bytes(range(256)) * 8)
    assert main(["data", "probe", str(garbage), str(notes), "--json"]) == 1
    out = capsys.readouterr().out
    assert "Errno" not in out and "Invalid data found when processing input" in out


def test_yaml_or_text_as_a_checkpoint_says_what_it_is(tmp_path, capsys):
    recipe = CONFIGS / "pmv400" / "x3d_m" / "shorter.yaml"
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_file(recipe)
    message = str(info.value)
    assert message.startswith(f"{recipe} is not a checkpoint: it is a YAML config; pass configs with --config")
    assert "(101)" not in message and "download" not in message
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(CheckpointError, match=r"is not a checkpoint: it is a text file$"):
        ckpt.read_checkpoint(notes)  # the engine's read path says the same
    assert main(["test", "--checkpoint", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "it is a YAML config; pass configs with --config" in err and "(101)" not in err


def test_damaged_real_checkpoint_keeps_its_damaged_message(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(4096)}}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_file(cut)
    message = str(info.value)
    assert "the file is damaged (corrupt or truncated" in message and message.endswith("download or copy it again")
    assert "If you are seeing this error" not in message  # torch's five-sentence zip error is cut to its first
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a checkpoint: it is an empty file"):
        read_checkpoint_file(empty)


# ------------------------------------------------------------------------------------------------- TensorBoard extra
def test_tensorboard_is_an_extra_and_its_absence_is_one_clear_line(tmp_path, monkeypatch, caplog):
    from pmv.engine.tracking import RunTracker

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("tensorboard") for req in extras["tensorboard"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it raises ImportError
    with caplog.at_level(logging.INFO, logger="pmv"):
        tracker = RunTracker(tmp_path, tensorboard=True, log_file=None)
        tracker.close()
    lines = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert lines == ["TensorBoard scalars are off: the tensorboard package is not installed; "
                     "pip install 'pmv[tensorboard]' (or set train.tensorboard=false)"]
