"""Language engines: OpenAI-compatible servers (SGLang, vLLM, ...) and the local transformers
engine, with failover, health probes and managed launches.

Kept import-light on purpose: `catalog` imports `engines.config`, so this package must not
import the manager. Import the pool from `zooserve.engines.pool`.
"""

from zooserve.catalog.engines import EngineSpec, LaunchSpec
from zooserve.engines.types import ChatMessage, EngineFailure, Generation, GenerationRequest

__all__ = [
    "ChatMessage",
    "EngineFailure",
    "EngineSpec",
    "Generation",
    "GenerationRequest",
    "LaunchSpec",
]
