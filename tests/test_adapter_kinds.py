"""Source kinds are found through one table: every adapter module is in it, and only there."""

from __future__ import annotations

import pkgutil

import pytest

import aesoperator.ingest.adapters as adapters_package
from aesoperator.errors import ConfigError
from aesoperator.ingest.adapters.kinds import ADAPTERS, SOURCE_KINDS, make_adapter
from aesoperator.ingest.registry import definition_from_table
from aesoperator.ingest.sources import SourceDefinition

NOT_ADAPTERS = {"base", "kinds", "filesystem_documents"}  # helpers, not adapters


def test_every_adapter_module_is_in_the_table() -> None:
    modules = {m.name for m in pkgutil.iter_modules(adapters_package.__path__)} - NOT_ADAPTERS
    in_table = {cls.__module__.rsplit(".", 1)[-1] for cls in ADAPTERS.values()}  # type: ignore[attr-defined]
    assert modules == in_table
    assert set(SOURCE_KINDS) == set(ADAPTERS)


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_each_adapter_class_is_named_after_its_source_and_says_so(kind: str) -> None:
    cls = ADAPTERS[kind]
    assert cls.__name__.endswith("Adapter") and cls.__name__ != "Adapter"  # type: ignore[attr-defined]


def test_make_adapter_uses_the_table() -> None:
    definition = SourceDefinition(name="notes", kind="filesystem", command="npx", options={"roots": ["/tmp"]})
    assert type(make_adapter(definition)) is ADAPTERS["filesystem"]


def test_an_unknown_kind_is_one_config_error_listing_the_kinds() -> None:
    with pytest.raises(ConfigError, match=r"no adapter for source kind 'nope'.*filesystem"):
        make_adapter(SourceDefinition(name="x", kind="nope", command="npx"))
    with pytest.raises(ConfigError, match=r"kind 'nope' is unknown; known kinds: .*aesop_github"):
        definition_from_table("x", {"kind": "nope", "command": "npx"}, "aesop.toml")
