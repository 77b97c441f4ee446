"""Where a model's weights are on this machine, and which family reads them (if any can).

Apart from catalog.py (the config alone) because answering needs the families too: a
`scheme:name` id is found by its family's adapter, and the families' contracts take catalog
types, so catalog cannot import them without a cycle. Nothing here downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

from zooserve.catalog import Config, ModelSpec, is_builtin_id, is_hub_id
from zooserve.core.errors import FamilyNotImplemented
from zooserve.families import FAMILIES, adapter_class

#: model_type in a checkpoint's config.json -> zooserve family id.
MODEL_TYPE_TO_FAMILY = {
    "owlv2": "owlv2",
    "grounding-dino": "grounding_dino",
    "florence2": "florence2",
    "clip": "clip",
    "siglip": "clip",
    "siglip2": "clip",
    "segformer": "segformer",
    "depth_anything": "depth_anything",
    "vitpose": "vitpose",
    "xclip": "xclip",
    "sam2_video": "sam2",
    "edgetam_video": "edgetam",
    "sam3": "sam3",
    "sam3_video": "sam3_tracker",
    "rf_detr": "rf_detr",
}


def _hub_snapshot(model_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot dir of a hub model if it is in the cache; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:
        return None


def locate(config: Config, spec: ModelSpec) -> str | None:
    """Local source of the model's weights, or None when they are not on this machine."""
    model_id = config.expand_model_id(spec)
    if is_builtin_id(model_id) and spec.family:
        try:
            return adapter_class(spec.family).builtin_source(model_id)
        except (FamilyNotImplemented, ImportError):
            return None
    if Path(model_id).exists():
        return model_id
    if not is_hub_id(model_id):
        return None  # a local path that does not exist
    revision = spec.source.revision if spec.source else None
    snapshot = _hub_snapshot(model_id, revision)
    return str(snapshot) if snapshot else None


def infer_family(config: Config, spec: ModelSpec, source: str | None) -> str | None:
    """The configured family, else the one named by the checkpoint's own config.json."""
    if spec.family:
        return spec.family
    if source is None:
        return None
    config_json = Path(source) / "config.json"
    if not config_json.is_file():
        return None
    model_type = json.loads(config_json.read_text()).get("model_type", "")
    return MODEL_TYPE_TO_FAMILY.get(model_type)


def servable(config: Config, spec: ModelSpec, source: str) -> bool:
    """True when this version has an adapter for the model's family (configured or read from
    its checkpoint): files alone do not make a model servable. A registry lookup; nothing
    imports."""
    return infer_family(config, spec, source) in FAMILIES


def available(
    config: Config, spec: ModelSpec, any_family: bool = False, _seen: frozenset[str] = frozenset()
) -> bool:
    """The one availability rule (/models/info, `zooserve models list|info`): enabled, its
    weights are here and an adapter serves its family (any family under a custom adapter
    factory); a composite model (a detection tracker) only if the detector it names is too."""
    source = locate(config, spec) if spec.enabled else None
    if source is None or not (any_family or servable(config, spec, source)):
        return False
    detector = spec.options.get("detector") if spec.family == "detection_tracker" else None
    if detector is None:
        return True
    seen = _seen | {spec.name}
    other = config.models.get(detector)
    return other is not None and detector not in seen and available(config, other, any_family, seen)


def pull_command(spec: ModelSpec) -> str:
    """The command that fetches a model that is not here (shown with `fetch_with`)."""
    return f"zooserve models pull {spec.name}"
