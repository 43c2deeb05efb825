"""Where MCP sources are declared, and what the store knows about each.

Two places, same shape (that of common MCP client configs: `command`, `args`, `env`, `url`, plus
`kind`, `namespace`, `include`, `exclude`, `options`, `credentials`):

- `[sources.NAME]` tables in `aesop.toml` (the project's config, edited by hand);
- `<data_dir>/sources.toml`, written by `aesop sources add` / `remove`.

A name declared in aesop.toml wins over the same name in sources.toml. sources.toml never holds
secrets: credentials are environment variable names (`--credential bearer_token=GITHUB_TOKEN`),
and env, header and option values under secret-looking keys must be `${VAR}` references.
Writes are atomic (temp file + rename) and serialized with a file lock.

```toml
[sources.everything]
kind = "everything"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-everything"]

[sources.docs-api]
kind = "web"
url = "https://mcp.example.com/mcp"
credentials = { bearer_token = "DOCS_API_TOKEN" }
```
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from aesoperator.config import Settings, config_file_path, has_env_ref, read_config_file
from aesoperator.engine.data_dir import make_private_dir, open_private_lock
from aesoperator.engine.stores.base import GraphStore, WriteBatch
from aesoperator.errors import ConfigError
from aesoperator.ingest.adapters.kinds import SOURCE_KINDS
from aesoperator.ingest.mcp_ingest import RUN_KEY, last_run
from aesoperator.ingest.pipeline import RESERVED_PREFIX, SOURCE_IDENTITY_KEY, quarantined
from aesoperator.ingest.sources import SourceDefinition

SOURCES_FILE = "sources.toml"
Origin = Literal["aesop.toml", "sources.toml"]

# Keys of common MCP client configs that carry nothing for us; accepted and ignored.
_IGNORED_KEYS = frozenset({"type", "transport", "description", "disabled"})
_SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:token|secret|password|passwd|pass|api[_-]?key|apikey|private[_-]?key|credentials?|authorization)$",
    re.IGNORECASE,
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class RegisteredSource:
    definition: SourceDefinition
    origin: Origin
    path: Path


# -- validation --------------------------------------------------------------------------------
def definition_from_table(name: str, table: Mapping[str, Any], where: str) -> SourceDefinition:
    """Build a SourceDefinition from a `[sources.NAME]` table; problems become one ConfigError."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [sources.{name}] must be a table")
    known = set(SourceDefinition.model_fields) - {"name"}
    unknown = sorted(set(table) - known - _IGNORED_KEYS)
    if unknown:
        raise ConfigError(f"{where}: source {name!r} has unknown keys {unknown}; known keys are {sorted(known)}")
    data = {k: v for k, v in table.items() if k in known}
    if "kind" in data and data["kind"] not in SOURCE_KINDS:
        raise ConfigError(
            f"{where}: source {name!r}: kind {data['kind']!r} is unknown; known kinds: {', '.join(SOURCE_KINDS)}"
        )
    try:
        return SourceDefinition(name=name, **data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'definition'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: source {name!r}: {problems}") from None


def check_no_secrets(definition: SourceDefinition) -> None:
    """Refuse literal values under secret-looking keys: they would be written to disk."""
    places: list[tuple[str, Mapping[str, Any]]] = [
        ("env", definition.env),
        ("headers", definition.headers),
        ("options", definition.options),
    ]
    for label, values in places:
        for key, value in values.items():
            if _SECRET_KEY.search(key) and isinstance(value, str) and value and not has_env_ref(value):
                raise ConfigError(
                    f"source {definition.name!r}: {label}.{key} looks like a secret; sources.toml never stores "
                    f"secrets: write it as ${{ENV_VAR}} or pass --credential PURPOSE=ENV_VAR"
                )
    for purpose, var in definition.credentials.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ConfigError(
                f"source {definition.name!r}: credential {purpose!r} must name an environment variable "
                f"(letters, digits, '_'), not hold its value"
            )


# -- a small TOML writer for the shapes a definition holds --------------------------------------
def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{_toml_key(str(k))} = {_toml_value(v, where)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ConfigError(f"{where}: a {type(value).__name__} cannot be written to TOML")


def _render(definitions: Mapping[str, SourceDefinition]) -> str:
    lines = [
        "# MCP sources added with `aesop sources add`; edit with care.",
        "# Credentials are environment variable NAMES, never values.",
    ]
    for name, definition in sorted(definitions.items()):
        data = definition.model_dump(exclude_defaults=True, exclude={"name"})
        data = {"kind": definition.kind, **{k: v for k, v in data.items() if k != "kind"}}
        lines += ["", f"[sources.{_toml_key(name)}]"]
        for key, value in data.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value, f'source {name!r}')}")
    return "\n".join(lines) + "\n"


