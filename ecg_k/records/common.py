"""Parts shared by several records."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CodeVersion(BaseModel):
    """The code that wrote a record (:func:`ecg_k.version.code_version`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    package: str
    git_commit: str | None = None
    git_dirty: bool | None = None
