"""`from aesoperator import ...` gives the public API, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import aesoperator
from aesoperator import errors

HEAVY = ("torch", "sentence_transformers", "faiss", "numpy", "networkx", "aesoperator.engine", "aesoperator.api")


def test_the_public_names_import_from_the_package() -> None:
    from aesoperator import (
        AesopError,
        AuthError,
        ConfigError,
        ContextEngine,
        Entity,
        Episode,
        MappingError,
        PermissionDenied,
        RateLimited,
        Relation,
        SchemaError,
        Settings,
        SourceError,
        StoreError,
    )
    from aesoperator.context import ContextEngine as Facade

    assert ContextEngine is Facade
    assert {Entity.__name__, Relation.__name__, Episode.__name__, Settings.__name__} == {
        "Entity",
        "Relation",
        "Episode",
        "Settings",
    }
    for error in (ConfigError, SourceError, SchemaError, StoreError, AuthError, PermissionDenied, RateLimited):
        assert issubclass(error, AesopError)
    assert issubclass(MappingError, SchemaError)


def test_all_lists_every_public_name_and_each_resolves() -> None:
    exported = set(aesoperator.__all__)
    assert len(exported) == len(aesoperator.__all__)
    public_errors = {
        name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)
    }
    assert public_errors <= exported
    for name in aesoperator.__all__:
        assert getattr(aesoperator, name) is not None
    assert set(aesoperator._LAZY) <= exported


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = f"import sys, aesoperator; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
