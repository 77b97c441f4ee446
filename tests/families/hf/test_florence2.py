"""Florence-2 adapter against a tiny random checkpoint whose decoder is wired to emit two boxes
(see tests/tiny/florence2.py): parity with the hand-run transformers pipeline, the closed
vocabulary, scores and threshold, options (the output contract with prompts:
test_open_vocabulary.py; memory, unload and corrupt weights: test_contract.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from tests.families.adapters import load_adapter
from tests.families.detections import check_detections
from tests.tiny.florence2 import TARGET_PHRASES
from zooserve.core.errors import InvalidInput
from zooserve.families.hf.florence2 import Florence2Detector

PROMPTS = ["person", "cat"]
LOC_TOKEN = re.compile(r"<loc_\d+>")


@pytest.fixture(scope="module")
def tiny_path(tiny_models) -> Path:
    return tiny_models.path("florence2")


@pytest.fixture(scope="module")
def detector(tiny_path: Path) -> Florence2Detector:
    return load_adapter(Florence2Detector, tiny_path)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    # Different sizes, one non-square (chelsea is 451x300): boxes scale per image.
    return [skimage.data.astronaut(), skimage.data.chelsea()]


@pytest.fixture(scope="module")
def reference(tiny_path: Path) -> tuple[Any, Any]:
    """The documented transformers objects, loaded independently of the adapter."""
    processor = AutoProcessor.from_pretrained(tiny_path, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(tiny_path, local_files_only=True)
    return processor, model.eval()


def _run_reference(
    reference: tuple[Any, Any], images: list[np.ndarray], task: str, text: str
) -> list[dict[str, list]]:
    """processor -> generate -> batch_decode -> post_process_generation, as in the model card;
    scores: mean probability of each box's four location tokens (compute_transition_scores)."""
    processor, model = reference
    pictures = [Image.fromarray(image) for image in images]
    inputs = processor(text=[text] * len(images), images=pictures, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=256,
            num_beams=1,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        log_probs = model.compute_transition_scores(
            out.sequences, out.scores, normalize_logits=True
        )
    texts = processor.batch_decode(out.sequences, skip_special_tokens=False)
    results = []
    for i, (text_out, image) in enumerate(zip(texts, images, strict=True)):
        height, width = image.shape[:2]
        parsed = processor.post_process_generation(text_out, task=task, image_size=(width, height))
        parsed = parsed[task]
        labels = parsed["labels"] if task == "<OD>" else parsed["bboxes_labels"]
        tokens = processor.tokenizer.convert_ids_to_tokens(out.sequences[i, 1:].tolist())
        loc = [j for j, token in enumerate(tokens) if LOC_TOKEN.fullmatch(token)]
        groups = [loc[k : k + 4] for k in range(0, len(loc), 4)]
        assert len(groups) == len(parsed["bboxes"]), "every box of the tiny model is one loc run"
        scores = [float(log_probs[i, group].exp().mean()) for group in groups]
        results.append({"boxes": parsed["bboxes"], "labels": labels, "scores": scores})
    return results


def test_parity_closed_vocabulary(
    detector: Florence2Detector, reference: tuple[Any, Any], images: list[np.ndarray]
) -> None:
    got = detector.detect(images, None, threshold=0.0)
    expected = _run_reference(reference, images, "<OD>", "<OD>")
    assert sum(len(d) for d in got) > 0, "tiny model produced no boxes: the test would be vacuous"
    for det, ref in zip(got, expected, strict=True):
        np.testing.assert_allclose(det.xyxy, np.asarray(ref["boxes"]), atol=1e-4, rtol=0)
        np.testing.assert_allclose(det.confidence, ref["scores"], atol=1e-4, rtol=0)
        assert list(det.data["class_name"]) == ref["labels"]
        # Without prompts the vocabulary is the labels seen, in order of appearance.
        assert list(det.class_id) == [["person", "cat"].index(x) for x in ref["labels"]]


def test_parity_open_vocabulary(
    detector: Florence2Detector, reference: tuple[Any, Any], images: list[np.ndarray]
) -> None:
    got = detector.detect(images, PROMPTS, threshold=0.0)
    # One generate per prompt; every box of a prompt's generation is labelled with that prompt.
    per_prompt = [
        _run_reference(
            reference, images, "<OPEN_VOCABULARY_DETECTION>", f"<OPEN_VOCABULARY_DETECTION>{p}"
        )
        for p in PROMPTS
    ]
    assert sum(len(d) for d in got) > 0, "tiny model produced no boxes: the test would be vacuous"
    for i, det in enumerate(got):
        boxes = [box for ref in per_prompt for box in ref[i]["boxes"]]
        scores = [score for ref in per_prompt for score in ref[i]["scores"]]
        labels = [p for p, ref in zip(PROMPTS, per_prompt, strict=True) for _ in ref[i]["boxes"]]
        np.testing.assert_allclose(det.xyxy, np.asarray(boxes), atol=1e-4, rtol=0)
        np.testing.assert_allclose(det.confidence, scores, atol=1e-4, rtol=0)
        assert list(det.data["class_name"]) == labels
        assert list(det.class_id) == [PROMPTS.index(x) for x in labels]
    # The model's own text for each box is what the tiny decoder was wired to write.
    assert per_prompt[0][0]["labels"] == [phrase for phrase, _, _ in TARGET_PHRASES]


def test_closed_vocabulary_output_contract(
    detector: Florence2Detector, images: list[np.ndarray]
) -> None:
    results = detector.detect(images, None, threshold=0.0)
    assert len(results) == len(images)
    for det, image in zip(results, images, strict=True):
        check_detections(det, image, [phrase for phrase, _, _ in TARGET_PHRASES])


def test_threshold_filters(detector: Florence2Detector, images: list[np.ndarray]) -> None:
    everything = detector.detect(images, None, threshold=0.0)
    scores = np.concatenate([np.asarray(d.confidence) for d in everything])
    # The tiny model scores "person" boxes ~0.99 and "cat" boxes ~0.70.
    assert scores.max() > 0.85 > scores.min()
    kept = detector.detect(images, None, threshold=0.85)
    assert sum(len(d) for d in kept) == int((scores > 0.85).sum())
    for det in kept:
        assert list(det.data["class_name"]) == ["person"]
        assert list(det.class_id) == [0]  # vocabulary = labels that survived


def test_batch_equals_single_images(detector: Florence2Detector, images: list[np.ndarray]) -> None:
    batched = detector.detect(images, PROMPTS, threshold=0.0)
    for image, det in zip(images, batched, strict=True):
        (single,) = detector.detect([image], PROMPTS, threshold=0.0)
        np.testing.assert_allclose(single.xyxy, det.xyxy, atol=1e-4, rtol=0)
        np.testing.assert_allclose(single.confidence, det.confidence, atol=1e-4, rtol=0)
        assert list(single.data["class_name"]) == list(det.data["class_name"])


def test_max_new_tokens_option(tiny_path: Path, images: list[np.ndarray]) -> None:
    # Five tokens stop generation before the first box is complete.
    det = load_adapter(Florence2Detector, tiny_path, options={"max_new_tokens": 5})
    assert all(len(d) == 0 for d in det.detect(images, None, threshold=0.0))


def test_blank_prompts_mean_closed_vocabulary(
    detector: Florence2Detector, images: list[np.ndarray]
) -> None:
    (det,) = detector.detect(images[:1], ["", "  "], threshold=0.0)
    assert list(det.data["class_name"]) == [phrase for phrase, _, _ in TARGET_PHRASES]


def test_empty_batch(detector: Florence2Detector) -> None:
    assert detector.detect([], PROMPTS, threshold=0.0) == []


@pytest.mark.parametrize("task", ["<CAPTION>", "<OCR>"])
def test_text_tasks_match_the_transformers_reference(
    detector: Florence2Detector, tiny_path: Path, images: list[np.ndarray], task: str
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_path, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(tiny_path, local_files_only=True)
    pictures = [Image.fromarray(image) for image in images]
    inputs = processor(text=[task] * len(images), images=pictures, return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**inputs, max_new_tokens=256, num_beams=1, do_sample=False)
    expected = [
        processor.post_process_generation(text, task=task, image_size=p.size)[task]
        for text, p in zip(
            processor.batch_decode(generated, skip_special_tokens=False), pictures, strict=True
        )
    ]
    answers = detector.describe(images, task)
    assert answers == expected
    assert all(isinstance(a, str) and a for a in answers)  # the tiny model always says something


def test_unknown_text_task_is_invalid(detector: Florence2Detector) -> None:
    with pytest.raises(InvalidInput, match="unknown Florence-2 text task"):
        detector.describe([np.zeros((8, 8, 3), np.uint8)], "<DANCE>")
