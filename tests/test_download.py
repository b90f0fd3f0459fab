"""`pmv download` against a real, misbehaving HTTP server on 127.0.0.1, and real killed subprocesses."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from fault_server import Drip, FaultServer, Reset, Serve, Status, Truncate, per_path_counts
from media import make_video

from pmv.acquire.download import (
    DownloadOptions,
    HostRateLimiter,
    LinkItem,
    Manifest,
    backoff_delay,
    download_videos,
    import_mirror,
    parse_retry_after,
    read_links,
    video_id_from_url,
)
from pmv.cli.main import main
from pmv.errors import DataError

FAST = dict(workers=4, timeout=5.0, attempts=3, backoff=0.05, backoff_max=0.2, retry_after_max=1.0, progress=False)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[bytes]:
    """Distinct real mp4 files just over the default 20 KiB minimum (noise content compresses poorly)."""
    folder = tmp_path_factory.mktemp("videos")
    out = []
    for k in range(8):
        path = make_video(folder / f"v{k}.mp4", num_frames=24 + k, height=128, width=72, index_in_pixels=False)
        out.append(path.read_bytes())
    assert all(len(data) > 20 * 1024 for data in out)
    return out


def _failed_rows(out: Path) -> dict[str, str]:
    with open(out / "failed.csv", newline="") as handle:
        return {row["id"]: row["reason"] for row in csv.DictReader(handle)}


def _manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_backoff_grows_with_jitter_and_a_cap():
    delays = [backoff_delay(attempt, 1.0, 10.0) for attempt in (1, 2, 3, 4, 5, 6)]
    for attempt, delay in zip((1, 2, 3, 4, 5, 6), delays):
        ceiling = min(10.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_rate_limiter_spaces_starts_per_host():
    now = [100.0]
    limiter = HostRateLimiter(rate=10, clock=lambda: now[0])
    assert [round(limiter.reserve("a"), 6) for _ in range(3)] == [0.0, 0.1, 0.2]
    assert limiter.reserve("b") == 0.0  # another host is not slowed down
    now[0] += 1.0
    assert limiter.reserve("a") == 0.0
    assert HostRateLimiter(rate=0).reserve("a") == 0.0


def test_read_links_formats(tmp_path):
    authors = tmp_path / "video_links.csv"
    authors.write_text("video_link\nhttps://cdn.example/play/?video_id=abc123&line=0&vid=v0200fg10000ccta8jrc77u7sv784eeg\n"
                       "https://cdn.example/play/?vid=v0300fg10000c9j57arc77u8pj9jj46g\n")
    assert [item.id for item in read_links(authors)] == ["v0200fg10000ccta8jrc77u7sv784eeg", "v0300fg10000c9j57arc77u8pj9jj46g"]
    pmv_list = tmp_path / "train_pmv400.csv"
    pmv_list.write_text("aaa.mp4,0\nbbb.mp4,3\naaa.mp4,0")
    items = read_links(pmv_list, "https://mirror/x/{id}.mp4")
    assert items == [LinkItem("aaa", "https://mirror/x/aaa.mp4"), LinkItem("bbb", "https://mirror/x/bbb.mp4")]
    failed = tmp_path / "failed.csv"
    failed.write_text("id,url,reason\nxyz,https://h/get?v=xyz,HTTP 502\n")
    assert read_links(failed) == [LinkItem("xyz", "https://h/get?v=xyz")]
    with pytest.raises(DataError, match="--url-template"):
        read_links(pmv_list)
    assert video_id_from_url("https://h/a/b/clip.mp4") == "clip"


def test_faults_end_in_good_files_or_failed_csv(tmp_path, videos):
    out = tmp_path / "out"
    html = b"<!DOCTYPE html><html>" + b"x" * 30000 + b"</html>"
    half = len(videos[3]) // 2
    with FaultServer() as server:
        scripts = {
            "good": [Serve(videos[0])],
            "retry_after": [Status(503, retry_after="1"), Serve(videos[1])],
            "retry_after_date": [Status(503, retry_after=format_datetime(datetime.now(timezone.utc), usegmt=True)), Serve(videos[7])],
            "retry_after_capped": [Status(429, retry_after="3600"), Serve(videos[0])],  # an hour, capped to 1 s
            "backoff": [Status(502), Status(502), Serve(videos[2], content_type="application/octet-stream")],
            "truncated": [Truncate(videos[3], after=half), Serve(videos[3])],
            "reset": [Reset(videos[4], after=half), Serve(videos[4])],
            "no_range": [Truncate(videos[5], after=half), Serve(videos[5], ranges="ignore")],
            "wrong_range": [Truncate(videos[6], after=half), Serve(videos[6], ranges="wrong")],
            "missing": [Status(404)],
            "always_503": [Status(503)],
            "wrong_type": [Serve(videos[0], content_type="text/plain")],
            "tiny": [Serve(os.urandom(10 * 1024))],
            "html_200": [Serve(html, content_type="text/html; charset=utf-8")],
            "not_video": [Serve(os.urandom(40 * 1024), content_type="application/octet-stream")],
        }
        links = tmp_path / "links.csv"
        links.write_text("".join(server.route(f"/v/{name}.mp4", *steps) + "\n" for name, steps in scripts.items()))
        summary = download_videos(read_links(links), out, DownloadOptions(**FAST))

        expected = {"good": 0, "retry_after_capped": 0, "retry_after": 1, "retry_after_date": 7, "backoff": 2, "truncated": 3, "reset": 4, "no_range": 5, "wrong_range": 6}
        assert summary.ok == len(expected) and summary.failed == 6
        for name, index in expected.items():
            assert (out / f"{name}.mp4").read_bytes() == videos[index], name
        assert server.ranges("/v/truncated.mp4") == [None, f"bytes={half}-"]  # resumed, not restarted
        assert server.ranges("/v/wrong_range.mp4")[-1] is None  # a bad 206 makes it start over
        failed = _failed_rows(out)
        assert set(failed) == {"missing", "always_503", "wrong_type", "tiny", "html_200", "not_video"}
        assert "HTTP 404" in failed["missing"]
        assert "HTTP 503" in failed["always_503"] and "after 3 attempts" in failed["always_503"]
        assert "content type text/plain" in failed["wrong_type"]
        assert "too small" in failed["tiny"]
        assert "content type text/html" in failed["html_200"]
        assert "not a playable video" in failed["not_video"]
        counts = per_path_counts(server)
        assert counts["/v/missing.mp4"] == 1 and counts["/v/always_503.mp4"] == 3
        assert not list(out.glob("*.part")) and not (out / "tiny.mp4").exists()

        records = {r["id"]: r for r in _manifest_lines(out)}
        for name, index in expected.items():
            assert records[name]["status"] == "ok"
            assert records[name]["sha256"] == hashlib.sha256(videos[index]).hexdigest()
            assert records[name]["bytes"] == len(videos[index])
        assert records["backoff"]["attempts"] == 3

        # A re-run fetches none of the finished files again and retries only the failures.
        again = download_videos(read_links(out / "failed.csv"), out, DownloadOptions(**FAST))
        assert again.ok == 0 and again.failed == 6
        rerun = download_videos(read_links(links), out, DownloadOptions(**FAST))
        assert rerun.skipped == len(expected)
        after = per_path_counts(server)
        for name in expected:
            assert after[f"/v/{name}.mp4"] == counts[f"/v/{name}.mp4"], name


def test_slow_drip_times_out_and_fails(tmp_path, videos):
    with FaultServer() as server:
        url = server.route("/drip.mp4", Drip(videos[0], chunk=2048, delay=0.6, seconds=1.2))
        options = DownloadOptions(**{**FAST, "timeout": 0.3, "attempts": 2})
        summary = download_videos([LinkItem("drip", url)], tmp_path, options)
    assert summary.failed == 1
    assert "timed out" in _failed_rows(tmp_path)["drip"]
    assert not (tmp_path / "drip.mp4").exists()


def _start_download(links: Path, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "pmv", "download", str(links), "--out", str(out), "--workers", "2", "--no-progress", "--timeout", "10"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_manifest(out: Path, lines: int, process: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        manifest = out / "manifest.jsonl"
        if manifest.exists() and manifest.read_text().count("\n") >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"the downloader did not record {lines} videos: {process.poll()}")


def _assert_no_partial_under_a_final_name(out: Path, files: dict[str, bytes]) -> None:
    for path in out.glob("*.mp4"):
        assert path.read_bytes() == files[path.stem], f"{path.name} is not complete"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_run_resumes_without_refetching(tmp_path, videos, sig):
    files = {f"k{k}": videos[k] for k in range(6)}
    out = tmp_path / "out"
    with FaultServer() as server:
        links = tmp_path / "links.csv"
        # Each body stalls half-way for a moment, so the kill lands while downloads are in flight.
        links.write_text("".join(server.route(f"/{name}.mp4", Serve(data, pause=0.4)) + "\n" for name, data in files.items()))
        process = _start_download(links, out)
        try:
            _wait_for_manifest(out, 2, process)
            process.send_signal(sig)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if sig == signal.SIGINT:
            assert process.returncode == 130, output
            assert "interrupted" in output
        first_counts = per_path_counts(server)
        _assert_no_partial_under_a_final_name(out, files)
        finished = {r["id"] for r in Manifest.load(out / "manifest.jsonl").values() if r["status"] == "ok"}
        assert len(finished) >= 2

        resumed = subprocess.run(
            [sys.executable, "-m", "pmv", "download", str(links), "--out", str(out), "--no-progress"],
            capture_output=True, text=True, timeout=120,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        for name, data in files.items():
            assert (out / f"{name}.mp4").read_bytes() == data
        counts = per_path_counts(server)
        for name in finished:
            assert counts[f"/{name}.mp4"] == first_counts[f"/{name}.mp4"] == 1, name
        assert not list(out.glob("*.part"))
        assert {r["id"] for r in Manifest.load(out / "manifest.jsonl").values() if r["status"] == "ok"} == set(files)


def test_import_mirror_verifies_and_links(tmp_path, videos):
    mirror = tmp_path / "mirror"
    (mirror / "part1").mkdir(parents=True)
    (mirror / "part1" / "a.mp4").write_bytes(videos[0])
    (mirror / "b.mp4").write_bytes(videos[1])
    (mirror / "broken.mp4").write_bytes(videos[2][: len(videos[2]) // 3])
    links = tmp_path / "ids.csv"
    links.write_text("a.mp4,0\nb.mp4,1\nbroken.mp4,2\nabsent.mp4,3\n")
    out = tmp_path / "videos"
    summary = import_mirror(mirror, out, read_links(links, "https://unused/{id}.mp4"), link=True, progress=False, min_bytes=1024)
    assert (summary.ok, summary.failed) == (2, 2)
    assert (out / "a.mp4").read_bytes() == videos[0]
    assert os.stat(out / "a.mp4").st_ino == os.stat(mirror / "part1" / "a.mp4").st_ino  # hard-linked
    failed = _failed_rows(out)
    assert "not a playable video" in failed["broken"] and "not found in the mirror" in failed["absent"]
    assert not (out / "broken.mp4").exists() and not list(out.glob("*.part"))
    records = Manifest.load(out / "manifest.jsonl")
    assert records["b"]["sha256"] == hashlib.sha256(videos[1]).hexdigest()
    # Importing again does nothing new for the finished ones.
    again = import_mirror(mirror, out, None, progress=False, min_bytes=1024)
    assert again.skipped == 2 and again.failed == 1  # everything found: a, b skipped, broken fails again


def test_cli_imports_a_mirror_and_reports_usage_errors(tmp_path, videos, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m0.mp4").write_bytes(videos[0])
    (mirror / "m1.mp4").write_bytes(videos[1])
    out = tmp_path / "out"
    assert main(["download", "--from-dir", str(mirror), "--out", str(out), "--no-progress"]) == 0
    assert "2 fetched" in capsys.readouterr().out
    assert (out / "m1.mp4").read_bytes() == videos[1]
    assert main(["download", "--out", str(out)]) == 2
    assert "give a LINKS file" in capsys.readouterr().err
