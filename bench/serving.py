"""The same detector, the same frames: zooserve over HTTP vs LitServe vs a bare FastAPI endpoint.

Three servers on 127.0.0.1, each a subprocess serving detection of ONE image per request:

- **zooserve**: a real `zooserve serve` (POST /api/detect), dynamic batching across requests
  (`options.max_batch_size` 8, adaptive: a batch starts as soon as the model is free);
- **litserve**: a LitServe server (POST /predict) with its own batching on
  (`max_batch_size` 8, `batch_timeout` 10 ms: LitServe's usual settings);
- **fastapi**: a plain FastAPI (uvicorn) endpoint around the bare model, no batching.

All three run the same model code path: the zooserve family adapter's `detect`
(`zooserve.families.yolo.YoloDetector`), so only the serving layer differs. Every request is the
same JSON body naming the same image file (scikit-image's astronaut, 512x512 PNG) in a media
folder; every server reads and decodes it per request, and answers boxes as JSON.

The detector is ultralytics YOLO11n at its released size (the yolo11n.yaml architecture, 2.6M
parameters, 80 classes; random weights with recalibrated BatchNorm, built offline), run at
`imgsz` 320 so that a 2-core CPU serves a few hundred requests in a couple of minutes.

Per server and concurrency (1, 8, 32 clients in a closed loop): frames/s and p50/p99 latency,
printed as a markdown table; then "batching": zooserve's frames/s at concurrency 8 with
`max_batch_size` 8 ÷ with `max_batch_size` 1 (a second zooserve server).

LitServe is a benchmark peer only, not a zooserve dependency; install it into the venv first:

    .venv/bin/pip install litserve
    .venv/bin/python bench/serving.py                              # ~3-4 minutes on 2 cores
    .venv/bin/python bench/serving.py --requests 32 --json out/serving.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skimage.data
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.api import subprocess_server

SERVERS = ("zooserve", "litserve", "fastapi")
CONCURRENCY = (1, 8, 32)
MAX_BATCH_SIZE = 8
LITSERVE_BATCH_TIMEOUT_S = 0.01
ARCHITECTURE = "yolo11n.yaml"
IMGSZ = 320
IMAGE = "astronaut.png"
THRESHOLD = 0.3
#: Each server's detect route.
ROUTES = {"zooserve": "/api/detect", "litserve": "/predict", "fastapi": "/detect"}
LITSERVE_HINT = (
    "bench/serving.py compares against LitServe, a benchmark peer only: "
    "install it with `.venv/bin/pip install litserve` (or pass --servers zooserve fastapi)"
)
SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_OFFLINE": "1",
}


# --- the model and the media ------------------------------------------------------------------


def build_detector(path: Path, architecture: str = ARCHITECTURE) -> Path:
    """Save a seeded ultralytics checkpoint of `architecture` at its released size to `path`."""
    from ultralytics import YOLO

    from tests.tiny.yolo import _calibrate_batch_norm

    torch.manual_seed(0)
    yolo = YOLO(architecture)
    model: Any = yolo.model  # a DetectionModel once built from the yaml
    _calibrate_batch_norm(model)  # random weights that still respond to the image
    for branch in model.model[-1].cv3:  # spread the class scores (see tests/tiny/yolo.py)
        torch.nn.init.normal_(branch[-1].bias, mean=-5.0, std=0.5)
    model.args = {"task": yolo.task}
    model.task = yolo.task
    path.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(path)
    return path


def write_media(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.astronaut()).save(directory / IMAGE)
    return directory


def model_entry(checkpoint: Path, max_batch_size: int, imgsz: int = IMGSZ) -> dict[str, Any]:
    return {
        "model_id": str(checkpoint),
        "family": "yolo",
        "options": {"imgsz": imgsz, "max_batch_size": max_batch_size, "concurrency": 1},
    }


def zooserve_config(
    base: Path, checkpoint: Path, media: Path, max_batch_size: int, imgsz: int = IMGSZ
) -> Path:
    config = {
        "device": "cpu",
        "media_root": str(media),
        "jobs_db": str(base / f"jobs-{max_batch_size}.sqlite3"),
        "tasks": {"object_detection": {"selected": "detector", "options": ["detector"]}},
        "models": {"detector": model_entry(checkpoint, max_batch_size, imgsz)},
    }
    path = base / f"zooserve-batch{max_batch_size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- the peers: the same adapter behind LitServe and behind bare FastAPI ------------------------


def load_adapter(checkpoint: Path, imgsz: int) -> Any:
    """The zooserve YOLO adapter, loaded as the zooserve manager would (CPU)."""
    from zooserve.catalog import ModelSpec
    from zooserve.families import adapter_class

    spec = ModelSpec(name="detector", **model_entry(checkpoint, MAX_BATCH_SIZE, imgsz))
    adapter = adapter_class("yolo")(spec, str(checkpoint), "cpu")
    adapter.load()
    return adapter


def read_image(media: Path, body: dict[str, Any]) -> np.ndarray:
    """The request's image as RGB (H, W, 3) uint8, decoded per request as zooserve does."""
    path = (media / str(body["video_path"])).resolve()
    if media.resolve() not in path.parents:
        raise ValueError("path outside the media folder")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def to_json(detections: Any) -> dict[str, Any]:
    names = detections.data.get("class_name", [""] * len(detections))
    return {
        "detections": [
            {
                "label": str(label),
                "confidence": float(score),
                "bbox": dict(zip(("x1", "y1", "x2", "y2"), map(float, box), strict=True)),
            }
            for box, score, label in zip(detections.xyxy, detections.confidence, names, strict=True)
        ]
    }


