"""Which model serves a task: the request's, else one that is present and can see the prompts.

An explicitly requested model never falls back: its absence is the caller's error. Otherwise
the task's `selected` model is preferred, then its options in order; a fresh offline install
thereby serves with the models that ship in packages until hub models are pulled.

With text prompts a model must also be able to see them. A model's vocabulary comes from its
config, never from loading it: an open-vocabulary detector sees any text; a closed-vocabulary
one sees its `options.labels` (a list, or `coco` for the 80 COCO classes), else the names in
YOLO's `options.classes` filter, else `options.label` or its family's fixed label (MTCNN
"face", HOG "person"); a detection tracker sees what its detector sees; a prompt-driven
tracker (SAM2) sees what the object_detection task can find for it (its first boxes come from
there); a concept tracker (SAM 3) sees any text, and on a GPU it is the preferred tracker for
text prompts wherever it is present (on the CPU the configured order stands: it is heavy).
A prompt that nothing present can see is a 422 that lists the labels this machine can serve.

A composite model (a detection tracker) is present only if its detector is (`is_available`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from zooserve import catalog
from zooserve.core.errors import FamilyNotImplemented, InvalidInput
from zooserve.families import adapter_class, sources
from zooserve.families.base import Detector
from zooserve.families.kinds import ConceptTracker, Tracker
from zooserve.manager import ModelManager

DETECTION = "object_detection"
#: Families whose adapters name their one class themselves (when `options.label` is unset).
FAMILY_LABELS = {"opencv_hog": "person", "mtcnn": "face"}
#: What a user may type for a label a closed-vocabulary detector reports.
SYNONYMS = {
    "people": "person",
    "persons": "person",
    "pedestrian": "person",
    "pedestrians": "person",
    "human": "person",
    "humans": "person",
    "man": "person",
    "woman": "person",
    "faces": "face",
    "human face": "face",
    "licence plate": "license plate",
    "number plate": "license plate",
    "plate": "license plate",
}
#: `options.labels: coco`: the classes of COCO-trained detectors (YOLO11, YOLO26, DETR, ...).
# fmt: off
COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic_light", "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports_ball", "kite",
    "baseball_bat", "baseball_glove", "skateboard", "surfboard", "tennis_racket", "bottle",
    "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell_phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy_bear", "hair_drier", "toothbrush",
)
# fmt: on
log = logging.getLogger("zooserve.pipelines.selection")

#: A vocabulary: None sees any text (open vocabulary); a set holds the plain labels it reports.
Vocabulary = frozenset[str] | None


def selected_model(
    manager: ModelManager,
    task: str,
    requested: str | None,
    prompts: Sequence[str] | None = None,
) -> str:
    """The request's model, else the first present candidate that sees every text prompt.

    Candidates are the task's `selected` model, then its options in order. Without text
    prompts any present candidate serves. When no candidate is present at all, `selected` is
    returned so that loading it raises the clear "not present; fetch with ..." error.
    """
    if requested is not None:
        manager.state(requested)  # ModelNotFound listing every model
        return requested
    spec = manager.config.tasks.get(task)  # type: ignore[call-overload]
    if spec is None:
        raise InvalidInput(f"task {task!r} is not configured; pass a model explicitly")
    present = [name for name in _candidates(spec) if is_available(manager, name)]
    texts = [t for t in (prompts or []) if t.strip()]
    if not present:
        return str(spec.selected)
    if not texts:
        chosen = present[0]
    else:
        if str(manager.device).startswith("cuda"):
            present = _concept_trackers_first(manager, present)
        fitting = [name for name in present if sees(manager, name, texts)]
        if not fitting:
            raise _unseen(manager, task, present, texts)
        chosen = fitting[0]
    if chosen != spec.selected:
        log.warning("%s: %s cannot serve this request here, using %s", task, spec.selected, chosen)
    return chosen


def is_available(manager: ModelManager, name: str) -> bool:
    """True when the model is configured, enabled and here (a detection tracker: with its
    detector; `ModelManager.available` checks that)."""
    return name in manager.states and manager.available(name)


def vocabulary(manager: ModelManager, name: str) -> Vocabulary:
    """What the model can be prompted for, from its config alone (nothing loads).

    None: any text (an open-vocabulary detector). A prompt-driven tracker gets the union of
    the object_detection task's present detectors (None if any of them is open).
    """
    spec = manager.state(name).spec
    detector = _detector_of(manager, name)
    if detector is not None:
        return vocabulary(manager, detector) if detector in manager.states else frozenset()
    cls = _family_class(manager, name)
    if cls is None:
        return frozenset()
    if issubclass(cls, ConceptTracker):
        return None  # it finds any text itself
    if issubclass(cls, Tracker):
        return _detection_vocabulary(manager)
    if not issubclass(cls, Detector):
        return frozenset()
    if cls.open_vocabulary:
        return None
    labels = spec.options.get("labels", spec.options.get("classes"))
    if labels == "coco":
        labels = COCO_LABELS
    if isinstance(labels, list | tuple) and all(isinstance(x, str) for x in labels):
        return frozenset(plain(label) for label in labels)
    label = spec.options.get("label", FAMILY_LABELS.get(spec.family or ""))
    return frozenset({plain(str(label))}) if label else frozenset()


def sees(manager: ModelManager, name: str, prompts: Iterable[str]) -> bool:
    """True when every prompt names something the model can detect."""
    found = vocabulary(manager, name)
    return found is None or all(label_for(p, found) is not None for p in prompts)


def label_for(prompt: str, labels: frozenset[str]) -> str | None:
    """The label of `labels` a prompt means ("a face", "Faces" and "people" mean what the
    detector calls "face" and "person"), or None."""
    for candidate in spellings(prompt):
        if candidate in labels:
            return candidate
    return None


def spellings(prompt: str) -> list[str]:
    """The labels a prompt may mean, most literal first: "People" -> person; "Cats" -> cats, cat."""
    text = plain(prompt)
    return list(dict.fromkeys(c for c in (text, SYNONYMS.get(text), text.removesuffix("s")) if c))


def plain(text: str) -> str:
    """Lower case, '_' as a space, no leading article: "A License_Plate" -> "license plate"."""
    words = text.replace("_", " ").lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def servable_labels(manager: ModelManager, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(closed-vocabulary labels, open-vocabulary models) among the present models `names`."""
    labels: set[str] = set()
    open_models = []
    for name in names:
        found = vocabulary(manager, name)
        if found is None:
            open_models.append(name)
        else:
            labels |= found
    return sorted(labels), open_models


