"""Schemathesis over the app's own OpenAPI document, against a real server on 127.0.0.1.

Every documented operation, and each body type of the upload routes (JSON and multipart),
gets positive (schema-valid) and negative (schema-violating) requests from a fixed seed,
after a few valid requests on real test media. Every answer must be no server error and must
match the documented response schema (the error envelope included), and no schema-violating
JSON body or parameter may be accepted. Excluded, because it never ends on its own: GET
/api/events (the manager's event stream stays open until the client leaves). GET
/api/jobs/{job_id}/events is fuzzed: for an unknown id it is a 404, and the stream of a real
job ends with the job.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

from zooserve.api.server import BackgroundServer
from zooserve.catalog import load_config

#: Streams that only end when the client leaves (see the module docstring).
NEVER_ENDING = {("GET", "/api/events")}
#: Examples per operation and generation mode; operations without inputs stop after one.
EXAMPLES = 24
MIN_CASES = 500
#: Requests on the shared test media (tests/conftest.py), sent first: besides the generated
#: paths (mostly 404s) the run then reaches the models, the decoders and the NDJSON stream.
REAL_MEDIA: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("POST", "/api/detect"): [
        {"video_path": "walk.mp4", "frame_numbers": [0, 29]},
        {"video_path": "astronaut.png", "model": "face", "confidence_threshold": 0},
        {"video_path": "notes.mp4"},
    ],
    ("POST", "/api/annotate"): [{"video_path": "walk.mp4", "frame_numbers": [3]}],
    ("POST", "/api/enrich"): [
        {"video_path": "walk.mp4", "sampling": {"strategy": "uniform", "count": 2}},
        {
            "video_path": "astronaut.png",
            "detections": [
                {"frame_number": 0, "label": "person", "bbox": {"x1": 1, "y1": 1, "x2": 9, "y2": 9}}
            ],
        },
    ],
    ("POST", "/api/track"): [
        {"video_path": "walk.mp4", "frame_range": {"start": 0, "end": 3}, "prompts": ["person"]},
        {
            "video_path": "walk.mp4",
            "frame_range": {"start": 0, "end": 2},
            "prompts": [{"object_id": 1, "box": [10, 10, 60, 60]}],
            "stream": True,
        },
    ],
    ("POST", "/api/summarize"): [{"video_path": "walk.mp4", "persona_context": "a guard"}],
    ("POST", "/api/jobs"): [
        {"task": "detect", "body": {"video_path": "walk.mp4", "frame_numbers": [1]}},
        {
            "task": "track",
            "body": {"video_path": "walk.mp4", "frame_range": {"start": 0, "end": 1}},
        },
    ],
    # Not "broken" (corrupt weights): a fault of the server, by design a 500 model_load_failed.
    ("POST", "/models/load"): [{"model_id": "owl"}, {"model_id": "hub-owl"}],
    ("POST", "/models/unload"): [{"model_id": "owl"}],
}


@pytest.fixture(scope="module")
def fuzzed_server(zoo_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of its own (the fuzzer loads models and submits jobs), with small caps."""
    base = tmp_path_factory.mktemp("fuzz")
    config = yaml.safe_load(zoo_config.read_text())
    config.update(jobs_db=str(base / "jobs.sqlite3"), max_track_frames=4, max_queued_jobs=4)
    # A cheap tracker (ByteTrack over the OpenCV face detector), so /api/track and its NDJSON
    # stream answer 200 too.
    config["models"]["face-tracker"] = {
        "model_id": "builtin:bytetrack",
        "family": "detection_tracker",
        "category": "tracking",
        "options": {"detector": "face"},
    }
    config["tasks"]["video_tracking"] = {"selected": "face-tracker", "options": ["face-tracker"]}
    path = base / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path)) as server:
        yield server.url


