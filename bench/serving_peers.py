"""The servers bench/serving.py compares, each a subprocess on 127.0.0.1 serving detection of
ONE image per request with the same model code
(`zooserve.families.ultralytics.yolo.YoloDetector.detect`), so only the serving layer differs.
Each at its own best setting per concurrency, so both settings of a server run where the best
one depends on the load:

- **zooserve**: `zooserve serve` (POST /api/detect), batching across requests
  (`max_batch_size` 8, adaptive: a batch starts as soon as the model is free, no wait);
- **zooserve-unbatched**: the same with `max_batch_size` 1 (not a peer: the batching ratio);
- **litserve-batched**: LitServe (POST /predict), `max_batch_size` 8, `batch_timeout` 10 ms
  (its usual settings: a lone request waits the whole timeout for a batch to fill);
- **litserve**: LitServe without batching (`max_batch_size` 1: no wait);
- **fastapi**: a plain FastAPI/uvicorn sync endpoint around the bare model, no batching.

The detector is ultralytics YOLO11n at its released size (yolo11n.yaml, 2.6M parameters,
80 classes; random weights with recalibrated BatchNorm, built offline). LitServe is a benchmark
peer only, not a zooserve dependency. Run as a script, this file serves one peer (`--peer`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skimage.data
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Every server kind, in the bench's order; PEERS are those zooserve is compared against.
KINDS = ("zooserve", "zooserve-unbatched", "litserve-batched", "litserve", "fastapi")
PEERS = ("litserve-batched", "litserve", "fastapi")
MAX_BATCH_SIZE = 8
LITSERVE_BATCH_TIMEOUT_S = 0.01
#: Each kind's frames per batch (1: no batching).
BATCH_SIZES = {"zooserve": MAX_BATCH_SIZE, "zooserve-unbatched": 1}
BATCH_SIZES |= {"litserve-batched": MAX_BATCH_SIZE, "litserve": 1, "fastapi": 1}
#: What each kind's setting is, for the report.
SETTINGS = {
    "zooserve": f"max_batch_size {MAX_BATCH_SIZE}, adaptive (no wait)",
    "zooserve-unbatched": "max_batch_size 1",
    "litserve-batched": f"max_batch_size {MAX_BATCH_SIZE}, "
    f"batch_timeout {LITSERVE_BATCH_TIMEOUT_S * 1000:g} ms",
    "litserve": "max_batch_size 1 (no batching)",
    "fastapi": "sync route, no batching",
}
ROUTES = {"zooserve": "/api/detect", "zooserve-unbatched": "/api/detect", "fastapi": "/detect"}
ROUTES |= {"litserve-batched": "/predict", "litserve": "/predict"}
ARCHITECTURE = "yolo11n.yaml"
IMGSZ = 320
IMAGE = "astronaut.png"
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

        def predict(self, decoded: Any) -> Any:
            """A list of decoded requests when batching, else one (LitServe's contract)."""
            batch = decoded if self.max_batch_size > 1 else [decoded]
            # One request's threshold for the whole batch: every request sends the same one.
            found = self.adapter.detect([image for image, _ in batch], None, batch[0][1])
            return found if self.max_batch_size > 1 else found[0]

        def encode_response(self, output: Any) -> dict[str, Any]:
            return to_json(output)


def serve_litserve(checkpoint: Path, media: Path, port: int, imgsz: int, batched: bool) -> None:
    """LitServe with one CPU worker, its batching on (max_batch_size, batch_timeout) or off."""
    if ls is None:
        raise SystemExit(LITSERVE_HINT)
    batching: dict[str, Any] = {"max_batch_size": 1}
    if batched:
        batching = {"max_batch_size": MAX_BATCH_SIZE, "batch_timeout": LITSERVE_BATCH_TIMEOUT_S}
    api = DetectAPI(checkpoint, media, imgsz, **batching)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=300)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)


# --- starting and stopping them ---------------------------------------------------------------


@contextlib.contextmanager
def peer(kind: str, checkpoint: Path, media: Path, imgsz: int) -> Iterator[str]:
    """Start peer `kind` as a subprocess of this file; its base URL."""
    # Imported here: the peer processes (and LitServe's spawned workers, which re-run this
    # file) need not import the zooserve app.
    from tests.api import subprocess_server

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
def server(kind: str, base: Path, checkpoint: Path, media: Path, imgsz: int) -> Iterator[str]:
    """Server `kind` (one of KINDS) running until the block ends; its base URL."""
    if kind.startswith("zooserve"):
        from tests.api import subprocess_server

        config = zooserve_config(base, checkpoint, media, BATCH_SIZES[kind], imgsz)
        with subprocess_server.running(config, SERVER_ENV) as (url, _):
            yield url
    else:
        with peer(kind, checkpoint, media, imgsz) as url:
            yield url


def main() -> None:
    """Serve one peer (bench/serving.py starts this file once per peer)."""
    parser = argparse.ArgumentParser(description="one bench/serving.py peer")
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--media", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    args = parser.parse_args()
    if args.peer == "fastapi":
        serve_fastapi(args.checkpoint, args.media, args.port, args.imgsz)
    else:
        batched = args.peer == "litserve-batched"
        serve_litserve(args.checkpoint, args.media, args.port, args.imgsz, batched)


if __name__ == "__main__":
    main()