def serve_fastapi(checkpoint: Path, media: Path, port: int, imgsz: int) -> None:
    """A sync FastAPI route calling the adapter per request (threadpool; the adapter's lock)."""
    import uvicorn
    from fastapi import FastAPI

    adapter = load_adapter(checkpoint, imgsz)
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/detect")
    def detect(body: dict[str, Any]) -> dict[str, Any]:
        image = read_image(media, body)
        (found,) = adapter.detect([image], None, body["confidence_threshold"])
        return to_json(found)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


try:  # a benchmark peer only: the bench says how to install it when it is missing
    import litserve as ls
except ImportError:
    ls = None

if ls is not None:

    class DetectAPI(ls.LitAPI):
        """LitServe's contract (setup / decode_request / predict / encode_response) over the
        zooserve adapter; module-level because LitServe pickles it into its worker process."""

        def __init__(self, checkpoint: Path, media: Path, imgsz: int, **batching: Any) -> None:
            super().__init__(**batching)
            self.checkpoint, self.media, self.imgsz = checkpoint, media, imgsz

        def setup(self, device: str) -> None:
            self.adapter = load_adapter(self.checkpoint, self.imgsz)

        # Unannotated: LitServe reads the annotation to pick the body type, and the string
        # annotations of `from __future__ import annotations` would make it a query field.
        def decode_request(self, request):
            image = read_image(self.media, request)
            return image, request["confidence_threshold"]

        def predict(self, batch: list[Any]) -> list[Any]:
            # One request's threshold for the whole batch: every request sends the same one.
            threshold = batch[0][1]
            return self.adapter.detect([image for image, _ in batch], None, threshold)

        def encode_response(self, output: Any) -> dict[str, Any]:
            return to_json(output)


def serve_litserve(checkpoint: Path, media: Path, port: int, imgsz: int) -> None:
    """LitServe with its own batching on (max_batch_size, batch_timeout), one CPU worker."""
    if ls is None:
        raise SystemExit(LITSERVE_HINT)
    api = DetectAPI(
        checkpoint,
        media,
        imgsz,
        max_batch_size=MAX_BATCH_SIZE,
        batch_timeout=LITSERVE_BATCH_TIMEOUT_S,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=300)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)


@contextlib.contextmanager
def peer(kind: str, checkpoint: Path, media: Path, imgsz: int) -> Iterator[str]:
    """Start `kind` ("litserve" or "fastapi") as a subprocess of this file; its base URL."""
    port = subprocess_server.free_port()
    command = [sys.executable, __file__, "--peer", kind, "--checkpoint", str(checkpoint)]
    command += ["--media", str(media), "--port", str(port), "--imgsz", str(imgsz)]
    # Its own process group: LitServe forks API and inference workers that outlive a
    # terminated parent, so the whole group is stopped.
    process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start within 120 s")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group `process` leads, then SIGKILL what is left after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers that ignored SIGTERM
    process.wait()


@contextlib.contextmanager
def server(
    kind: str, base: Path, checkpoint: Path, media: Path, max_batch_size: int, imgsz: int
) -> Iterator[str]:
    if kind == "zooserve":
        config = zooserve_config(base, checkpoint, media, max_batch_size, imgsz)
        with subprocess_server.running(config, SERVER_ENV) as (url, _):
            yield url
    else:
        with peer(kind, checkpoint, media, imgsz) as url:
            yield url


# --- the load -----------------------------------------------------------------------------------


