"""Load ÷ `from_pretrained`, per transformers family at its real (released) base size.

For each family: the released base architecture (the transformers config defaults, which are
the released checkpoints' sizes, e.g. CLIP ViT-B/32, OWLv2 base-patch16 at 960 px, Grounding
DINO tiny) with seeded random weights, saved to a temp folder next to the processor the tiny
test builder makes (tests/tiny/<family>.py: an offline tokenizer; it does not change the
weights' size). Then, side by side, median of 3 each after one untimed read (page cache warm):

- **from_pretrained**: `<the adapter's model class>.from_pretrained(dir, dtype=float32,
  local_files_only=True)`, the model alone;
- **zooserve load**: `await manager.load(name)` on a CPU `ModelManager` (processor + model +
  measuring), then `await manager.unload(name)`.

Florence-2 (its processor needs a BART tokenizer with 1,000 location tokens and a post-processor
config) and the SAM2 family are not built here.

    .venv/bin/python bench/loads.py                                   # ~3-4 minutes on 2 cores
    .venv/bin/python bench/loads.py --families clip segformer --json out/loads.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zooserve.catalog import Config
from zooserve.manager import ModelManager

MB = 2**20
GOAL = 1.3


@dataclass(frozen=True)
class Family:
    """A zooserve family and how to build it at its released base size."""

    family: str
    model_class: str  # the transformers class the adapter loads
    config: Callable[[], Any]  # the released base config
    tiny_builder: str  # tests.tiny module whose `build` writes the processor
    released: str  # which released checkpoint the config matches


def _config(name: str, **kwargs: Any) -> Callable[[], Any]:
    return lambda: getattr(transformers, name)(**kwargs)


FAMILIES: dict[str, Family] = {
    f.family: f
    for f in (
        Family(
            "owlv2",
            "Owlv2ForObjectDetection",
            _config("Owlv2Config", vision_config={"image_size": 960}),
            "tests.tiny.owlv2",
            "owlv2-base-patch16 (960 px)",
        ),
        Family(
            "grounding_dino",
            "GroundingDinoForObjectDetection",
            _config("GroundingDinoConfig"),
            "tests.tiny.grounding_dino",
            "grounding-dino-tiny (Swin-T + BERT-base)",
        ),
        Family(
            "clip",
            "CLIPModel",
            _config("CLIPConfig"),
            "tests.tiny.clip",
            "clip-vit-base-patch32",
        ),
        Family(
            "siglip",
            "SiglipModel",
            _config("SiglipConfig"),
            "tests.tiny.siglip",
            "siglip-base-patch16-224",
        ),
        Family(
            "vit_classifier",
            "ViTForImageClassification",
            _config("ViTConfig", num_labels=1000),
            "tests.tiny.vit_classifier",
            "vit-base-patch16-224",
        ),
        Family(
            "segformer",
            "SegformerForSemanticSegmentation",
            _config("SegformerConfig", num_labels=150),
            "tests.tiny.segformer",
            "segformer-b0 (ADE20k head)",
        ),
        Family(
            "depth_anything",
            "DepthAnythingForDepthEstimation",
            _config("DepthAnythingConfig"),
            "tests.tiny.depth_anything",
            "Depth-Anything-V2-Small",
        ),
        Family(
            "vitpose",
            "VitPoseForPoseEstimation",
            _config("VitPoseConfig", num_labels=17),  # the 17 COCO keypoints
            "tests.tiny.vitpose",
            "vitpose-base-simple",
        ),
        Family(
            "xclip",
            "XCLIPModel",
            _config("XCLIPConfig"),
            "tests.tiny.xclip",
            "xclip-base-patch32",
        ),
    )
}
#: The zooserve family a registry entry needs, where it differs from the key here.
ZOOSERVE_FAMILY = {"siglip": "clip"}


def build(family: Family, directory: Path, real_size: bool = True) -> int:
    """The tiny builder's checkpoint (processor + tiny model), then, at `real_size`, the
    released-size model saved over it; returns the saved model's tensor bytes."""
    importlib.import_module(family.tiny_builder).build(directory)
    model_class = getattr(transformers, family.model_class)
    if real_size:
        torch.manual_seed(0)
        model = model_class(family.config()).eval()
        model.save_pretrained(directory)
    else:
        model = model_class.from_pretrained(directory, local_files_only=True)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def time_from_pretrained(family: Family, directory: Path) -> float:
    model_class = getattr(transformers, family.model_class)
    started = time.perf_counter()
    model = model_class.from_pretrained(directory, dtype=torch.float32, local_files_only=True)
    seconds = time.perf_counter() - started
    del model
    gc.collect()
    return seconds


async def time_zooserve_load(manager: ModelManager, name: str) -> float:
    started = time.perf_counter()
    await manager.load(name)
    seconds = time.perf_counter() - started
    await manager.unload(name)
    gc.collect()
    return seconds


def manager_for(family: Family, directory: Path) -> ModelManager:
    entry = {
        "model_id": str(directory),
        "family": ZOOSERVE_FAMILY.get(family.family, family.family),
        "category": "other",
    }
    config = Config.model_validate(
        {"device": "cpu", "memory_budget_mb": 32768, "models": {family.family: entry}}
    )
    return ModelManager(config)


async def compare(family: Family, directory: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each, alternating, after one untimed read of each."""
    manager = manager_for(family, directory)
    time_from_pretrained(family, directory)
    await time_zooserve_load(manager, family.family)
    loads, pretrained = [], []
    for _ in range(repeats):
        pretrained.append(time_from_pretrained(family, directory))
        loads.append(await time_zooserve_load(manager, family.family))
    await manager.close()
    load_s, pretrained_s = statistics.median(loads), statistics.median(pretrained)
    return {
        "load_s": round(load_s, 3),
        "from_pretrained_s": round(pretrained_s, 3),
        "ratio": round(load_s / pretrained_s, 2),
    }


def bench(
    base: Path, families: Sequence[str], repeats: int = 3, real_size: bool = True
) -> dict[str, Any]:
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    rows = {}
    for name in families:
        family = FAMILIES[name]
        directory = base / name
        started = time.perf_counter()
        nbytes = build(family, directory, real_size)
        build_s = time.perf_counter() - started
        rows[name] = {
            "released": family.released if real_size else "tiny test build",
            "weights_mb": round(nbytes / MB, 1),
            **asyncio.run(compare(family, directory, repeats)),
            "build_s": round(build_s, 1),
        }
    return {"repeats": repeats, "families": rows, "load_average": os.getloadavg()}


def table(report: dict[str, Any]) -> str:
    lines = [
        "| family | architecture | weights MB | zooserve load s | from_pretrained s | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["families"].items():
        ok = "" if row["ratio"] <= GOAL else " (over 1.3)"
        lines.append(
            f"| {name} | {row['released']} | {row['weights_mb']} | {row['load_s']} | "
            f"{row['from_pretrained_s']} | {row['ratio']}{ok} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zooserve-loads-") as tmp:
        report = bench(Path(tmp), args.families, args.repeats)
    print(table(report))
    print(f"\nload average (1, 5, 15 min) at the end: {report['load_average']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
