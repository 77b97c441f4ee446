"""The track pipeline end to end on a real video: a real detector (OpenCV's shipped face
cascade) feeding ByteTrack, text prompts through the object_detection task, lazy decoding,
validation, and the session's reservation in the memory ledger."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import pytest_asyncio
import supervision as sv

from tests.conftest import TinyModels
from tests.track_scenes import Faces
from tests.tracked import TrackedFrameView, frame_view
from zooserve.catalog import Config, ModelSpec
from zooserve.core.errors import BudgetExceeded, FramesOutOfRange, InvalidInput, ServiceBusy
from zooserve.core.events import Event
from zooserve.families.base import Image, ModelAdapter
from zooserve.families.kinds import Tracker, TrackPrompt
from zooserve.families.results import FrameDetections, tracked_objects
from zooserve.manager import ModelManager, default_adapter_factory
from zooserve.media import MediaSource
from zooserve.media.rle import decode_mask
from zooserve.pipelines.track import FrameRange, TrackReport, track
from zooserve.pipelines.track_sessions import TrackingSessions

# One manager for the module: unloading runs gc.collect(), which takes ~0.7 s here.
pytestmark = pytest.mark.asyncio(loop_scope="module")
MB = 1024 * 1024
SCENE = Faces()


class TemplateTracker(Tracker):
    """OpenCV template matching: a real (if simple) tracker on the generic `step` path,
    standing in for the SAM2 families that are built in parallel. Its "mask" is its box.
    With options.bank_mb it keeps that many MB per frame, like a memory bank that grows."""

    family = "template"

    def load(self) -> None:
        self.bank_bytes = int(float(self.spec.options.get("bank_mb", 0)) * MB)

    def start(self, prompts: Sequence[TrackPrompt], width: int, height: int) -> dict[str, Any]:
        return {"prompts": list(prompts), "templates": {}, "bank": [], "size": (height, width)}

    def step(self, session: Any, frame_number: int, image: Image) -> sv.Detections:
        for prompt in session["prompts"]:
            if prompt.frame_number == frame_number and prompt.box is not None:
                x1, y1, x2, y2 = (round(v) for v in prompt.box)
                session["templates"][prompt.object_id] = image[y1:y2, x1:x2].copy()
        if self.bank_bytes:
            session["bank"].append(np.zeros(self.bank_bytes, np.uint8))  # pages stay unmapped
        objects = []
        for object_id, template in sorted(session["templates"].items()):
            scores = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
            _, score, _, (x, y) = cv2.minMaxLoc(scores)
            h, w = template.shape[:2]
            mask = np.zeros(session["size"], bool)
            mask[y : y + h, x : x + w] = True
            objects.append((object_id, (x, y, x + w, y + h), float(score), False, mask))
        if not objects:
            return tracked_objects([], [], [], [])
        return tracked_objects(*zip(*objects, strict=True))

    def session_bytes(self, session: Any) -> int:
        arrays = [*session["templates"].values(), *session["bank"]]
        return sum(a.nbytes for a in arrays)


def factory(spec: ModelSpec, source: str, device: str) -> ModelAdapter:
    if spec.family == "template":
        return TemplateTracker(spec, source, device)
    return default_adapter_factory(spec, source, device)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("track-media")
    SCENE.write(root / "faces.mp4")
    return root


def make_config(media: Path, sam2: Path) -> Config:
    no_weights = media / "template-tracker"  # a local "weights" directory holding nothing
    no_weights.mkdir(exist_ok=True)
    return Config.model_validate(
        {
            "device": "cpu",
            "memory_budget_mb": 64,
            "media_root": str(media),
            "admission_timeout_s": 1,
            "tasks": {
                "object_detection": {"selected": "face", "options": ["face"]},
                "video_tracking": {
                    "selected": "face-bytetrack",
                    "options": ["face-bytetrack", "template"],
                },
            },
            "models": {
                "face": {
                    "model_id": "opencv:haarcascade_frontalface_default.xml",
                    "family": "opencv_cascade",
                    "framework": "opencv",
                    "options": {"label": "face", "batch_size": 4},
                },
                "face-bytetrack": {
                    "model_id": "builtin:bytetrack",
                    "family": "detection_tracker",
                    "category": "tracking",
                    "options": {"detector": "face"},
                },
                "template": {
                    "model_id": str(no_weights),
                    "family": "template",
                    "category": "tracking",
                    "vram_mb": 0,  # OpenCV template matching holds no weights
                },
                "sam": {"model_id": str(sam2), "family": "sam2", "category": "tracking"},
                "template-bank": {
                    "model_id": str(no_weights),
                    "family": "template",
                    "category": "tracking",
                    "vram_mb": 0,
                    "options": {"bank_mb": 8},
                },
            },
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager(media: Path, tiny_models: TinyModels) -> AsyncIterator[ModelManager]:
    running = ModelManager(make_config(media, tiny_models.path("sam2")), adapter_factory=factory)
    yield running
    await running.close()


@contextlib.contextmanager
def recorded(manager: ModelManager) -> Iterator[list[Event]]:
    """The manager's events while the block runs."""
    events: list[Event] = []
    manager.events.subscribe(events.append)
    try:
        yield events
    finally:
        manager.events.unsubscribe(events.append)


