"""The one reader of `aesop.toml` and the one `${VAR}` resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from aesoperator.config import (
    ConfigFile,
    has_env_ref,
    load_settings,
    read_config_file,
    resolve_env_refs,
    resolve_env_values,
)
from aesoperator.errors import ConfigError

FULL = """
data_dir = "/tmp/aesop-data"
embedding_batch_size = 32

[sources.notes]
kind = "memory"
command = "mcp-memory"
env = { NOTES_TOKEN = "${NOTES_TOKEN}" }

[servers.code]
repo = "/srv/repo"
read_only = true
"""


def test_all_three_sections_are_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "aesop.toml"
    path.write_text(FULL)
    config = read_config_file(path)
    assert isinstance(config, ConfigFile) and config.exists and config.path == path
    assert config.settings == {"data_dir": "/tmp/aesop-data", "embedding_batch_size": 32}
    assert config.sources == {
        "notes": {"kind": "memory", "command": "mcp-memory", "env": {"NOTES_TOKEN": "${NOTES_TOKEN}"}}
    }
    assert config.servers == {"code": {"repo": "/srv/repo", "read_only": True}}
    # the settings section feeds Settings; the environment still wins over the file
    monkeypatch.setenv("AESOP_CONFIG", str(path))
    monkeypatch.setenv("AESOP_EMBEDDING_BATCH_SIZE", "8")
    settings = load_settings()
    assert settings.data_dir == Path("/tmp/aesop-data") and settings.embedding_batch_size == 8


def test_a_missing_file_reads_as_empty_sections(tmp_path: Path) -> None:
    config = read_config_file(tmp_path / "absent.toml")
    assert not config.exists and config.settings == {} and config.sources == {} and config.servers == {}


def test_a_malformed_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "aesop.toml"
    path.write_text("[sources.notes\nkind = 'memory'\n")
    with pytest.raises(ConfigError, match=r"aesop\.toml is not valid TOML"):
        read_config_file(path)
    monkeypatch.setenv("AESOP_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"aesop\.toml is not valid TOML"):
        load_settings()


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "aesop.toml"
    path.write_text('embeding_model = "x"\n')
    with pytest.raises(ConfigError, match=r"aesop\.toml: unknown setting 'embeding_model'"):
        read_config_file(path)


def test_a_bad_value_names_the_file_the_key_and_the_value(tmp_path: Path) -> None:
    path = tmp_path / "aesop.toml"
    path.write_text('embedding_batch_size = "many"\n')
    with pytest.raises(ConfigError, match=r"aesop\.toml: setting embedding_batch_size = 'many': .*integer"):
        read_config_file(path)
    path.write_text('sources = "notes"\n')
    with pytest.raises(ConfigError, match=r"'sources' must be a table of \[sources\.NAME\] tables"):
        read_config_file(path)
    path.write_text("[servers]\ncode = 3\n")
    with pytest.raises(ConfigError, match=r"\[servers\.code\] must be a table, not 3"):
        read_config_file(path)


def test_env_references_are_resolved_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCS_TOKEN", "t0k")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert has_env_ref("Bearer ${DOCS_TOKEN}") and not has_env_ref("Bearer $DOCS_TOKEN")
    assert resolve_env_refs("Bearer ${DOCS_TOKEN}", "source 'docs'") == "Bearer t0k"
    assert resolve_env_refs("${A}-${B}", "x", environ={"A": "1", "B": "2"}) == "1-2"
    assert resolve_env_values({"Authorization": "Bearer ${DOCS_TOKEN}"}, "source 'docs'") == {
        "Authorization": "Bearer t0k"
    }
    with pytest.raises(ConfigError, match="source 'docs' needs the environment variable NOT_SET_ANYWHERE"):
        resolve_env_refs("${NOT_SET_ANYWHERE}", "source 'docs'")