# -- the registry ------------------------------------------------------------------------------
class SourceRegistry:
    def __init__(self, data_dir: Path, config_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.config_path = Path(config_path) if config_path is not None else config_file_path()
        self.sources_path = self.data_dir / SOURCES_FILE

    @classmethod
    def for_settings(cls, settings: Settings) -> SourceRegistry:
        return cls(settings.data_dir)

    def _read(self, path: Path, origin: Origin) -> dict[str, RegisteredSource]:
        return {
            name: RegisteredSource(definition_from_table(name, table, str(path)), origin, path)
            for name, table in read_config_file(path).sources.items()
        }

    def entries(self) -> dict[str, RegisteredSource]:
        """Every declared source by name; aesop.toml wins over sources.toml."""
        merged = self._read(self.sources_path, "sources.toml")
        merged.update(self._read(self.config_path, "aesop.toml"))
        return dict(sorted(merged.items()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()

    def get(self, name: str) -> SourceDefinition:
        entry = self.entries().get(name)
        if entry is None:
            raise ConfigError(f"no source named {name!r}; add it with `aesop sources add {name} --kind ...`")
        return entry.definition

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize read-modify-write of sources.toml across processes (POSIX file lock)."""
        make_private_dir(self.data_dir)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks on this platform
            yield
            return
        with open_private_lock(self.data_dir / (SOURCES_FILE + ".lock")) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write(self, definitions: Mapping[str, SourceDefinition]) -> None:
        text = _render(definitions)
        fd, tmp = tempfile.mkstemp(prefix=".sources.", suffix=".toml", dir=self.data_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.sources_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def add(self, definition: SourceDefinition, replace: bool = False) -> Path:
        """Keep `definition` in sources.toml; refuses secrets, and names aesop.toml declares."""
        check_no_secrets(definition)
        with self._locked():
            declared = self._read(self.config_path, "aesop.toml")
            if definition.name in declared:
                raise ConfigError(f"source {definition.name!r} is declared in {self.config_path}; change it there")
            current = {n: e.definition for n, e in self._read(self.sources_path, "sources.toml").items()}
            if definition.name in current and not replace:
                raise ConfigError(f"source {definition.name!r} already exists; pass --replace to overwrite it")
            current[definition.name] = definition
            self._write(current)
        return self.sources_path

    def remove(self, name: str) -> None:
        with self._locked():
            if name in self._read(self.config_path, "aesop.toml"):
                raise ConfigError(f"source {name!r} is declared in {self.config_path}; remove it there")
            current = {n: e.definition for n, e in self._read(self.sources_path, "sources.toml").items()}
            if name not in current:
                raise ConfigError(f"no source named {name!r} in {self.sources_path}")
            del current[name]
            self._write(current)


# -- what the store knows about a source ---------------------------------------------------------
def source_status(store: GraphStore, name: str) -> dict[str, Any]:
    """Identity, last run, counts and quarantined items of one source, from the store."""
    states = store.source_items(name)
    items = [s for k, s in states.items() if not k.startswith(RESERVED_PREFIX)]
    identity = states.get(SOURCE_IDENTITY_KEY)
    return {
        "source": name,
        "identity": identity.cursor if identity is not None else None,
        "last_run": last_run(store, name) if RUN_KEY in states else None,
        "items": len(items),
        "entities": sum(len(s.entity_ids) for s in items),
        "relations": sum(len(s.relation_ids) for s in items),
        "quarantined": [{"key": k, "reason": r, "at": a} for k, r, a in quarantined(states)],
    }


def purge_source(store: GraphStore, name: str, batch_size: int = 1000) -> int:
    """Delete everything a source brought in: the entities its items own, the entities tagged with
    its name (shared ones too), and its sync state. Returns how many entities were deleted."""
    states = store.source_items(name)
    ids: set[str] = {i for s in states.values() for i in s.entity_ids}
    for batch in store.iter_entities(batch_size=batch_size):
        ids.update(e.id for e in batch if e.source == name)
    ordered = sorted(ids)
    deleted = 0
    for start in range(0, len(ordered), batch_size):
        result = store.write(WriteBatch(delete_entity_ids=ordered[start : start + batch_size]))
        deleted += result.entities_deleted
    keys = [(name, key) for key in states]
    for start in range(0, len(keys), batch_size):
        store.write(WriteBatch(delete_source_items=keys[start : start + batch_size]))
    return deleted