async def collect(frames: AsyncIterator[FrameDetections]) -> list[TrackedFrameView]:
    """The frames, objects as row views with masks as COCO RLE (as the API sends them)."""
    return [frame_view(frame) async for frame in frames]


def centre_x(obj: Any) -> float:
    return (obj.box[0] + obj.box[2]) / 2


def face_b_x1(frame: int) -> float:
    """Where the cascade puts the mirrored astronaut's face (measured at frame 0: x 250)."""
    return 250.0 - 2 * frame


async def test_text_prompt_tracks_every_face_with_stable_ids(manager: ModelManager) -> None:
    report = TrackReport()
    frames = await collect(
        track(manager, "faces.mp4", FrameRange(0, 11), prompts=["face"], report=report)
    )
    assert [f.frame_number for f in frames] == list(range(12))
    assert frames[3].timestamp == pytest.approx(3 / 24)
    assert {o.object_id for f in frames for o in f.objects} == {1, 2}
    first = {o.object_id: centre_x(o) for o in frames[0].objects}
    last = {o.object_id: centre_x(o) for o in frames[-1].objects if not o.occluded}
    left, right = sorted(first, key=first.__getitem__)
    assert last[left] - first[left] == pytest.approx(22, abs=4)  # A moves right 2 px/frame
    assert last[right] - first[right] == pytest.approx(-22, abs=4)  # B moves left
    assert all(o.mask is None for f in frames for o in f.objects)  # a box-only detector
    assert report.model == "face-bytetrack" and report.detector == "face"
    assert (report.fps, report.frames, report.texts) == (24.0, 12, ["face"])
    assert report.peak_session_bytes > 0 and report.processing_time > 0
    assert manager.reservations == {}


async def test_box_prompt_follows_one_face_under_its_id(manager: ModelManager) -> None:
    box = (face_b_x1(2), 14.0, face_b_x1(2) + 28, 44.0)
    prompt = TrackPrompt(object_id=7, frame_number=2, box=box)
    frames = await collect(track(manager, "faces.mp4", FrameRange(2, 9), prompts=[prompt]))
    assert [f.frame_number for f in frames] == list(range(2, 10))
    for frame in frames:
        (face,) = frame.objects
        assert face.object_id == 7
        assert face.box[0] == pytest.approx(face_b_x1(frame.frame_number), abs=4)


async def test_a_generic_tracker_gets_its_boxes_from_text_through_the_detection_task(
    manager: ModelManager,
) -> None:
    frames = await collect(
        track(manager, "faces.mp4", FrameRange(1, 8), prompts=["face"], tracking_model="template")
    )
    assert sorted(o.object_id for o in frames[0].objects) == [1, 2]
    b = next(o for o in frames[0].objects if o.box[0] > 160)
    for frame in frames:
        (tracked,) = [o for o in frame.objects if o.object_id == b.object_id]
        assert tracked.box[0] == pytest.approx(face_b_x1(frame.frame_number), abs=4)
        assert tracked.mask is not None  # masks leave the pipeline as COCO RLE
        mask = decode_mask(tracked.mask)
        x1, y1, x2, y2 = (round(v) for v in tracked.box)
        assert mask.shape == (SCENE.height, SCENE.width)
        assert mask[y1:y2, x1:x2].all() and mask.sum() == (x2 - x1) * (y2 - y1)
    assert manager.reservations == {}


