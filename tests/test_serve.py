"""`pmv serve` against a real server process on 127.0.0.1: uploads good and bad, limits, concurrency, the pages and
the taxonomy API. Every loop here is bounded."""

import argparse
import base64
import json
import threading
import time
from pathlib import Path

import pytest

from inference_helpers import trained_run
from media import truncate
from serve_helpers import ServerProcess

MAX_UPLOAD = 256 * 1024


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    uploads = folder / "uploads"
    process = ServerProcess(["--checkpoint", str(run.checkpoint), "--device", "cpu", "--tmp-dir", str(uploads),
                             "--max-upload-mb", str(MAX_UPLOAD / (1 << 20)), "--queue", "3", "--timeout", "60",
                             "--lists", str(run.list_dir), "--report", str(run.report_dir)], folder / "server.log")
    try:
        process.wait_ready()
        process.uploads = uploads
        yield process
    finally:
        process.stop()


def test_good_upload_gets_top_k_class_names_and_crops(server, run):
    video = sorted(run.data_root.glob("test_*.mp4"))[0]
    status, _, body = server.upload(video.read_bytes(), "phone.mp4", fields={"views": "1x3", "frame": "1"},
                                    query="?top_k=3")
    assert status == 200, body
    assert body["path"] == "phone.mp4" and body["views"] == "1x3" and body["model"] == "tiny"
    assert len(body["top_k"]) == 3 and all(hit["name"] in run.class_names for hit in body["top_k"])
    assert sum(hit["prob"] for hit in body["top_k"]) <= 1.0 + 1e-6
    assert [c["name"] for c in body["crops"]] == ["top", "centre", "bottom"]
    assert all(c["top1"]["name"] in run.class_names for c in body["crops"])
    assert body["video"]["orientation"] == "portrait"
    assert body["frame"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["frame"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_uploads_get_the_right_status_and_a_reason(server, run, tmp_path):
    video = sorted(run.data_root.glob("test_*.mp4"))[0]
    cut = truncate(video, tmp_path / "cut.mp4", keep_fraction=0.5).read_bytes()  # the index (moov) is cut off
    cases = [
        (b"just some text, not a video\n", "notes.txt", 415, "not a video"),
        (b"", "empty.mp4", 415, "not a video"),
        (cut, "cut.mp4", 422, "damaged video"),
        (b"\0" * (MAX_UPLOAD + 1000), "big.mp4", 413, "upload too large"),
    ]
    for data, name, expected_status, error in cases:
        status, _, body = server.upload(data, name)
        assert (status, body["error"]) == (expected_status, error), (name, body)
        assert body["detail"], name
        assert "pmv-upload-" not in body["detail"]  # the reason names the upload, not the server's temporary file
    assert "empty" in server.upload(b"", "empty.mp4")[2]["detail"]
    status, _, body = server.upload(b"\0" * (MAX_UPLOAD * 2), "stream.mp4", chunked=True)  # no Content-Length
    assert status == 413 and body["error"] == "upload too large"
    status, _, body = server.upload(video.read_bytes(), fields={"views": "2x2"})
    assert status == 422 and "1 or 3 spatial" in body["detail"]
    status, _, body = server.upload(video.read_bytes(), query="?top_k=99")
    assert status == 422 and "top_k" in body["detail"]
    status, _, raw = server.request("POST", "/v1/predict", body=b"x=1",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 422 and json.loads(raw)["error"] == "no file"


def test_sixteen_concurrent_clients_are_answered_or_told_busy(server, run):
    data = sorted(run.data_root.glob("test_*.mp4"))[1].read_bytes()
    answers: list = [None] * 16

    def client(i):
        try:
            answers[i] = server.upload(data, f"c{i}.mp4", fields={"views": "2x3"}, timeout=120)
        except Exception as err:  # noqa: BLE001 - recorded and reported below
            answers[i] = err

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    statuses = []
    for answer in answers:
        assert isinstance(answer, tuple), answer
        status, headers, body = answer
        statuses.append(status)
        if status == 503:
            assert body["error"] == "busy" and int(headers["retry-after"]) > 0
        else:
            assert status == 200 and body["top_k"], body
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}
    # afterwards: healthy, nothing admitted, no upload left behind
    status, health = server.get_json("/v1/health")
    assert status == 200 and health["status"] == "ok" and health["admitted"] == 0
    assert list(server.uploads.iterdir()) == []


def test_model_docs_pages_and_taxonomy(server, run):
    status, model = server.get_json("/v1/model")
    assert status == 200 and model["name"] == "tiny" and model["classes"] == run.class_names
    assert model["input"] == {"frames": 4, "height": 48, "width": 36, "sampling_rate": 2, "short_side": 36,
                              "mean": [0.45] * 3, "std": [0.225] * 3}
    assert model["views"] == "2x3" and model["limits"]["max_upload_bytes"] == MAX_UPLOAD
    status, _, docs = server.request("GET", "/docs")
    assert status == 200 and b"swagger" in docs.lower()
    status, spec = server.get_json("/openapi.json")
    assert {"/v1/predict", "/v1/health", "/v1/model", "/v1/classes"} <= set(spec["paths"])
    form = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["format"] == "binary" and form["required"] == ["file"]
    status, _, page = server.request("GET", "/")
    assert status == 200 and b'type="file"' in page and b"predict.js" in page
    status, _, script = server.request("GET", "/static/predict.js")
    assert status == 200 and b"/v1/predict" in script
    status, _, page = server.request("GET", "/taxonomy")
    assert status == 200 and b'id="search"' in page

    status, classes = server.get_json("/v1/classes")
    assert status == 200 and classes["splits"] == ["train", "val", "test"] and classes["has_accuracy"]
    assert [c["name"] for c in classes["classes"]] == run.class_names
    assert all(c["counts"] == {"train": 3, "val": 1, "test": 2} for c in classes["classes"])
    report = {row["class_name"]: float(row["top1"]) for row in _per_class(run.report_dir)}
    assert {c["name"]: c["top1"] for c in classes["classes"]} == report
    right = wrong = 0
    for cls in classes["classes"]:
        status, detail = server.get_json(f"/v1/classes/{cls['label']}")
        assert status == 200 and len(detail["right"]) + len(detail["wrong"]) == 2
        assert len(detail["right"]) / 2 * 100 == pytest.approx(cls["top1"])
        right += len(detail["right"])
        wrong += len(detail["wrong"])
        for item in detail["right"] + detail["wrong"]:
            status, headers, data = server.request("GET", item["url"])
            assert status == 200 and data[4:8] == b"ftyp"
    assert right + wrong == 8
    assert server.get_json("/v1/classes/99")[0] == 404
    assert server.request("GET", "/v1/report/videos/99")[0] == 404


def _per_class(report_dir: Path):
    import csv

    with open(next(report_dir.glob("per_class_*.csv")), newline="") as handle:
        return list(csv.DictReader(handle))


def test_binds_to_localhost_by_default():
    from pmv.cli import serve

    parser = argparse.ArgumentParser()
    serve.configure(parser)
    args = parser.parse_args(["--checkpoint", "x.pt"])
    assert args.host == "127.0.0.1" and args.port == 8000


def test_a_request_over_the_timeout_gets_504_and_its_slot_and_upload_are_freed(run, tmp_path):
    uploads = tmp_path / "uploads"
    process = ServerProcess(["--checkpoint", str(run.checkpoint), "--device", "cpu", "--tmp-dir", str(uploads),
                             "--queue", "1", "--timeout", "0.001"], tmp_path / "server.log")
    try:
        process.wait_ready()
        data = sorted(run.data_root.glob("test_*.mp4"))[0].read_bytes()
        status, _, body = process.upload(data, "slow.mp4", fields={"views": "3x3"})
        assert status == 504 and body["error"] == "timeout" and "0.001" in body["detail"]
        for _ in range(200):  # bounded: the decode/model job finishes on its own, then frees the slot
            health = process.get_json("/v1/health")[1]
            if health["admitted"] == 0 and not list(uploads.iterdir()):
                break
            time.sleep(0.05)
        assert health["admitted"] == 0 and list(uploads.iterdir()) == []
    finally:
        process.stop()
