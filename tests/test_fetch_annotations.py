"""`pmv data fetch-annotations` against a real 127.0.0.1 server and local folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from shared_data import PMV400_DIR
from fault_server import FaultServer

from pmv.cli.main import main
from pmv.acquire.fetch import DEFAULT_PATHS, Expectations, fetch_annotations
from pmv.errors import DataError

SHARED = PMV400_DIR
SMALL = Expectations(rows={"train": 6, "val": 3, "test": 3}, num_classes=3)
SMALL_FLAGS = ["--expect-rows", "train=6", "--expect-rows", "val=3", "--expect-rows", "test=3", "--expect-classes", "3"]


def _write_repo(root: Path, files: dict[str, str]) -> Path:
    """Lay ``files`` (output name -> text) out like the authors' repository."""
    for name, text in files.items():
        target = root / DEFAULT_PATHS[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def _small_set() -> dict[str, str]:
    train = "\n".join(f"t{k:02d}.mp4,{k % 3}" for k in range(6))  # no trailing newline, like the real files
    val = "\n".join(f"v{k:02d}.mp4,{k}" for k in range(3))
    return {
        "train_pmv400.csv": train,
        "val_pmv400.csv": val,
        "test_pmv400.csv": val,
        "class_name_mapping.csv": "applying lip glaze,0\nplaying flute ,1\nnoodling (fish),2",
    }


def test_small_set_over_http_writes_all_files(tmp_path):
    repo = _write_repo(tmp_path / "repo", _small_set())
    out = tmp_path / "out"
    with FaultServer() as server:
        server.serve_tree(repo)
        summary = fetch_annotations(out, server.url("/"), expect=SMALL)
    assert summary.rows == {"train": 6, "val": 3, "test": 3}
    for name in DEFAULT_PATHS:
        assert (out / name).read_bytes() == (repo / DEFAULT_PATHS[name]).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(DEFAULT_PATHS)  # no temp folder left behind


@pytest.mark.parametrize(
    "damage, message",
    [
        (("train_pmv400.csv", "t00.mp4,0\nt01.mp4,1"), "has 2 rows, expected 6"),
        (("val_pmv400.csv", "t00.mp4,0\nv01.mp4,1\nv02.mp4,2"), "both train and val"),
        (("val_pmv400.csv", "v00.mp4,0\nv01.mp4,7\nv02.mp4,2"), "label 7"),
        (("class_name_mapping.csv", "a,0\nb,1\nc,5"), "expected ids 0..2"),
        (("test_pmv400.csv", "<!DOCTYPE html><html>rate limited</html>"), "HTML page"),
        (("train_pmv400.csv", "t00.mp4;0\n" * 6), "is not '<video file>,<label>'"),
    ],
)
def test_a_bad_file_writes_nothing(tmp_path, damage, message):
    files = _small_set()
    files[damage[0]] = damage[1]
    repo = _write_repo(tmp_path / "repo", files)
    out = tmp_path / "out"
    out.mkdir()
    (out / "val_pmv400.csv").write_text("old content")
    with pytest.raises(DataError, match=message):
        fetch_annotations(out, str(repo), expect=SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["val_pmv400.csv"]
    assert (out / "val_pmv400.csv").read_text() == "old content"


def test_http_error_names_the_url(tmp_path):
    repo = _write_repo(tmp_path / "repo", _small_set())
    (repo / DEFAULT_PATHS["class_name_mapping.csv"]).unlink()
    with FaultServer() as server:
        server.serve_tree(repo)
        with pytest.raises(DataError, match=r"class_name_mapping.csv: HTTP 404"):
            fetch_annotations(tmp_path / "out", server.url("/"), expect=SMALL)
    assert not (tmp_path / "out" / "train_pmv400.csv").exists()


def test_cli_file_url_and_per_file_path_override(tmp_path, capsys):
    files = _small_set()
    repo = _write_repo(tmp_path / "repo", files)
    moved = tmp_path / "elsewhere" / "classes.csv"
    moved.parent.mkdir()
    shutil.move(repo / DEFAULT_PATHS["class_name_mapping.csv"], moved)
    out = tmp_path / "out"
    argv = ["data", "fetch-annotations", "--out", str(out), "--base-url", repo.as_uri(), "--classes-path", str(moved)]
    assert main(argv + SMALL_FLAGS) == 0
    assert "verified 3 classes" in capsys.readouterr().out
    assert (out / "class_name_mapping.csv").read_text() == files["class_name_mapping.csv"]
    # Without the small-set expectations the PMV-400 sizes apply, and the CLI reports a clean error.
    argv = ["data", "fetch-annotations", "--out", str(tmp_path / "o2"), "--base-url", str(repo), "--classes-path", str(moved)]
    assert main(argv) == 2
    assert "has 3 classes, expected ids 0..399" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real PMV-400 lists are not on this machine")
def test_real_pmv400_lists_from_a_local_server(tmp_path):
    repo = tmp_path / "repo"
    for name, relative in DEFAULT_PATHS.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED / name, repo / relative)
    with FaultServer() as server:
        server.serve_tree(repo)
        summary = fetch_annotations(tmp_path / "out", server.url("/"))
    assert summary.rows == {"train": 56452, "val": 19995, "test": 19995}
    assert summary.num_classes == 400
    for name in DEFAULT_PATHS:
        assert (tmp_path / "out" / name).read_bytes() == (SHARED / name).read_bytes()
