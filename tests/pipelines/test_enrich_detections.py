"""The detections of an enrichment run as `sv.Detections` layers (pipelines/enrich_detections.py):
the primary layer of a frame, the layers detector triggers add whose rows point back to their
parent row, the enrichment dicts rows and their slices share, and crops and fitted boxes."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from zooserve.catalog.zoo import PRIMARY
from zooserve.core.errors import InvalidInput
from zooserve.families.base import make_detections
from zooserve.pipelines.enrich_detections import (
    ENRICHMENTS,
    NO_PARENT,
    PARENT,
    SOURCE,
    DetectionLayers,
    RowRef,
    crop,
    fit,
)
from zooserve.pipelines.enrich_results import FrameEnrichment


def labelled(boxes: list[list[float]], labels: list[str]) -> sv.Detections:
    return make_detections(
        np.array(boxes, np.float32), np.full(len(boxes), 0.8), labels, sorted(set(labels))
    )


def layers_of_two_frames() -> DetectionLayers:
    """Two 200x100 frames; plates are found on primary detections, letters on plates."""
    frames = [
        FrameEnrichment(number, float(number), 200, 100, sv.Detections.empty()) for number in (7, 9)
    ]
    return DetectionLayers(frames, {"plates": PRIMARY, "letters": "plates", "signs": PRIMARY})


def test_found_rows_point_back_to_their_parent_row_in_frame_pixels() -> None:
    layers = layers_of_two_frames()
    primary = layers.add_primary(
        0, labelled([[10, 10, 110, 60], [120, 0, 200, 100]], ["car", "bus"]), True
    )
    assert primary.data["class_name"].tolist() == ["car", "bus"]
    assert primary.data[SOURCE].tolist() == [PRIMARY, PRIMARY]
    assert primary.data[PARENT].tolist() == [NO_PARENT, NO_PARENT]
    assert primary.data[ENRICHMENTS][0] is not primary.data[ENRICHMENTS][1]

    # a plate in the bus's crop (top-left corner (115, 0)): moved into the frame, fitted to it
    in_crop = sv.Detections(xyxy=np.array([[5.0, 5.0, 90.0, 10.0]]), confidence=np.array([0.5]))
    on_bus = layers.add_found("plates", 0, in_crop, (115, 0), parent=1)
    assert on_bus.xyxy.tolist() == [[120.0, 5.0, 200.0, 10.0]]
    assert on_bus.data["class_name"].tolist() == ["plates"]  # no labels: the trigger's name
    assert on_bus.data[SOURCE].tolist() == ["plates"] and on_bus.data[PARENT].tolist() == [1]
    on_car = layers.add_found("plates", 0, in_crop, (10, 10), parent=0)
    assert layers.layers["plates"][0].data[PARENT].tolist() == [1, 0]  # appended to the layer

    # the slice a parent holds shares its rows' enrichment dicts with the layer
    on_bus.data[ENRICHMENTS][0]["plate_text"] = {"text": "BUS 1"}
    assert layers.enrichments(RowRef(0, "plates", 0)) == {"plate_text": {"text": "BUS 1"}}
    assert on_car.data[ENRICHMENTS][0] == {}

    letters = layers.add_found("letters", 0, in_crop, (120, 5), parent=1)  # on the car's plate
    assert layers.root(RowRef(0, "letters", 0)) == RowRef(0, PRIMARY, 0)
    assert layers.box(RowRef(0, "letters", 0)).tolist() == letters.xyxy[0].tolist()
    signs = layers.add_found("signs", 1, labelled([[0, 0, 9, 9]], ["stop"]), (0, 0))
    assert signs.data[PARENT].tolist() == [NO_PARENT]  # found on the whole frame: its own root
    assert layers.root(RowRef(1, "signs", 0)) == RowRef(1, "signs", 0)
    assert layers.refs("plates") == [RowRef(0, "plates", 0), RowRef(0, "plates", 1)]
    assert (layers.label(RowRef(1, "signs", 0)), layers.confidence(RowRef(1, "signs", 0))) == (
        "stop",
        pytest.approx(0.8),
    )


def test_a_callers_box_outside_its_frame_is_refused_and_a_detectors_is_fitted() -> None:
    layers = layers_of_two_frames()
    outside = labelled([[10, 10, 20, 20], [250, 0, 300, 50]], ["car", "car"])
    with pytest.raises(InvalidInput) as refused:
        layers.add_primary(1, outside, check_boxes=True)
    assert refused.value.details == {"frame_number": 9, "index": 1}
    assert "detection 1 of frame 9" in refused.value.message
    fitted = layers.add_primary(1, outside, check_boxes=False)
    assert fitted.xyxy.tolist() == [[10, 10, 20, 20], [199, 0, 200, 50]]


def test_crops_are_padded_and_clipped_and_boxes_fit_the_frame() -> None:
    image = np.arange(100 * 200 * 3, dtype=np.uint8).reshape(100, 200, 3)
    patch, corner = crop(image, (50.0, 20.0, 150.0, 60.0), 0.1)  # 10 px / 4 px of padding
    assert corner == (40, 16) and patch.shape == (48, 120, 3)
    assert np.array_equal(patch, image[16:64, 40:160])
    patch, corner = crop(image, (-30.0, 90.0, 30.0, 130.0), 0.5)  # mostly outside: clipped
    assert corner == (0, 70) and patch.shape == (30, 60, 3)
    assert fit((199.5, 10.0, 199.5, 10.0), 200, 100) == (199.0, 10.0, 200.0, 11.0)
    assert fit((-5.0, -5.0, 300.0, 300.0), 200, 100) == (0.0, 0.0, 200.0, 100.0)
