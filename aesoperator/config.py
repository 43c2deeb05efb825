"""Settings: `AESOP_*` environment variables, an optional `aesop.toml`, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aesoperator.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _toml_path() -> Path:
    return Path(os.environ.get("AESOP_CONFIG", "aesop.toml"))


class Settings(BaseSettings):
    """Engine settings. Environment variables win over `aesop.toml`, which wins over defaults."""

    model_config = SettingsConfigDict(env_prefix="AESOP_", extra="ignore")

    data_dir: Path = Field(default=Path(".aesop"), description="Where the embedded store and index live.")
    graph: str = Field(
        default="embedded",
        description="'embedded' (SQLite + networkx in data_dir) or a Neo4j URI such as neo4j://127.0.0.1:7687.",
    )
    neo4j_user: str = "neo4j"
    neo4j_password: str = Field(default="", description="Neo4j password; prefer AESOP_NEO4J_PASSWORD.")
    neo4j_database: str | None = None
    neo4j_connection_timeout: float = Field(
        default=15.0, gt=0, le=600, description="Seconds to wait for a connection to Neo4j (each attempt)."
    )
    neo4j_max_retry_time: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "Seconds a Neo4j transaction is retried on transient failures (a lost connection, a leader"
            " switch) before the call fails with a StoreError saying the server is unreachable."
        ),
    )
    embedding_model: str = Field(default=DEFAULT_MODEL, description="sentence-transformers model name or path.")
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    embed_on_ingest: bool = True
    write_batch_size: int = Field(default=1000, ge=1, le=100_000)
    chunk_chars: int = Field(default=1200, ge=200, le=20_000)
    chunk_overlap_chars: int = Field(default=150, ge=0, le=5_000)
    max_file_bytes: int = Field(default=2_000_000, ge=1)
    max_dir_depth: int = Field(
        default=128, ge=1, description="Directory levels a folder ingest walks; deeper ones are skipped and reported."
    )
    file_read_timeout: float = Field(default=10.0, gt=0, description="Seconds one file read may take when ingesting.")
    default_namespace: str = "default"
    token_budget: int = Field(default=2000, ge=50)
    vector_exact_max: int = Field(
        default=100_000,
        ge=1,
        description="Namespaces with more vectors than this get an approximate (IVF) index instead of exact search.",
    )
    keyword_index: Literal["memory", "store"] = Field(
        default="memory",
        description=(
            "'memory': BM25 from an in-memory index derived from the store (fast at any size, same"
            " ranking as the embedded store's FTS5); 'store': the store's own full-text index (less memory)."
        ),
    )
    vector_nprobe: int = Field(
        default=64, ge=1, le=65_536, description="IVF lists searched per query: more is slower and more exact."
    )

    audit_key_file: Path | None = Field(
        default=None,
        description=(
            "Key that signs the audit log (default <data_dir>/audit.key). Keep it outside the data dir,"
            " readable by the server but not writable by whoever can write the data dir."
        ),
    )
    jwt_issuer: str | None = Field(default=None, description="Accept OAuth2 JWT access tokens from this issuer.")
    jwt_audience: str | None = Field(
        default=None, description="Audience JWTs must carry (default: the server's resource URL)."
    )
    jwks_url: str | None = Field(default=None, description="The issuer's JWKS (https, or http on loopback).")
    jwks_file: Path | None = Field(default=None, description="A local JWKS file (re-read when it changes).")
    jwt_algorithms: list[str] | None = Field(
        default=None, description="Allowed JWT signature algorithms (default RS256 and ES256)."
    )
    jwt_leeway: float = Field(default=30.0, ge=0, le=600, description="Seconds of clock skew allowed on exp and nbf.")

    @field_validator("graph")
    @classmethod
    def _check_graph(cls, value: str) -> str:
        if value == "embedded" or value.split("://", 1)[0] in {"neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s"}:
            return value
        raise ValueError(f"graph must be 'embedded' or a neo4j:// or bolt:// URI, got {value!r}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_toml_path()),
            file_secret_settings,
        )

    @property
    def uses_neo4j(self) -> bool:
        return self.graph != "embedded"


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation problems into one readable `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    except Exception as exc:  # a malformed aesop.toml surfaces here
        raise ConfigError(f"could not read settings ({_toml_path()}): {exc}") from None
