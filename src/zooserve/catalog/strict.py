"""The base of every config section: unknown keys are errors, so a misspelt key cannot pass
as a default silently."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
