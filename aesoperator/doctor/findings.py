"""What a check of `aesop doctor` reports: findings, each fine or a problem in words."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from aesoperator.config import Settings


class Finding(BaseModel):
    """One result of one check: fine, or a problem with the command that fixes it."""

    check: str
    ok: bool
    message: str
    fix: str | None = None


Check = Callable[[Settings], list[Finding]]