async def closed_loop(url: str, route: str, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` detects from `concurrency` clients, each sending its next when answered."""
    # No prompts: YOLO is closed-vocabulary (zooserve would route prompts to an open-vocabulary
    # detector); "model" names zooserve's entry, the peers serve only this one.
    body = {"video_path": IMAGE, "model": "detector", "confidence_threshold": THRESHOLD}
    remaining = requests
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                statuses[str((await client.post(route, json=body)).status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "requests": requests,
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(seconds, 2),
        "frames_per_s": round(requests / seconds, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
    }


def measure(url: str, route: str, requests: int, concurrencies: Sequence[int]) -> dict[str, Any]:
    """Per concurrency: a short unmeasured warm-up at that concurrency, then the measured run."""
    asyncio.run(closed_loop(url, route, 2, 1))  # the first request loads the model (zooserve)
    runs = {}
    for concurrency in concurrencies:
        asyncio.run(closed_loop(url, route, min(concurrency, 8), concurrency))
        runs[str(concurrency)] = asyncio.run(closed_loop(url, route, requests, concurrency))
    return runs


def bench(
    base: Path,
    servers: Sequence[str] = SERVERS,
    requests: int = 96,
    concurrencies: Sequence[int] = CONCURRENCY,
    batching_concurrency: int | None = 8,
    imgsz: int = IMGSZ,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Every server in `servers` at every concurrency, plus zooserve without batching at
    `batching_concurrency` (None: skip). `checkpoint` defaults to a fresh YOLO11n build."""
    if "litserve" in servers and ls is None:
        raise SystemExit(LITSERVE_HINT)
    checkpoint = checkpoint or build_detector(base / "yolo11n.pt")
    media = write_media(base / "media")
    report: dict[str, Any] = {
        "model": f"{ARCHITECTURE} (random weights) at imgsz {imgsz}",
        "weights_mb": round(checkpoint.stat().st_size / 2**20, 1),
        "image": f"{IMAGE} 512x512",
        "requests_per_run": requests,
        "max_batch_size": MAX_BATCH_SIZE,
        "litserve_batch_timeout_s": LITSERVE_BATCH_TIMEOUT_S,
        "servers": {},
    }
    for kind in servers:
        with server(kind, base, checkpoint, media, MAX_BATCH_SIZE, imgsz) as url:
            report["servers"][kind] = measure(url, ROUTES[kind], requests, concurrencies)
    if batching_concurrency is not None and "zooserve" in servers:
        with server("zooserve", base, checkpoint, media, 1, imgsz) as url:
            unbatched = measure(url, ROUTES["zooserve"], requests, [batching_concurrency])
        report["zooserve_unbatched"] = unbatched
        batched = report["servers"]["zooserve"].get(str(batching_concurrency))
        if batched:
            without = unbatched[str(batching_concurrency)]["frames_per_s"]
            report["batching_ratio"] = round(batched["frames_per_s"] / without, 2)
    report["ratios"] = ratios(report)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return report


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """zooserve's frames/s ÷ each peer's, per concurrency."""
    runs = report["servers"]
    out = {}
    for kind in runs:
        if kind == "zooserve" or "zooserve" not in runs:
            continue
        for concurrency, run in runs[kind].items():
            mine = runs["zooserve"].get(concurrency)
            if mine and run["frames_per_s"]:
                out[f"zooserve/{kind}@{concurrency}"] = round(
                    mine["frames_per_s"] / run["frames_per_s"], 2
                )
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        "| server | concurrency | frames/s | p50 ms | p99 ms | statuses | zooserve ÷ this |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, runs in report["servers"].items():
        for concurrency, run in runs.items():
            ratio = report["ratios"].get(f"zooserve/{kind}@{concurrency}", "")
            statuses = ", ".join(f"{k}: {v}" for k, v in run["statuses"].items())
            lines.append(
                f"| {kind} | {concurrency} | {run['frames_per_s']} | {run['p50_ms']} | "
                f"{run['p99_ms']} | {statuses} | {ratio} |"
            )
    if "batching_ratio" in report:
        (concurrency, run), *_ = report["zooserve_unbatched"].items()
        lines += [
            "",
            f"batching: frames/s at concurrency {concurrency} with max_batch_size "
            f"{MAX_BATCH_SIZE} ÷ without (1, {run['frames_per_s']} frames/s): "
            f"**{report['batching_ratio']}**",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=96, help="measured requests per run")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    parser.add_argument("--json", type=Path, help="also write the report here")
    # Internal: run one peer server (this file starts itself as a subprocess).
    parser.add_argument("--peer", choices=("litserve", "fastapi"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--media", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        serve = serve_litserve if args.peer == "litserve" else serve_fastapi
        serve(args.checkpoint, args.media, args.port, args.imgsz)
        return
    with tempfile.TemporaryDirectory(prefix="zooserve-serving-") as tmp:
        report = bench(Path(tmp), args.servers, args.requests, args.concurrency, imgsz=args.imgsz)
    print(table(report))
    print(f"\nload average (1, 5, 15 min) at the end: {report['load_average']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
