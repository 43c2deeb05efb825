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
    embedding_model: str = Field(default=DEFAULT_MODEL, description="sentence-transformers model name or path.")
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    embed_on_ingest: bool = True
    write_batch_size: int = Field(default=1000, ge=1, le=100_000)
    chunk_chars: int = Field(default=1200, ge=200, le=20_000)
    chunk_overlap_chars: int = Field(default=150, ge=0, le=5_000)
    max_file_bytes: int = Field(default=2_000_000, ge=1)
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

    extractor: Literal["default", "rules", "llm", "none"] = Field(
        default="default",
        description=(
            "Knowledge extraction on ingest and remember: 'default' (rules + the offline spaCy NER model),"
            " 'rules' (no model), 'llm' (an OpenAI-compatible chat API), 'none'."
        ),
    )
    knowledge_factory: str = Field(
        default="aesoperator.ingest.extract.factory:knowledge_stage_for_engine",
        description="module:function that builds the engine's knowledge stage from the engine ('' for none).",
    )
    llm_base_url: str = Field(default="", description="OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1.")
    llm_model: str = ""
    llm_api_key_env: str = Field(default="AESOP_LLM_API_KEY", description="NAME of the variable holding the key.")
    llm_token_budget: int = Field(default=200_000, ge=0, description="Tokens one ingest may spend on the LLM.")
    llm_batch_items: int = Field(default=8, ge=1, le=100)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0, le=10)

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
