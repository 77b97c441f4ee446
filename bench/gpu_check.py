"""The GPU check (issue #20): one prepared script that measures every CUDA-only path.

    .venv/bin/python bench/gpu_check.py            # the full run: base sizes, <= 8 min on one H100
    .venv/bin/python bench/gpu_check.py --dry-run  # the same code on the CPU, tiny configs
    .venv/bin/python bench/gpu_check.py --dry-run --families owlv2 segformer --out out/gpu_check

Sections, in order, each written to the report as it finishes:
1. device: ONNX Runtime providers (available, each session's), memory at start
   (`mem_get_info` vs NVML vs the ledger), unload/park verification while another lane
   allocates, pinned RSS vs bytes through park/wake/drop (bench/gpu_device.py);
2. families: per family through the real `ModelManager` (bench/gpu_families.py): load s and
   ÷ from_pretrained, bytes estimated/measured/peak (torch and NVML), frames/s at batch 1 and 8
   in fp32 and half (and under `torch.compile` where the family allows it, while time is
   left; dynamo alone in the dry run), tracker propagation fps on a 1280x720 clip, unload
   recovery, host-tier wake;
3. churn: a real server over HTTP, a budget of about a third of the families, NVML every
   20 ms (bench/gpu_churn.py).

Checkpoints are built from configs (bench/checkpoints.py: no hub is reachable) and cached in
`--cache` (default `<out>/checkpoints`). A hard time limit (`--time-limit-s`: 450 s full,
540 s dry) writes `gpu_check.json` and `gpu_check.md` for what finished, then exits, even if a
family hangs. Figures that cannot exist on the device (NVML, half precision, the pinned tier
on the CPU) are null.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import threading
import time
import traceback
from contextlib import suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny (checkpoints.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

import torch
from checkpoints import CHECKPOINTS, SHIPPED, build, build_osnet
from gpu_churn import RUNNING, churn
from gpu_device import memory_at_start, ort_providers, session_providers, verification_under_load
from gpu_families import FP32_SUFFIX, fp32_factory, measure
from gpu_report import write_report

from zooserve.catalog import Config
from zooserve.families import adapter_class
from zooserve.manager import ModelManager
from zooserve.manager.core import default_adapter_factory
from zooserve.runtimes.memory import admission_bytes

FULL = {"time_limit_s": 450, "fps_seconds": 2.0, "video_frames": 60, "requests": 200}
DRY = {"time_limit_s": 540, "fps_seconds": 0.0, "video_frames": 4, "requests": 40}
#: Seconds kept back for the churn phase and the report.
CHURN_RESERVE_S = {"full": 90, "dry": 30}
#: `torch.compile` backend per mode: inductor on the GPU; in the dry run dynamo alone
#: ("eager": the same capture and swap, no code generation), as inductor's C++ build of each
#: graph on a 2-core CPU would take longer than the dry run's whole budget.
COMPILE_BACKEND = {"full": "inductor", "dry": "eager"}
#: Seconds a family's compile may take out of the budget: compiled only while more is left.
COMPILE_RESERVE_S = 60
ORT_MODELS = ("osnet", "rapidocr")


class Run:
    """The report being built, written whenever a section ends and once at the time limit."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.out = out
        self.settings = settings
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.report: dict[str, Any] = {"settings": settings, "families": {}, "churn": None}

    def remaining(self) -> float:
        return float(self.settings["time_limit_s"] - (time.monotonic() - self.started))

    def write(self) -> None:
        with self.lock:
            self.report["elapsed_s"] = round(time.monotonic() - self.started, 1)
            write_report(self.out, self.report)

    def watchdog(self) -> threading.Timer:
        """At the hard limit: write what finished and leave, whatever is still running."""

        def expire() -> None:
            self.report["timed_out"] = True
            self.write()
            for server in RUNNING:  # a churn server must not outlive the check
                server.kill()
            print(f"time limit reached: report in {self.out}", file=sys.stderr)
            os._exit(3)

        timer = threading.Timer(max(1.0, self.remaining()), expire)
        timer.daemon = True
        timer.start()
        return timer


def describe_device(device: str) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    return {
        "device": device,
        "name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cpus": os.cpu_count(),
    }


def prepare(names: list[str], cache: Path, full: bool) -> tuple[dict[str, dict], dict[str, Any]]:
    """Config entries of every model to check (built or shipped), and what was built."""
    entries: dict[str, dict[str, Any]] = {}
    built: dict[str, Any] = {}
    for name in names:
        try:
            if name in CHECKPOINTS:
                built[name] = build(name, cache / name, full)
                entries[name] = {"model_id": str(cache / name), "family": CHECKPOINTS[name].family}
            elif name == "osnet":
                entries[name] = build_osnet(cache / name)
            else:
                entries[name] = dict(SHIPPED[name])
        except Exception as error:  # a family that cannot be built is reported, not fatal
            built[name] = {"error": f"{type(error).__name__}: {error}"}
    for entry in entries.values():
        entry.setdefault("category", "other")
    return entries, built


