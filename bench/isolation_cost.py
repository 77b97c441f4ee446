"""What would running native inference in a supervised worker process cost?

Runs OpenCV's HOG people detector (the offline default) on the same 1280x720 frames in this
process's thread pool and in a worker process (frames pickled over a pipe, results back), and
prints per-frame seconds side by side with their ratio. This measurement chose zooserve's
mechanism (see zooserve/runtimes/inference.py): inputs are checked before native code and every
call has a deadline; process isolation is left as a supervisor's job (systemd Restart=always).

    .venv/bin/python bench/isolation_cost.py --frames 20
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import time

import cv2
import numpy as np

_hog: cv2.HOGDescriptor | None = None


def _detect(frame: np.ndarray) -> int:
    global _hog
    if _hog is None:
        _hog = cv2.HOGDescriptor()
        _hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
    rects, _ = _hog.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), winStride=(8, 8))
    return len(rects)


def _echo(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0])


def timed(pool: concurrent.futures.Executor, fn, frames: list[np.ndarray]) -> float:  # type: ignore[no-untyped-def]
    pool.submit(fn, frames[0]).result()  # warm: load the model / start the worker
    started = time.perf_counter()
    for frame in frames:
        pool.submit(fn, frame).result()
    return (time.perf_counter() - started) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (720, 1280, 3), np.uint8) for _ in range(args.frames)]
    context = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ThreadPoolExecutor(1) as thread,
        concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as process,
    ):
        rows = [
            ("HOG 1280x720", timed(thread, _detect, frames), timed(process, _detect, frames)),
            ("transfer only", timed(thread, _echo, frames), timed(process, _echo, frames)),
        ]
    print(f"{'per frame':<14} {'thread s':>10} {'process s':>10} {'process/thread':>15}")
    for name, in_thread, in_process in rows:
        print(f"{name:<14} {in_thread:>10.4f} {in_process:>10.4f} {in_process / in_thread:>15.2f}")


if __name__ == "__main__":
    main()