async def test_text_to_boxes_to_a_tiny_sam2(manager: ModelManager) -> None:
    """The SAM2 family (random tiny weights: masks mean nothing) through the generic path:
    the face cascade's boxes prompt it, masks come back as frame-sized RLE, the session's
    memory bank is counted in the ledger and given back."""
    report = TrackReport()
    frames = await collect(
        track(
            manager,
            "faces.mp4",
            FrameRange(0, 3),
            prompts=["face"],
            tracking_model="sam",
            report=report,
        )
    )
    assert [f.frame_number for f in frames] == [0, 1, 2, 3]
    for frame in frames:
        assert [o.object_id for o in frame.objects] == [1, 2]
        for obj in frame.objects:
            assert obj.mask is None or obj.mask["size"] == [SCENE.height, SCENE.width]
    assert report.peak_session_bytes > 0 and report.detector is None
    assert manager.reservations == {}


@pytest.mark.parametrize(("model", "most_decoded"), [("template", 2), ("face-bytetrack", 8)])
async def test_frames_are_decoded_lazily(
    manager: ModelManager, monkeypatch: pytest.MonkeyPatch, model: str, most_decoded: int
) -> None:
    """After the first frame, at most the current chunk and the one ahead were decoded."""
    decoded: list[int] = []
    iter_range = MediaSource.iter_range

    def counting(self: MediaSource, start: int, end: int) -> Iterator[Any]:
        for frame in iter_range(self, start, end):
            decoded.append(frame.number)
            yield frame

    monkeypatch.setattr(MediaSource, "iter_range", counting)
    prompt = TrackPrompt(object_id=1, frame_number=0, box=(44.0, 14.0, 72.0, 44.0))
    frames = track(manager, "faces.mp4", FrameRange(0, 11), prompts=[prompt], tracking_model=model)
    await anext(frames)
    await asyncio.sleep(0.2)  # let the read-ahead finish
    assert 0 < len(decoded) <= most_decoded
    assert [key.startswith("tracking:") for key in manager.reservations] == [True]
    await frames.aclose()  # the client went away after one frame
    assert manager.reservations == {}


async def test_a_growing_session_is_reserved_as_it_grows(manager: ModelManager) -> None:
    prompt = TrackPrompt(object_id=1, frame_number=0, box=(44.0, 14.0, 72.0, 44.0))
    report = TrackReport()
    frames = track(
        manager,
        "faces.mp4",
        FrameRange(0, 5),
        prompts=[prompt],
        tracking_model="template-bank",
        report=report,
    )
    with recorded(manager) as events:
        async for frame in frames:
            # The ledger follows the bank (8 MB a frame) as it grows, not just at the start.
            (held,) = manager.reservations.values()
            assert held >= 8 * MB * (frame.frame_number + 1)
    reserved = [e.bytes for e in events if e.kind == "reserve"]
    assert reserved[0] < MB and reserved == sorted(reserved) and len(reserved) == 7
    assert report.peak_session_bytes >= 6 * 8 * MB
    assert manager.reservations == {}


async def test_a_session_outgrowing_the_budget_fails_and_gives_its_bytes_back(
    manager: ModelManager,
) -> None:
    prompt = TrackPrompt(object_id=1, frame_number=0, box=(44.0, 14.0, 72.0, 44.0))
    produced = []
    with pytest.raises(BudgetExceeded, match="tracking:"):
        async for frame in track(
            manager,
            "faces.mp4",
            FrameRange(0, 11),
            prompts=[prompt],
            tracking_model="template-bank",
        ):
            produced.append(frame.frame_number)
    assert produced == list(range(7))  # the 9th 8 MB frame would pass the 64 MB budget
    assert manager.reservations == {}


async def test_an_idle_session_expires_and_its_request_ends(manager: ModelManager) -> None:
    now = [0.0]
    sessions = TrackingSessions(manager, idle_ttl_s=60, clock=lambda: now[0])
    frames = track(manager, "faces.mp4", FrameRange(0, 11), prompts=["face"], sessions=sessions)
    await anext(frames)
    assert sessions.sweep() == []  # still fresh
    (record,) = sessions.records.values()
    tensors = weakref.ref(record.session)
    del record
    now[0] += 61  # the client stopped reading a minute ago
    (expired,) = sessions.sweep()
    # The claim went with the session's memory, not before: nothing else kept the session.
    assert tensors() is None and manager.reservations == {}
    with pytest.raises(ServiceBusy, match="expired"):
        while True:
            await anext(frames)
    assert expired not in sessions.records


