"""The `engines:` section of the config: language engines in priority order.

```yaml
engines:
  - name: sglang-main            # unique; responses name the engine that answered
    kind: sglang                 # sglang | vllm | openai (any OpenAI-compatible server) | local
    base_url: http://127.0.0.1:30000
    models: [qwen2.5-vl-7b]      # names under `models:` this engine serves
    served_names: {qwen2.5-vl-7b: qwen-vl}   # optional: the names the engine knows them by
    timeout_s: 120
    api_key_env: SGLANG_API_KEY  # optional: the env var that holds the bearer token
    launch:                      # optional: zooserve starts and stops the server itself
      ready_timeout_s: 900
      memory_mb: 40000           # counted in the manager's ledger while awake
      sleep_after_idle_s: 600    # release GPU memory when idle (vLLM sleep / SGLang release)
  - {name: local, kind: local, models: [qwen2.5-vl-7b]}   # last resort, in-process
```
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from zooserve.catalog.strict import StrictModel
from zooserve.core.redaction import secret_values

EngineKind = Literal["sglang", "vllm", "openai", "local"]
#: How a JSON schema reaches an OpenAI-compatible engine: as `response_format` json_schema
#: (SGLang, vLLM: enforced by their grammar backend), as json_object, or in the prompt only.
StructuredOutput = Literal["json_schema", "json_object", "prompt"]
SleepProtocol = Literal["vllm", "sglang"]
SleepSetting = Literal["vllm", "sglang", "none"]


class LaunchSpec(StrictModel):
    """How zooserve runs the engine as a subprocess (one model per launched engine)."""

    #: Full argv. Default for sglang/vllm: built from the model (see launch.py); required for
    #: kind openai. `{host}`, `{port}`, `{model_path}`, `{served_model_name}` are expanded.
    command: list[str] | None = None
    #: Extra arguments appended to the command (e.g. ["--tp", "2"]).
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    ready_timeout_s: float = Field(default=600.0, gt=0)
    stop_timeout_s: float = Field(default=20.0, gt=0)
    #: Memory the engine holds while awake (weights + KV cache), reserved in the ledger.
    memory_mb: float = Field(default=0.0, ge=0)
    #: Memory it still holds asleep (CUDA context, buffers).
    asleep_memory_mb: float = Field(default=0.0, ge=0)
    #: Put the engine to sleep after this many idle seconds (None: stay awake).
    sleep_after_idle_s: float | None = Field(default=None, gt=0)
    #: Sleep/wake endpoints: vLLM `/sleep` `/wake_up`, SGLang `/release_memory_occupation`
    #: `/resume_memory_occupation`. Defaults to the engine's kind (none for kind openai);
    #: "none" turns sleeping off (and the flags sglang/vllm need for it).
    sleep_protocol: SleepSetting | None = None
    #: vLLM sleep level: 1 offloads weights to CPU RAM, 2 discards them (reload on wake).
    sleep_level: Literal[1, 2] = 1


class EngineSpec(StrictModel):
    """One entry of `engines:` (module docstring)."""

    name: str = Field(min_length=1)
    kind: EngineKind
    base_url: str | None = None
    models: list[str] = Field(min_length=1)
    #: model -> the name this engine serves it under, when it differs from the model's
    #: `options.served_model_name` / model_id (e.g. vLLM's --served-model-name).
    served_names: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=120.0, gt=0)
    api_key_env: str | None = None
    launch: LaunchSpec | None = None
    structured_output: StructuredOutput | None = None
    #: Seconds between health probes (GET /health, else /v1/models).
    health_interval_s: float = Field(default=10.0, gt=0)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.2, ge=0)

    @model_validator(mode="after")
    def _check_kind(self) -> EngineSpec:
        unknown = sorted(set(self.served_names) - set(self.models))
        if unknown:
            raise ValueError(f"served_names names models this engine does not list: {unknown}")
        if self.kind == "local":
            if self.base_url or self.launch:
                raise ValueError("a local engine runs in-process: remove base_url and launch")
            return self
        if not self.base_url:
            raise ValueError(f"a {self.kind} engine needs base_url (e.g. http://127.0.0.1:30000)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.launch is not None:
            if len(self.models) != 1:
                raise ValueError("a launched engine serves exactly one model: list one in models")
            if self.kind == "openai" and not self.launch.command:
                raise ValueError("launch.command is required for kind openai")
        return self

    def secrets(self) -> set[str]:
        """Every secret the config gives this engine: its bearer token (`api_key_env`, read
        from the environment now), the password in its base_url, and secret flags and
        variables of its launch command (core.redaction hides them wherever they show)."""
        found: set[str] = set()
        token = os.environ.get(self.api_key_env) if self.api_key_env else None
        if token:
            found.add(token)
        with contextlib.suppress(ValueError):
            password = urlsplit(self.base_url or "").password
            if password:
                found.add(password)
        if self.launch is not None:
            argv = [*(self.launch.command or []), *self.launch.args]
            found |= secret_values(argv, self.launch.env)
        return found

    @property
    def root_url(self) -> str:
        """base_url without a trailing `/v1`: where /health and the sleep endpoints live."""
        url = (self.base_url or "").rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def api_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def structured_mode(self) -> StructuredOutput:
        return self.structured_output or "json_schema"

    @property
    def sleep_protocol(self) -> SleepProtocol | None:
        if self.launch is None:
            return None
        if self.launch.sleep_protocol:
            setting = self.launch.sleep_protocol
            return None if setting == "none" else setting
        if self.kind == "vllm" or self.kind == "sglang":
            return self.kind
        return None
