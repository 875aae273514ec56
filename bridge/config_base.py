"""What every section of the configuration tree is built on: frozen models that refuse unknown keys.

Frozen, so the one configuration loaded at start is never changed underneath a running task;
``extra="forbid"``, so a misspelt key is an error naming it rather than a silent default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveSeconds = Annotated[float, Field(gt=0)]


class Frozen(BaseModel):
    """The base of every configuration section."""

    model_config = ConfigDict(frozen=True, extra="forbid")