async def test_the_background_sweep_releases_expired_sessions(manager: ModelManager) -> None:
    sessions = TrackingSessions(manager, idle_ttl_s=0.0)
    key = await sessions.open("test", object(), 1000)
    assert manager.reservations == {key: 1000}
    sessions.start_sweeper(interval_s=0.01)
    try:
        for _ in range(100):
            if not manager.reservations:
                break
            await asyncio.sleep(0.01)
        assert manager.reservations == {}
    finally:
        await sessions.stop_sweeper()
    sessions.close(key)  # what the request does at its end: harmless after expiry


def box_prompt(**fields: Any) -> TrackPrompt:
    return TrackPrompt(**{"object_id": 1, "frame_number": 0, "box": (10, 10, 40, 40), **fields})


BAD_REQUESTS = [
    ((0, 5), [], InvalidInput, "prompts must not be empty"),
    ((0, 5), ["face", box_prompt()], InvalidInput, "mix texts"),
    ((0, 5), ["  "], InvalidInput, "non-empty strings"),
    ((5, 3), ["face"], InvalidInput, r"frame_range is empty: end \(3\) is before start \(5\)"),
    ((0, 12), ["face"], FramesOutOfRange, r"frames \[12\] out of range"),
    ((0, 5), [box_prompt(box=(330, 10, 360, 40))], InvalidInput, "outside the 320x128 frame"),
    ((0, 5), [box_prompt(box=(40, 10, 10, 40))], InvalidInput, "x1 < x2"),
    ((0, 5), [box_prompt(box=None, points=((321, 5),))], InvalidInput, r"point \(321, 5\)"),
    ((0, 5), [box_prompt(frame_number=9)], FramesOutOfRange, "outside frame_range 0..5"),
    (
        (0, 5),
        [box_prompt(object_id=3, box=None, points=((5, 5),), point_labels=(0,))],
        InvalidInput,
        "unknown object id 3",
    ),
    (
        (0, 5),
        [
            box_prompt(),
            box_prompt(object_id=2, frame_number=3, box=None, points=((5, 5),), point_labels=(0,)),
        ],
        InvalidInput,
        "unknown object id 2",
    ),
    ((0, 5), [box_prompt(box=None, mask=np.ones((10, 10), bool))], InvalidInput, "mask is 10x10"),
    ((0, 5), [box_prompt(mask=np.zeros((128, 320), bool))], InvalidInput, "mask is empty"),
    ((0, 5), [box_prompt(points=((1, 1), (2, 2)), point_labels=(1,))], InvalidInput, "2 points"),
    ((0, 5), [box_prompt(), box_prompt()], InvalidInput, "second prompt"),
    ((0, 5), [box_prompt(box=None)], InvalidInput, "give a box, points or a mask"),
]


@pytest.mark.parametrize(("frame_range", "prompts", "error", "message"), BAD_REQUESTS)
async def test_bad_requests_fail_before_any_work(
    manager: ModelManager,
    frame_range: tuple[int, int],
    prompts: list[Any],
    error: type[Exception],
    message: str,
) -> None:
    with recorded(manager) as events, pytest.raises(error, match=message):
        await anext(track(manager, "faces.mp4", FrameRange(*frame_range), prompts=prompts))
    assert events == []  # no load, no reservation
    assert manager.reservations == {}


async def test_a_detector_is_not_a_tracker(manager: ModelManager) -> None:
    with (
        recorded(manager) as events,
        pytest.raises(InvalidInput, match="'face' is a detector, not a tracker"),
    ):
        await anext(
            track(manager, "faces.mp4", FrameRange(0, 3), prompts=["face"], tracking_model="face")
        )
    assert events == []  # refused before anything loads or runs


async def test_text_that_finds_nothing_is_explained(manager: ModelManager) -> None:
    with pytest.raises(InvalidInput, match=r"can detect 'cat'.*pull an open-vocabulary detector"):
        await anext(
            track(
                manager, "faces.mp4", FrameRange(0, 3), prompts=["cat"], tracking_model="template"
            )
        )
    assert manager.reservations == {}