def manager_for(entries: dict[str, dict], device: str, budget_mb: float | None) -> ModelManager:
    models = {**entries, **{n + FP32_SUFFIX: e for n, e in entries.items()}}
    settings: dict[str, Any] = {"device": device, "models": models}
    settings["memory_budget_mb"] = budget_mb if budget_mb is not None else "auto"
    return ModelManager(
        Config.model_validate(settings), adapter_factory=fp32_factory(default_adapter_factory)
    )


async def device_section(run: Run, manager: ModelManager, names: list[str]) -> None:
    section: dict[str, Any] = {"memory_at_start": memory_at_start(manager)}
    sessions: dict[str, list[list[str]]] = {}
    for name in (n for n in ORT_MODELS if n in names):
        try:
            await manager.load(name)
            sessions[name] = session_providers(manager.state(name).adapter)
            await manager.unload(name)
        except Exception as error:
            sessions[name] = [[f"error: {type(error).__name__}: {error}"]]
    section["ort_providers"] = ort_providers(sessions)
    torch_models = [n for n in names if n in CHECKPOINTS]
    if torch_models:
        try:
            section["verification"] = await verification_under_load(manager, torch_models[0])
        except Exception as error:
            section["verification"] = {"error": f"{type(error).__name__}: {error}"}
    run.report["device_checks"] = section
    run.write()


async def family_section(run: Run, manager: ModelManager, entries: dict[str, dict]) -> None:
    reserve = CHURN_RESERVE_S[run.settings["mode"]]
    for name, entry in entries.items():
        if run.remaining() < reserve:
            run.report["families"][name] = {"skipped": "time limit"}
            continue
        checkpoint = CHECKPOINTS.get(name)
        row: dict[str, Any] = {"family": entry["family"], **run.report["built"].get(name, {})}
        backend = None
        if checkpoint is not None and checkpoint.compiles:
            if run.remaining() > reserve + COMPILE_RESERVE_S:
                backend = COMPILE_BACKEND[run.settings["mode"]]
            else:
                row["compiled"] = {"skipped": "time limit"}
        try:
            directory = entry["model_id"] if checkpoint else None
            model_class = checkpoint.model_class if checkpoint else None
            row.update(await measure(manager, name, model_class, directory, run.settings, backend))
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"
            row["trace"] = traceback.format_exc(limit=-3)
            for stuck in (name, name + FP32_SUFFIX):  # leave the device as it was found
                with suppress(Exception):
                    await manager.unload(stuck, "gpu check: after an error")
        run.report["families"][name] = row
        run.write()


def churn_section(run: Run, entries: dict[str, dict]) -> None:
    # Each model at its measured size (peak, or bytes): what admission counts once it is
    # measured. Models that hold nothing on the device (OpenCV) cannot press on a budget.
    peaks = {
        name: admission_bytes(None, row.get("bytes_measured"), row.get("peak_bytes"))
        for name, row in run.report["families"].items()
    }
    peaks = {name: nbytes for name, nbytes in peaks.items() if nbytes > 0}
    if len(peaks) < 2 or run.remaining() < 10:
        run.report["churn"] = {"skipped": "fewer than two measured families or no time left"}
        return
    kinds = {n: adapter_class(entries[n]["family"]).kind for n in peaks}
    run.report["churn"] = {"stopped": "the time limit came while it ran"}  # until it ends
    try:
        run.report["churn"] = churn(run.out / "churn", entries, kinds, peaks, run.settings)
    except Exception as error:
        run.report["churn"] = {"error": f"{type(error).__name__}: {error}"}
    run.write()


async def check(run: Run, names: list[str], cache: Path, budget_mb: float | None) -> None:
    full = run.settings["mode"] == "full"
    entries, run.report["built"] = prepare(names, cache, full)
    manager = manager_for(entries, run.settings["device"], budget_mb)
    run.report["device"] = describe_device(manager.device)
    run.settings["device"] = manager.device
    try:
        await device_section(run, manager, list(entries))
        await family_section(run, manager, entries)
    finally:
        await manager.close()
    await asyncio.to_thread(churn_section, run, entries)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    every = [*CHECKPOINTS, *SHIPPED, "osnet"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny configs")
    parser.add_argument("--out", type=Path, default=Path("out/gpu_check"))
    parser.add_argument("--budget-mb", type=float, help="the manager's budget (default auto)")
    parser.add_argument("--families", nargs="+", choices=every, default=every)
    parser.add_argument("--cache", type=Path, help="checkpoint cache (default OUT/checkpoints)")
    parser.add_argument("--time-limit-s", type=float, help="hard limit (450 full, 540 dry)")
    parser.add_argument("--requests", type=int, help="churn requests (200 full, 40 dry)")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = dict(DRY if args.dry_run else FULL)
    settings["mode"] = "dry" if args.dry_run else "full"
    settings["device"] = "cpu" if args.dry_run else "auto"
    for key in ("time_limit_s", "requests"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, settings)
    timer = run.watchdog()
    try:
        asyncio.run(
            check(run, args.families, args.cache or args.out / "checkpoints", args.budget_mb)
        )
    finally:
        timer.cancel()
        run.write()
    print((args.out / "gpu_check.md").read_text())
    return run.report


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
