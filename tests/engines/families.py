"""The families this feature adds, registered for tests until families/__init__.py lists them.

Import the fixture into a test module (`from tests.engines.families import engine_families`).
Once the registry has these entries the patch changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zooserve import families

ENGINE_FAMILIES = {
    "local_llm": "zooserve.engines.local:LocalGenerator",
    "sentence_transformers": "zooserve.families.hf.sentence_embedder:SentenceEmbedder",
}


@pytest.fixture(scope="module")
def engine_families() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for family, target in ENGINE_FAMILIES.items():
            patch.setitem(families.FAMILIES, family, families.FAMILIES.get(family, target))
        yield
