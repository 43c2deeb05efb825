"""Servers by name: registered in this process, or declared as `[servers.NAME]` in aesop.toml."""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

from aesoperator.api.client import MCPClient
from aesoperator.api.engine_server import EngineServer
from aesoperator.api.errors import UnknownServer
from aesoperator.api.server import ENGINE, MCPServer
from aesoperator.config import read_config_file
from aesoperator.context import ContextEngine
from aesoperator.errors import ConfigError

Registered = MCPServer | MCPClient | EngineServer
_registry: dict[str, Registered] = {}
_registry_lock = threading.Lock()


def register_server(
    server: MCPServer | MCPClient | EngineServer | None = None,
    *,
    name: str | None = None,
    engine: ContextEngine | None = None,
    replace: bool = True,
    **fields: Any,
) -> str:
    """Make a server reachable by name: an `MCPServer`, an `MCPClient`, the engine
    (`register_server(name="kb", engine=engine)`), or `MCPServer` fields
    (`register_server(name="docs", url=..., credentials=...)`).

    Args:
        server: The server object to register (or None to build one from the other arguments).
        name: Its name (required without `server`).
        engine: Register this engine under `name` (default "engine").
        replace: Replace a server already registered under the name (it is closed).
        **fields: `MCPServer` fields, or `EngineServer` options with `engine`.

    Returns:
        The name the server is reachable under.

    Raises:
        ConfigError: The arguments contradict each other, or the name is taken and `replace` is False.
    """
    entry: Registered
    if server is None:
        if engine is not None:
            entry = EngineServer(engine, name or ENGINE, **fields)
        else:
            if name is None:
                raise ConfigError("register_server needs a server, or name= and its fields")
            entry = MCPServer(name=name, **fields)
    else:
        if fields or engine is not None:
            raise ConfigError("give either a server object or fields, not both")
        entry = server
        if name is not None and name != server.name:
            raise ConfigError(f"the server is named {server.name!r}, not {name!r}")
    with _registry_lock:
        if entry.name in _registry and not replace:
            raise ConfigError(f"a server named {entry.name!r} is already registered")
        old = _registry.get(entry.name)
        _registry[entry.name] = entry
    if old is not None and old is not entry:
        with suppress(Exception):
            old.close()
    return entry.name


def unregister_server(name: str) -> None:
    """Forget a registered server and close it.

    Args:
        name: The server's name.

    Raises:
        UnknownServer: No server is registered under that name.
    """
    with _registry_lock:
        entry = _registry.pop(name, None)
    if entry is None:
        raise UnknownServer(f"no server named {name!r} is registered")
    with suppress(Exception):
        entry.close()


def registered_servers() -> list[str]:
    """Names registered in this process, then those declared in aesop.toml.

    Returns:
        The sorted names, "engine" included.

    Raises:
        ConfigError: aesop.toml cannot be read.
    """
    names = set(_registry) | set(declared_servers())
    return sorted(names | {ENGINE})


def declared_servers() -> dict[str, dict[str, Any]]:
    """The `[servers.NAME]` tables of aesop.toml, by name.

    Returns:
        Each declared server's table (empty when there is no aesop.toml).

    Raises:
        ConfigError: aesop.toml cannot be read or its servers section is not a table of tables.
    """
    return read_config_file().servers


def get_server(name: str) -> Registered:
    """The server registered (or declared in aesop.toml under [servers.NAME]) as `name`.

    Args:
        name: The server's name.

    Returns:
        The server object (a declared server is built and registered on first use).

    Raises:
        UnknownServer: No server has that name.
        ConfigError: The server's [servers.NAME] table is invalid.
    """
    with _registry_lock:
        entry = _registry.get(name)
    if entry is not None:
        return entry
    declared = declared_servers()
    if name in declared:
        table = declared[name]
        if not isinstance(table, dict):
            raise ConfigError(f"aesop.toml: [servers.{name}] must be a table")
        try:
            made: Registered = (
                EngineServer(name=name, **{k: v for k, v in table.items() if k != "kind"})
                if table.get("kind") == ENGINE
                else MCPServer(name=name, **table)
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"aesop.toml: [servers.{name}]: {exc}") from None
        with _registry_lock:
            return _registry.setdefault(name, made)
    if name == ENGINE:
        with _registry_lock:
            return _registry.setdefault(ENGINE, EngineServer())
    raise UnknownServer(
        f"no server named {name!r}; register it with aesop.register_server(...) or declare [servers.{name}] "
        f"in aesop.toml (known: {registered_servers()})"
    )


def resolve_server(server: str | Registered) -> Registered:
    if isinstance(server, str):
        return get_server(server)
    return server
