"""Predict benchmark: is `pmv predict` / `pmv serve` as fast as its parts? Measured in one process.

    .venv/bin/python benchmarks/predict.py                  # CPU (a few minutes on 2 busy cores)
    .venv/bin/python benchmarks/predict.py --device cuda    # the same on a GPU
    .venv/bin/python benchmarks/predict.py --quick          # a short video, fewer repeats

A 10 s 720x1280 (W x H) portrait H.264 video (camera-like content, 30 fps, GOP 250, B-frames) is generated. X3D-M
(400 classes, the PMV-400 recipe's test protocol: short side and crop from configs/pmv400/x3d_m/default.yaml) with
random weights (speed does not depend on them) predicts it with 1x3 and 5x3 views (temporal x spatial, crops along
the long side). For each: seconds to decode the views alone, to run the model on them alone, and for a whole
``Predictor.predict`` (the goal: total within 1.2x of decode + model, i.e. no overhead). Then the HTTP server
(``pmv serve``'s app under uvicorn on 127.0.0.1) answers requests one at a time and from 4 concurrent clients.
Prints markdown tables; the median of the repeats is shown.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test-media maker writes the benchmark video

from media import make_video  # noqa: E402

from pmv.config import load_config  # noqa: E402
from pmv.engine.predictor import InputSpec, Predictor  # noqa: E402
from pmv.models.registry import create_model  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def measure_views(predictor: Predictor, video: str, views: str, repeats: int) -> dict:
    """Decode alone, model alone and the whole predict, taken in turn in each repeat (so a change in the machine's
    load affects all three alike); medians."""
    decoder = predictor.decoder(views)
    predictor.predict(video, views=views)  # warm-up at these batch shapes (oneDNN/cuDNN pick kernels on first use)
    times: dict[str, list[float]] = {"decode": [], "model": [], "total": []}
    clips = 0
    for _ in range(repeats):
        decode_s, decoded = timed(lambda: decoder(video), 1)
        if decoded.error:
            raise SystemExit(f"cannot decode {video}: {decoded.error}")

        def model_only():
            logits = predictor.view_logits(decoded.clips)
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()
            return logits

        model_s, _ = timed(model_only, 1)
        total_s, result = timed(lambda: predictor.predict(video, views=views), 1)
        assert result.ok, result.error
        for key, value in (("decode", decode_s), ("model", model_s), ("total", total_s)):
            times[key].append(value)
        clips = decoded.clips.shape[0]
    return {"views": views, "clips": clips, **{key: statistics.median(v) for key, v in times.items()}}


# ------------------------------------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, data: bytes, views: str) -> int:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="views"\r\n\r\n{views}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n'
            f"Content-Type: video/mp4\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/predict", body=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def measure_server(predictor: Predictor, video: str, views: str, requests: int, clients: int, tmp: str) -> dict:
    import uvicorn

    from pmv.serve.app import ServeOptions, create_app

    port = _free_port()
    app = create_app(predictor, ServeOptions(queue_size=clients, tmp_dir=tmp, timeout_s=600))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark server did not start")
        time.sleep(0.05)
    data = Path(video).read_bytes()
    try:
        assert _post(port, data, views) == 200  # warm-up
        started = time.perf_counter()
        statuses = [_post(port, data, views) for _ in range(requests)]
        serial_s = time.perf_counter() - started
        assert statuses == [200] * requests, statuses

        results: list[int] = []
        lock = threading.Lock()
        per_client = requests // clients

        def client():
            for _ in range(per_client):
                status = _post(port, data, views)
                with lock:
                    results.append(status)

        workers = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=3600)
        concurrent_s = time.perf_counter() - started
        assert results == [200] * (per_client * clients), results
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return {"serial_rps": requests / serial_s, "concurrent_rps": per_client * clients / concurrent_s,
            "requests": requests, "clients": clients}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--quick", action="store_true", help="a 4 s video and fewer repeats")
    parser.add_argument("--repeats", type=int, help="timings per measurement (median shown; default 3, quick 1)")
    parser.add_argument("--requests", type=int, help="server requests per mode (default 8, quick 4)")
    parser.add_argument("--recipe", default=str(ROOT / "configs/pmv400/x3d_m/default.yaml"))
    parser.add_argument("--keep", metavar="DIR", help="write the video here and reuse it on later runs")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    requests = args.requests or (4 if args.quick else 8)
    frames = 120 if args.quick else 300

    config = load_config(args.recipe)
    spec = InputSpec.from_config(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, num_classes=400, input_size=spec.input_size)
    predictor = Predictor(model, spec, [f"class {i}" for i in range(400)], device=args.device,
                          precision=args.precision, model_name=config.model.name)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.keep or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        video = workdir / f"phone_720x1280_{frames}f.mp4"
        began = time.perf_counter()
        if not video.exists():
            partial = video.with_suffix(".partial.mp4")
            make_video(partial, num_frames=frames, height=1280, width=720, fps=30, gop=250, bframes=3,
                       index_in_pixels=False, crf=23)
            os.replace(partial, video)
        made = time.perf_counter() - began
        predictor.predict(str(video), views="1x1")  # warm-up (frame index cache, allocator)
        rows = [measure_views(predictor, str(video), views, repeats) for views in ("1x3", "5x3")]
        load = os.getloadavg()[0]
        server = measure_server(predictor, str(video), "1x3", requests, 4, str(workdir))

    device = torch.cuda.get_device_name(0) if predictor.device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"\n## Predict: X3D-M, {spec.num_frames} frames x {spec.crop[0]}x{spec.crop[1]}, test short side "
          f"{spec.short_side}, on {device} ({predictor.precision}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print(f"Video: 720x1280 (W x H) H.264, {frames / 30:.0f} s at 30 fps, GOP 250, 3 B-frames "
          f"({video.name}, made in {made:.0f} s). Load average {load:.1f}. Median of {repeats}.\n")
    print("| views | clips | decode s | model s | decode + model s | total s | total / (decode + model) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        parts = row["decode"] + row["model"]
        print(f"| {row['views']} | {row['clips']} | {row['decode']:.2f} | {row['model']:.2f} | {parts:.2f} "
              f"| {row['total']:.2f} | {row['total'] / parts:.2f}x |")
    print(f"\n## Server: `POST /v1/predict` with 1x3 views, {server['requests']} requests\n")
    print("| mode | requests/s | vs one at a time |")
    print("|---|---:|---:|")
    print(f"| one at a time | {server['serial_rps']:.3f} | 1.00x |")
    print(f"| {server['clients']} concurrent clients | {server['concurrent_rps']:.3f} | "
          f"{server['concurrent_rps'] / server['serial_rps']:.2f}x |")
    worst = max(row["total"] / (row["decode"] + row["model"]) for row in rows)
    print(f"\nGoal total within 1.2x of decode + model: {'met' if worst <= 1.2 else 'NOT met'} (worst {worst:.2f}x).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
