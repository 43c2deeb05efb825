"""Checks of files that hold secrets: the data dir's modes, the token file, the audit key."""

from __future__ import annotations

import stat
from pathlib import Path

from aesoperator.config import Settings
from aesoperator.doctor.findings import Finding
from aesoperator.engine.data_dir import DIR_MODE, FILE_MODE, fix_command, loose_modes
from aesoperator.errors import AesopError
from aesoperator.security.audit_format import KEY_FILE
from aesoperator.security.tokens import TOKENS_FILE, TokenStore


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


def _owner_only(path: Path, name: str, what: str) -> Finding | None:
    """A problem if `path` can be read or written by anyone but its owner."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Finding(
            check=name,
            ok=False,
            message=f"{what} {path} has mode {mode:04o}: other local users can read or change it",
            fix=f"chmod 600 {path}",
        )
    return None


def token_file(settings: Settings) -> list[Finding]:
    """The static tokens' file: owner-only, and readable as tokens (a corrupt one refuses everyone)."""
    name = "tokens file"
    path = settings.data_dir / TOKENS_FILE
    if not path.exists():
        return [Finding(check=name, ok=True, message=f"no {path}: no static tokens issued (`aesop tokens add`)")]
    loose = _owner_only(path, name, "the tokens file")
    if loose is not None:
        return [loose]
    try:
        tokens = TokenStore(path).tokens()
    except AesopError as exc:
        return [Finding(check=name, ok=False, message=f"{path} cannot be read: {exc}", fix=f"restore {path}")]
    active = sum(1 for t in tokens if t.public_view()["status"] == "active")
    return [Finding(check=name, ok=True, message=f"{path}: mode 0600, {len(tokens)} token(s), {active} active")]


def audit_key_file(settings: Settings) -> list[Finding]:
    """The key that signs the audit log must be the owner's alone."""
    name = "audit key"
    path = Path(settings.audit_key_file).expanduser() if settings.audit_key_file else settings.data_dir / KEY_FILE
    if not path.exists():
        return [Finding(check=name, ok=True, message=f"no {path} yet: created with the audit log's first record")]
    loose = _owner_only(path, name, "the audit key")
    return [loose] if loose is not None else [Finding(check=name, ok=True, message=f"{path}: owner only")]
