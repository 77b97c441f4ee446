"""The zoo bench/churn.py serves: OWLv2 detectors (the real architecture, reduced, random
weights, built offline) of equal or unequal sizes, a 128x128 image, and the server's config.

Equal: four copies of one ~39 MB detector. Unequal: image towers of 2, 4, 6 and 8 layers,
~18, ~32, ~46 and ~60 MB. Under the bench's 100 MB budget two equal models fit, three do not.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import skimage.data
import torch
import yaml
from PIL import Image
from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny.clip_tokenizer import byte_level_tokenizer, text_config

MB = 2**20
BUDGET_MB = 100
#: Wrong estimates are each model's real size divided by this (8x too low).
WRONG_FACTOR = 8
IMAGE = "astronaut.png"
SIZES = ("equal", "unequal")
#: A ViT-S-like image tower (384 wide, 5 layers) at 128 px: 39.0 MB of fp32 tensors, a
#: forward in ~20 ms on these CPUs, so the run measures churn rather than inference.
VISION = {
    "hidden_size": 384,
    "intermediate_size": 1632,
    "num_hidden_layers": 5,
    "num_attention_heads": 6,
    "image_size": 128,
    "patch_size": 16,
}
#: Image tower depths of the unequal zoo (cycled past four models).
UNEQUAL_LAYERS = (2, 4, 6, 8)
TEXT_POSITIONS = 16

#: name -> (directory, tensor bytes)
Zoo = dict[str, tuple[Path, int]]


def build_detector(directory: Path, layers: int = VISION["num_hidden_layers"]) -> int:
    """Save a seeded `Owlv2ForObjectDetection` with `layers` image layers and its processor;
    its tensor bytes."""
    transformers_logging.disable_progress_bar()
    tokenizer = byte_level_tokenizer(TEXT_POSITIONS, pad_token="!")  # BOS must not be id 0
    config = Owlv2Config(
        text_config=text_config(tokenizer, TEXT_POSITIONS),
        vision_config={**VISION, "num_hidden_layers": layers},
        projection_dim=32,  # the class head compares queries in the text tower's width
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    size = {"height": VISION["image_size"], "width": VISION["image_size"]}
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size=size), tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_zoo(base: Path, count: int, sizes: str = "equal") -> Zoo:
    """`count` detectors (see SIZES) and the image they are asked about."""
    if sizes not in SIZES:
        raise ValueError(f"sizes must be one of {SIZES}, not {sizes!r}")
    zoo: Zoo = {}
    for i in range(count):
        directory = base / sizes / f"owl-{i}"
        if sizes == "equal" and zoo:  # one build, copied
            first, nbytes = zoo["owl-0"]
            zoo[f"owl-{i}"] = (Path(shutil.copytree(first, directory)), nbytes)
        else:
            layers = UNEQUAL_LAYERS[i % len(UNEQUAL_LAYERS)] if sizes == "unequal" else 5
            zoo[f"owl-{i}"] = (directory, build_detector(directory, layers))
    media = base / "media"
    media.mkdir(exist_ok=True)
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(media / IMAGE)  # 128x128
    return zoo


def estimates_mb(zoo: Zoo, wrong: bool) -> dict[str, float]:
    """Each model's `vram_mb`: its real size, or that divided by WRONG_FACTOR."""
    divisor = WRONG_FACTOR if wrong else 1
    return {name: round(nbytes / MB / divisor, 2) for name, (_, nbytes) in zoo.items()}


def write_config(base: Path, zoo: Zoo, wrong: bool, max_wait_s: float | None, tag: str) -> Path:
    """A config over `zoo` (see `estimates_mb`); `max_wait_s` 0 serves requests in arrival
    order (None: the service's default). `tag` names the files of this run."""
    estimates = estimates_mb(zoo, wrong)
    models = {
        name: {"model_id": str(path), "family": "owlv2", "vram_mb": estimates[name]}
        for name, (path, _) in zoo.items()
    }
    config = {
        "device": "cpu",
        "memory_budget_mb": BUDGET_MB,
        "media_root": str(base / "media"),
        "jobs_db": str(base / f"jobs-{tag}.sqlite3"),
        "tasks": {"object_detection": {"selected": "owl-0", "options": sorted(zoo)}},
        "models": models,
    }
    if max_wait_s is not None:
        config["max_wait_s"] = max_wait_s
    path = base / f"models-{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
