"""Configuration: `AESOP_*` environment variables, an optional `aesop.toml`, then defaults.

`aesop.toml` is read in one place, `read_config_file`, into three sections:

- settings: the top-level keys, each a `Settings` field (environment variables win over them);
- sources: `[sources.NAME]` tables, the MCP sources to ingest (typed by `aesoperator.ingest.registry`);
- servers: `[servers.NAME]` tables, the servers of the Python API (typed by `aesoperator.api.registry`).

`${VAR}` references in values are filled from the environment by one resolver, `resolve_env_refs`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aesoperator.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Tokens of packed context an answer gets when the call names no budget: ten short passages, or
# four or five long ones, with their facts.
DEFAULT_TOKEN_BUDGET = 1500
SECTIONS = ("sources", "servers")

# A reference to an environment variable inside a configured value: ${NAME}.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def config_file_path() -> Path:
    """Where the project's config file is: `$AESOP_CONFIG`, else `aesop.toml` in the working directory.

    Returns:
        The path (which need not exist).
    """
    return Path(os.environ.get("AESOP_CONFIG", "aesop.toml"))


_toml_path = config_file_path  # the former private name


# -- ${VAR} references ------------------------------------------------------------------------
def has_env_ref(value: str) -> bool:
    """Whether `value` holds a `${VAR}` reference.

    Args:
        value: A configured string.

    Returns:
        True when at least one `${VAR}` reference appears in it.
    """
    return ENV_REF.search(value) is not None


def resolve_env_refs(value: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    """Fill every `${VAR}` reference in `value` from the environment.

    Args:
        value: A configured string, e.g. "Bearer ${DOCS_TOKEN}".
        what: Who needs the value, for the error message (e.g. "source 'docs'").
        environ: Where variables are read (default: this process's environment).

    Returns:
        `value` with each reference replaced by the variable's value.

    Raises:
        ConfigError: A referenced variable is not set; the message names `what` and the variable.
    """
    env = os.environ if environ is None else environ

    def fill(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in env:
            raise ConfigError(f"{what} needs the environment variable {var}")
        return env[var]

    return ENV_REF.sub(fill, value)


def resolve_env_values(values: Mapping[str, str], what: str) -> dict[str, str]:
    """`resolve_env_refs` over every value of a mapping (an env or headers table).

    Args:
        values: Names to configured strings.
        what: Who needs the values, for the error message.

    Returns:
        A new dict with every reference filled.

    Raises:
        ConfigError: A referenced variable is not set.
    """
    return {key: resolve_env_refs(value, what) for key, value in values.items()}


# -- settings ------------------------------------------------------------------------------------
class Settings(BaseSettings):
    """Engine settings. Environment variables win over `aesop.toml`, which wins over defaults."""

    model_config = SettingsConfigDict(env_prefix="AESOP_", extra="ignore")
    data_dir: Path = Field(default=Path(".aesop"), description="Where the embedded store and index live.")
    graph: str = Field(
        default="embedded",
        description="'embedded' (SQLite in data_dir, with an in-memory traversal view) or a Neo4j URI such as neo4j://127.0.0.1:7687.",
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
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        default="onnx",
        description=(
            "What runs the embedding model: 'onnx' (ONNX Runtime, fp32; exported once and cached), 'onnx-int8'"
            " (int8 weights: faster, vectors a little further from torch's) or 'torch' (sentence-transformers)."
            " Vectors are stored per backend: after a switch, `aesop rebuild-index` re-embeds the store."
        ),
    )
    embedding_query_backend: Literal["same", "onnx-int8"] = Field(
        default="same",
        description=(
            "What embeds search queries: 'same' (the embedding backend) or 'onnx-int8' (the int8 export,"
            " with stored vectors left as the fp32 'onnx' backend made them: about 3x faster query"
            " embedding; query vectors are within cosine 0.99 of fp32 ones; only with embedding_backend 'onnx')."
        ),
    )
    embedding_device: str = Field(
        default="auto",
        description="'auto' (a GPU when one is usable, else the CPU), 'cpu', 'cuda' or 'cuda:N'.",
    )
    embedding_onnx_cache_dir: Path | None = Field(
        default=None,
        description=(
            "Where ONNX exports of embedding models are cached (default: the user cache dir,"
            " ~/.cache/aesoperator/onnx, or <data_dir>/models/onnx when that is not writable)."
        ),
    )
    embed_on_ingest: bool = True
    embed_writes: Literal["background", "sync", "off"] = Field(
        default="background",
        description=(
            "How the memory-server tools (create_entities, add_observations, ...) embed what they write:"
            " 'background' answers once the store commits and embeds in a background worker that the"
            " vector index follows within seconds (keyword and name search see the write at once);"
            " 'sync' embeds before answering, so the vector channel reads its own writes; 'off' never"
            " embeds them (keyword and name search only, until `aesop rebuild-index` embeds what has no vector)."
        ),
    )
    write_batch_size: int = Field(default=1000, ge=1, le=100_000)
    chunk_chars: int = Field(default=1200, ge=200, le=20_000)
    chunk_overlap_chars: int = Field(default=150, ge=0, le=5_000)
    max_file_bytes: int = Field(default=2_000_000, ge=1)
    max_document_bytes: int = Field(
        default=50_000_000, ge=1, description="Largest document file (PDF, Word, ...) a folder ingest reads."
    )
    document_max_pages: int = Field(
        default=300, ge=1, description="Pages, slides or chapters of one document; a longer one is quarantined."
    )
    document_max_uncompressed_bytes: int = Field(
        default=200_000_000, ge=1, description="What a DOCX/PPTX/XLSX/EPUB's zip entries may add up to, uncompressed."
    )
    document_max_zip_entries: int = Field(default=10_000, ge=1, description="Entries of one document's zip container.")
    document_max_cells: int = Field(
        default=1_000_000, ge=1, description="Spreadsheet, CSV and table cells read from one document."
    )
    document_max_chars: int = Field(default=20_000_000, ge=1, description="Text extracted from one document.")
    document_chunks_across_units: bool = Field(
        default=False, description="Let one chunk span pages, slides, sheets or chapters (off: never)."
    )
    max_dir_depth: int = Field(
        default=128, ge=1, description="Directory levels a folder ingest walks; deeper ones are skipped and reported."
    )
    file_read_timeout: float = Field(default=10.0, gt=0, description="Seconds one file read may take when ingesting.")
    default_namespace: str = "default"
    token_budget: int = Field(
        default=DEFAULT_TOKEN_BUDGET,
        ge=50,
        description="Tokens of packed context a search, and every MCP answer's text, gets when the call names no budget.",
    )
    token_counter: Literal["cl100k", "estimate"] = Field(
        default="cl100k",
        description=(
            "How budgets are counted: 'cl100k' is the tokenizer of the GPT-4 family (shipped in a package,"
            " nothing downloaded); 'estimate' is a fast approximation that errs high."
        ),
    )
    vector_exact_max: int = Field(
        default=100_000,
        ge=1,
        description="Namespaces with more vectors than this get an approximate (IVF) index instead of exact search.",
    )
    entity_cache_mb: int = Field(
        default=32,
        ge=0,
        description=(
            "About this many megabytes of the entities recent searches read are kept decoded, so searches"
            " that share entities do not read them again; kept in step with the store's change log. 0: off."
        ),
    )
    vector_prefilter_min: int = Field(
        default=40_000,
        ge=0,
        description=(
            "Exact sub-indexes with at least this many vectors also keep an 8-bit copy (a quarter more memory),"
            " scanned first on two threads; its candidates are rescored in float32 and the answer is kept only"
            " when provably the exact one, so results do not change. 0 turns the copies off."
        ),
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
    vector_ivf_codes: Literal["sq8", "flat"] = Field(
        default="sq8",
        description=(
            "How an IVF (approximate) sub-index stores its vectors: 'sq8' (8-bit codes of each vector's residual"
            " from its list's centroid, a quarter of the memory; recall@10 within 0.002 of 'flat' on every"
            " evaluation set) or 'flat' (float32). Exact sub-indexes always hold float32. A saved index with"
            " the other codes is rebuilt at the next sync."
        ),
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

    extractor: Literal["default", "rules", "llm", "none"] = Field(
        default="default",
        description=(
            "Knowledge extraction on ingest and remember: 'default' (rules + the offline spaCy NER model),"
            " 'rules' (no model), 'llm' (an OpenAI-compatible chat API or MCP sampling), 'none'."
        ),
    )
    llm_transport: Literal["http", "sampling"] = Field(
        default="http",
        description=(
            "How the llm extractor reaches a model: 'http' (llm_base_url) or 'sampling' (the model of the MCP"
            " client calling the engine's server, when it offers sampling; otherwise the default extractor)."
        ),
    )
    llm_base_url: str = Field(default="", description="OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1.")
    llm_model: str = ""
    llm_api_key_env: str = Field(default="AESOP_LLM_API_KEY", description="NAME of the variable holding the key.")
    llm_token_budget: int = Field(default=200_000, ge=0, description="Tokens one ingest may spend on the LLM.")
    llm_batch_items: int = Field(default=8, ge=1, le=100)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0, le=10)

    memory_supersede: bool = Field(
        default=True,
        description=(
            "A remembered fact with a new value of a single-valued predicate (lives in, works at, role,"
            " status, owner, version) closes the older fact and retires the episodes whose facts all ended."
        ),
    )
    memory_recency_half_life_days: float | None = Field(
        default=30.0, gt=0, description="Recall favours recent episodes with this half-life (None: off)."
    )
    memory_ttl_days: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Episodes older than this many days are left out of recall and retired by `aesop memory compact"
            " --apply`; keys are a namespace (agent:bot) or 'Episode' for every namespace; the shortest applies."
        ),
    )
    memory_merge_duplicates: bool = Field(
        default=True,
        description=(
            "Remembering what a session already holds (same speaker, same content up to case, spaces and"
            " end punctuation) counts it on the stored episode instead of storing it again."
        ),
    )
    memory_duplicate_similarity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="`aesop memory compact` also merges episodes of a session whose embeddings are this similar.",
    )

    # observability (traces are set by the standard OTEL_* variables, not here)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="warning",
        description="Level of the logs on stderr; 'info' adds one line per MCP call (AESOP_LOG_LEVEL).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json': one JSON object per line with the request id, trace and span ids (AESOP_LOG_FORMAT).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65_535,
        description=(
            "Serve Prometheus metrics at http://<metrics_host>:<port>/metrics while `aesop serve` runs"
            " (0: any free port; unset: no metrics endpoint). A port of its own, apart from the MCP endpoint."
        ),
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address of the metrics endpoint: loopback unless `aesop serve --allow-remote` is given.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        # MCP hosts pass AESOP_DATA_DIR=~/.aesop from their JSON config without a shell to expand it
        return value.expanduser()

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
        return (init_settings, env_settings, _ConfigFileSettings(settings_cls), file_secret_settings)

    @property
    def uses_neo4j(self) -> bool:
        """Whether the graph lives in Neo4j rather than the embedded store."""
        return self.graph != "embedded"


class _ConfigFileSettings(PydanticBaseSettingsSource):
    """The settings section of `aesop.toml`, as a pydantic-settings source."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config_file().settings


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation problems into one readable `ConfigError`.

    Args:
        **overrides: Field values that win over the environment and `aesop.toml` (None is skipped).

    Returns:
        The settings.

    Raises:
        ConfigError: A value is invalid, or `aesop.toml` cannot be read.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    except Exception as exc:
        raise ConfigError(f"could not read settings ({config_file_path()}): {exc}") from None


# -- the config file ---------------------------------------------------------------------------------
Table = dict[str, Any]


class ConfigFile(BaseModel):
    """One config file read into its sections (`read_config_file`)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    exists: bool = False
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Top-level keys: Settings field values, type-checked."
    )
    sources: dict[str, Table] = Field(default_factory=dict, description="[sources.NAME] tables by name.")
    servers: dict[str, Table] = Field(default_factory=dict, description="[servers.NAME] tables by name.")


_SETTING_TYPES: dict[str, TypeAdapter[Any]] = {}


def _setting_type(name: str) -> TypeAdapter[Any]:
    adapter = _SETTING_TYPES.get(name)
    if adapter is None:
        annotation: Any = Settings.model_fields[name].annotation
        adapter = _SETTING_TYPES[name] = TypeAdapter(annotation)
    return adapter


def _settings_section(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    known = set(Settings.model_fields)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r} (top-level keys are settings: {sorted(known)}; "
            f"sources and servers go in [sources.NAME] and [servers.NAME] tables)"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        try:
            _setting_type(key).validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise ConfigError(f"{path}: setting {key} = {value!r}: {reason}") from None
        values[key] = value  # validated again, with the environment, by Settings
    return values


def _tables(path: Path, section: str, value: Any) -> dict[str, Table]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: '{section}' must be a table of [{section}.NAME] tables, not {value!r}")
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}.{name}] must be a table, not {table!r}")
    return dict(value)


def read_config_file(path: Path | str | None = None) -> ConfigFile:
    """Read a config file (`aesop.toml`, or a data dir's `sources.toml`) into its sections.

    Args:
        path: The file (default: `config_file_path()`). A missing file reads as empty sections.

    Returns:
        The sections: settings (top-level keys, each a Settings field of the right type), sources
        and servers (tables by name; their keys are checked by the layer that types them).

    Raises:
        ConfigError: The file cannot be read or is not valid TOML, a top-level key is not a setting
            or a section, a setting has a value of the wrong type, or a section is not a table of
            tables. The message names the file, the key or table, and the bad value.
    """
    where = Path(path) if path is not None else config_file_path()
    if not where.exists():
        return ConfigFile(path=where)
    try:
        data = tomllib.loads(where.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"could not read {where}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    sections = {name: _tables(where, name, data.pop(name)) for name in SECTIONS if name in data}
    return ConfigFile(path=where, exists=True, settings=_settings_section(where, data), **sections)
