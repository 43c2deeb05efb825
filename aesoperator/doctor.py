"""`aesop doctor`: checks of an installation, each saying in words what is wrong and how to fix it.

A check takes the settings and returns its findings; add one by appending it to `CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from aesoperator.config import Settings
from aesoperator.engine.data_dir import DIR_MODE, FILE_MODE, fix_command, loose_modes


class Finding(BaseModel):
    """One result of one check: fine, or a problem with the command that fixes it."""

    check: str
    ok: bool
    message: str
    fix: str | None = None


Check = Callable[[Settings], list[Finding]]


def data_dir_permissions(settings: Settings) -> list[Finding]:
    """The data dir and everything in it must be open to their owner only."""
    name = "data dir permissions"
    data_dir = settings.data_dir
    if not data_dir.exists():
        return [Finding(check=name, ok=True, message=f"{data_dir} does not exist yet; it is created {DIR_MODE:04o}")]
    loose = loose_modes(data_dir)
    if not loose:
        return [
            Finding(
                check=name,
                ok=True,
                message=f"{data_dir}: directories {DIR_MODE:04o}, files {FILE_MODE:04o} (owner only)",
            )
        ]
    return [Finding(check=name, ok=False, message=p.describe(), fix=fix_command(data_dir)) for p in loose]


CHECKS: tuple[Check, ...] = (data_dir_permissions,)


def run_checks(settings: Settings) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(settings)]