def _unseen(manager: ModelManager, task: str, present: list[str], texts: list[str]) -> InvalidInput:
    labels, open_models = servable_labels(manager, present)
    missing = [t for t in texts if not any(sees(manager, n, [t]) for n in present)]
    what = f"labels {', '.join(labels)}" if labels else "no labels"
    return InvalidInput(
        f"no available {task} model can detect {', '.join(map(repr, missing or texts))}: this "
        f"machine can serve {what} offline; pull an open-vocabulary detector (e.g. "
        "`zooserve models pull owlv2-base`) or pass a model explicitly",
        {
            "task": task,
            "prompts": missing or texts,
            "servable_labels": labels,
            "open_vocabulary_models": open_models,
            "available_models": present,
        },
    )


def _detection_vocabulary(manager: ModelManager) -> Vocabulary:
    spec = manager.config.tasks.get(DETECTION)  # type: ignore[call-overload]
    if spec is None:
        return frozenset()
    labels: set[str] = set()
    for name in _candidates(spec):
        cls = _family_class(manager, name) if name in manager.states else None
        if cls is None or issubclass(cls, Tracker) or not is_available(manager, name):
            continue  # (a tracker among detection options would recurse)
        found = vocabulary(manager, name)
        if found is None:
            return None
        labels |= found
    return frozenset(labels)


def _concept_trackers_first(manager: ModelManager, names: list[str]) -> list[str]:
    """`names` with the concept trackers (SAM 3) first, each group in its configured order."""
    concept = [n for n in names if _is_subclass(_family_class(manager, n), ConceptTracker)]
    return concept + [n for n in names if n not in concept]


def _is_subclass(cls: type | None, kind: type) -> bool:
    return cls is not None and issubclass(cls, kind)


def _candidates(spec: catalog.TaskSpec) -> list[str]:
    """A task's `selected` model, then its options in order, each once."""
    return list(dict.fromkeys([str(spec.selected), *map(str, spec.options)]))


def _detector_of(manager: ModelManager, name: str) -> str | None:
    """The detector a detection tracker links, from its options; None for other models."""
    spec = manager.state(name).spec
    if spec.family != "detection_tracker":
        return None
    detector = spec.options.get("detector")
    return str(detector) if detector else ""


def _family_class(manager: ModelManager, name: str) -> type | None:
    spec = manager.state(name).spec
    family = spec.family
    if family is None:
        try:
            family = sources.infer_family(manager.config, spec, manager.source(spec))
        except (OSError, ValueError):
            return None
    if family is None:
        return None
    try:
        return adapter_class(family)
    except (FamilyNotImplemented, ImportError):
        return None