def _operations(url: str) -> list[Any]:
    """Every operation but the never-ending ones; an operation whose body may be JSON or
    multipart comes twice, once per body type (given both, the generator nearly always picks
    multipart, and the JSON bodies of the upload routes would go almost unfuzzed)."""
    document = requests.get(f"{url}/openapi.json", timeout=30).json()
    operations: dict[tuple[str, str, str], Any] = {}
    for media_type in ("application/json", "multipart/form-data"):
        variant = copy.deepcopy(document)
        for item in variant["paths"].values():
            for operation in item.values():
                content = operation.get("requestBody", {}).get("content", {})
                if len(content) > 1:
                    operation["requestBody"]["content"] = {media_type: content[media_type]}
        schema = schemathesis.openapi.from_dict(variant)
        for result in schema.get_all_operations():
            op = result.ok()
            key = (op.method.upper(), op.path, ",".join(b.media_type for b in op.body))
            if key[:2] not in NEVER_ENDING:
                operations.setdefault(key, op)
    return list(operations.values())


def test_the_openapi_fuzzer_finds_no_server_error_and_no_schema_violation(
    fuzzed_server: str,
) -> None:
    operations = _operations(fuzzed_server)
    assert len(operations) >= 20, [op.label for op in operations]
    # Every documented body type is generated (a body schema the fuzzer cannot resolve, like
    # a `#/$defs/...` reference, would silently drop it).
    document = requests.get(f"{fuzzed_server}/openapi.json", timeout=30).json()
    documented = {
        (method.upper(), path, media_type)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for media_type in operation.get("requestBody", {}).get("content", {})
    }
    fuzzed = {
        (op.method.upper(), op.path, body.media_type) for op in operations for body in op.body
    }
    assert documented <= fuzzed, documented - fuzzed
    cases: Counter[str] = Counter()
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            takes_json = any(body.media_type == "application/json" for body in operation.body)
            for body in REAL_MEDIA.get((operation.method.upper(), operation.path), []):
                if not takes_json:  # the multipart variant of an upload route: sent already
                    break
                case = operation.Case(body=body, media_type="application/json")
                _check(case, "explicit", fuzzed_server, session, cases, failures)
            for mode in schemathesis.GenerationMode:
                _fuzz(operation, mode, fuzzed_server, session, cases, failures)
        assert session.get(f"{fuzzed_server}/health", timeout=30).status_code == 200
    assert not failures, f"{len(failures)} failing cases:\n\n" + "\n\n".join(failures[:10])
    assert sum(cases.values()) >= MIN_CASES, cases


def _fuzz(
    operation: Any,
    mode: schemathesis.GenerationMode,
    url: str,
    session: requests.Session,
    cases: Counter[str],
    failures: list[str],
) -> None:
    """Up to EXAMPLES cases of one operation in one mode; failures are collected, not raised,
    so one bad operation does not hide the others (and nothing shrinks for minutes)."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        _check(case, f"{mode.value} {case.media_type or ''}", url, session, cases, failures)

    try:
        run()
    except Exception as exc:  # nothing to generate (e.g. no negative form of "no inputs")
        if "Unsatisfiable" not in type(exc).__name__ and "unsatisf" not in str(exc).lower():
            raise


def _check(
    case: schemathesis.Case,
    kind: str,
    url: str,
    session: requests.Session,
    cases: Counter[str],
    failures: list[str],
) -> None:
    cases[f"{case.operation.label} {kind}"] += 1
    checks = [not_a_server_error, response_schema_conformance]
    # A multipart field is text on the wire: a "negative" number or object for `request`
    # arrives as valid text, and an empty array as no part at all (the field is optional).
    if case.media_type != "multipart/form-data":
        checks.append(negative_data_rejection)
    try:
        case.call_and_validate(
            base_url=url,
            session=session,
            timeout=60,
            checks=checks,
        )
    except (Exception, BaseExceptionGroup) as exc:  # failed checks: keep them, go on
        failures.append(f"{case.operation.label} [{kind}]: {exc}\n{case.as_curl_command()}")
