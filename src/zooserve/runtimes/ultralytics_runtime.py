"""ultralytics helpers: the optional import, local checkpoints only, numpy frames as it reads them.

ultralytics is AGPL-3.0, so it is an optional extra: nothing here imports it at module level.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from zooserve.core.errors import MissingDependency, ModelUnavailable


def load_checkpoint(model_class: str, source: str, install_hint: str, what: str) -> Any:
    """`ultralytics.<model_class>` (e.g. "YOLO", "YOLOWorld") over the local `.pt` file `source`.

    Raises MissingDependency with `install_hint` when the extra is not installed, and
    ModelUnavailable ("`what` checkpoint not found") when `source` is not a file.
    """
    # Never let ultralytics pip-install into the server's environment at run time
    # (it would pull opencv-python over opencv-python-headless).
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    try:
        ultralytics = import_module("ultralytics")
    except ImportError as exc:
        raise MissingDependency(install_hint, {"package": "ultralytics"}) from exc

    # ultralytics would fetch a missing checkpoint name from GitHub; only local files here.
    if not Path(source).is_file():
        raise ModelUnavailable(f"{what} checkpoint not found: {source}", {"source": source})
    return getattr(ultralytics, model_class)(source)


def bgr_frames(rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
    """RGB images (H, W, 3) flipped to BGR: ultralytics treats numpy input as OpenCV frames."""
    return [np.ascontiguousarray(frame[..., ::-1]) for frame in rgb]


def predict(model: Any, frames: list[np.ndarray], device: str, **arguments: Any) -> list[Any]:
    """One `model.predict` over all BGR `frames` as a single batch, quietly, on `device`
    (half precision on CUDA); `arguments` are the model's own (conf, classes, ...)."""
    # half only when wanted: recent ultralytics warns on any `half` argument.
    precision = {"half": True} if device.startswith("cuda") else {}
    results = model.predict(
        frames, device=device, batch=len(frames), verbose=False, **arguments, **precision
    )
    return list(results)
