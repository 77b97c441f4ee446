"""Nothing secret on public routes: /health without the key says status, device and memory
only; with the key, engine details never show a token. A real server with an API key and two
engines that carry secrets: one launched with `--api-key`/`--hf-token`/`HF_TOKEN` that echoes
its argv and exits (so its `last_error` would repeat them), one remote with a password in its
URL and a bearer token from the environment (down: nothing listens)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from zooserve.api.server import BackgroundServer, free_port
from zooserve.catalog import load_config
from zooserve.core.redaction import redact_argv, redact_text

KEY = "health-key-0123456789"
SECRETS = {
    "argv": "sk-argv-secret-4242",
    "argv_equals": "hf_equals_secret_777",
    "env": "hf_env_secret_31337",
    "url": "url-pass-9876",
    "bearer": "bearer-secret-5555",
}
#: Prints its argv (as engines log their "non-default args") and fails to start.
ECHO_AND_EXIT = "import sys; print('engine args:', ' '.join(sys.argv[1:])); sys.exit(3)"
PUBLIC_FIELDS = {
    "status",
    "device",
    "gpu_memory_allocated",
    "gpu_memory_reserved",
    "memory_budget_mb",
    "memory_used_mb",
    "process_rss_mb",
    "nvml",
}
SEED_TASKS = {"object_detection", "video_tracking", "video_summarization", "ontology_augmentation"}


@pytest.fixture(scope="module")
def secured(
    media_root: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: None
) -> Iterator[str]:
    face = {
        "model_id": "opencv:haarcascade_frontalface_default.xml",
        "family": "opencv_cascade",
        "framework": "opencv",
        "options": {"label": "face"},
    }
    command = [sys.executable, "-c", ECHO_AND_EXIT, "--api-key", SECRETS["argv"]]
    config = {
        "device": "cpu",
        "media_root": str(media_root),
        "jobs_db": str(tmp_path_factory.mktemp("health-jobs") / "jobs.sqlite3"),
        "tasks": {
            "object_detection": {"selected": "face", "options": ["face"]},
            "video_tracking": {"selected": "face", "options": ["face"]},
            "video_summarization": {"selected": "chat", "options": ["chat"]},
            "ontology_augmentation": {"selected": "chat", "options": ["chat"]},
        },
        "models": {"face": face, "chat": {"model_id": "/none/chat", "category": "llm"}},
        "engines": [
            {
                "name": "launched",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "models": ["chat"],
                "launch": {
                    "command": command,
                    "args": [f"--hf-token={SECRETS['argv_equals']}"],
                    "env": {"HF_TOKEN": SECRETS["env"]},
                    "ready_timeout_s": 20,
                },
            },
            {
                "name": "remote",
                "kind": "openai",
                "base_url": f"http://ops:{SECRETS['url']}@127.0.0.1:{free_port()}/v1",
                "models": ["chat"],
                "api_key_env": "ZOOSERVE_TEST_ENGINE_KEY",
            },
        ],
    }
    path = tmp_path_factory.mktemp("health-secrets") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    with BackgroundServer(load_config(path), api_key=KEY) as server:
        yield server.url


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOOSERVE_TEST_ENGINE_KEY", SECRETS["bearer"])
        yield


def assert_no_secret(text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"the {name} secret leaked"
    assert KEY not in text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"X-API-Key": "wrőng".encode()},
    ],
)
def test_health_without_the_key_is_status_device_and_memory_only(
    secured: str, headers: dict[str, str | bytes]
) -> None:
    response = httpx.get(secured + "/health", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC_FIELDS
    assert body["status"] == "healthy" and body["device"] == "cpu"
    assert_no_secret(response.text)


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_health_with_the_key_shows_engines_without_their_secrets(secured: str, header: str) -> None:
    value = f"Bearer {KEY}" if header == "Authorization" else KEY
    response = httpx.get(secured + "/health", headers={header: value})
    body = response.json()
    assert body["status"] == "healthy" and "models_loaded" in body
    launched, remote = body["engines"]["launched"], body["engines"]["remote"]
    assert launched["state"] == "down" and remote["state"] == "down"
    managed = launched["managed"]
    assert managed["command"][-3:] == ["--api-key", "***", "--hf-token=***"]
    assert "exited with code 3" in managed["last_error"]
    assert "engine args: --api-key *** --hf-token=***" in managed["last_error"]
    assert remote["base_url"].startswith("http://***@127.0.0.1:")
    assert_no_secret(response.text)


def test_models_info_redacts_engines_and_uses_the_seed_task_keys(secured: str) -> None:
    response = httpx.get(secured + "/models/info", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    body = response.json()
    assert set(body["available_models"]) == SEED_TASKS
    assert body["engines"]["launched"]["managed"]["command"][-2:] == ["***", "--hf-token=***"]
    assert_no_secret(response.text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("--api-key sk-1 --port 8000", "--api-key *** --port 8000"),
        ("--token=abc --hf-token abc2 --tokenizer /t", "--token=*** --hf-token *** --tokenizer /t"),
        ("GET http://user:pw@host/v1?api_key=k1&x=1", "GET http://***@host/v1?api_key=***&x=1"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("{'authorization': 'Basic dXNlcjpw'}", "{'authorization': 'Basic ***'}"),
        ("HF_TOKEN=hf_1 VLLM_API_KEY=v2 OTHER=1", "HF_TOKEN=*** VLLM_API_KEY=*** OTHER=1"),
        ("{'api_key': ['sk-2'], 'max_tokens': 5}", "{'api_key': ['***'], 'max_tokens': 5}"),
        ("password: hunter22, accessToken=t9", "password: ***, accessToken=***"),
        ("--max-num-batched-tokens 512 --kv-cache-dtype fp8", None),
    ],
)
def test_redact_text_hides_secret_values_in_every_form(text: str, shown: str | None) -> None:
    assert redact_text(text) == (text if shown is None else shown)


def test_redact_argv_hides_the_value_after_a_secret_flag_and_known_secrets() -> None:
    argv = ["vllm", "serve", "/m", "--api-key", "k-1", "--port", "8", "--note", "has s3cr3t-x in"]
    assert redact_argv(argv, {"s3cr3t-x"}) == [
        *argv[:4],
        "***",
        "--port",
        "8",
        "--note",
        "has *** in",
    ]


@pytest.mark.parametrize("key", ["wrőng".encode(), b"\xff\xfe", b"wrong"])
def test_a_wrong_key_of_any_bytes_is_a_401_never_a_500(secured: str, key: bytes) -> None:
    response = httpx.get(secured + "/models/info", headers={"X-API-Key": key})  # type: ignore[dict-item]
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/augment", {"persona_name": "guard"}),
        ("/api/summarize", {"video_path": "walk.mp4", "persona_context": "a guard"}),
    ],
)
def test_a_503_from_engines_with_secrets_shows_none(
    secured: str, path: str, body: dict[str, str]
) -> None:
    response = httpx.post(secured + path, json=body, headers={"X-API-Key": KEY}, timeout=60)
    assert response.status_code == 503, response.text
    reasons = {f["engine"]: f["reason"] for f in response.json()["error"]["details"]["failures"]}
    assert set(reasons) == {"launched", "remote"}
    assert "http://***@127.0.0.1:" in reasons["remote"]  # the URL, its password hidden
    assert_no_secret(response.text)


def test_an_error_that_echoes_a_known_secret_hides_it(secured: str) -> None:
    """Any path, not only an engine's: the envelope hides every registered secret."""
    headers = {"X-API-Key": KEY}
    response = httpx.post(
        secured + "/models/load", json={"model_id": SECRETS["bearer"]}, headers=headers
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert "'***'" in response.json()["error"]["message"]
    assert_no_secret(response.text)
