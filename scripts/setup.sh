#!/usr/bin/env bash
# Create .venv and install aesoperator into it.
#   scripts/setup.sh          the engine (embedded store, CLI, MCP server): the core install
#   scripts/setup.sh --dev    plus every extra and what the tests need (linters, build, Java + Maven for the local Neo4j)
# Extras on top of the core install: pip install -e '.[neo4j]' (or documents, explorer, otel, notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "aesoperator needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first: a CPU wheel found on disk (PIP_FIND_LINKS) wins; otherwise the registry's build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "installing torch 2.13.0 (first run only)…"
  "${PIP[@]}" "torch==2.13.0"
fi

if [[ $dev == 1 ]]; then
  "${PIP[@]}" -e ".[dev]"   # dev names every extra
else
  "${PIP[@]}" -e .
fi

# Export the default embedding model to ONNX now (needs torch, installed above), so the first
# search does not pay the export; it is cached in ~/.cache/aesoperator/onnx. A failure here is not
# fatal: the engine retries the export on first use and falls back to torch if it cannot.
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python -m aesoperator.engine.embedder_factory \
  || echo "warning: the ONNX export of the embedding model failed; the engine will retry it on first use" >&2

if [[ $dev == 1 ]]; then
  need=()
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || need+=(maven)
  # PostgreSQL server binaries for the tests' own throwaway server (tests/postgres_support.py)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
  # Chromium for the web adapter's tests (Playwright MCP drives this browser; it never downloads one)
  [[ -x /usr/bin/chromium ]] || need+=(chromium)
  if (( ${#need[@]} )); then
    echo "installing ${need[*]} from Debian's packages…"
    if [[ $(id -u) == 0 ]]; then
      apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    else
      sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
  fi
  # Build the local Neo4j launcher once (Maven Central on first run, ~/.m2 after) and check it starts.
  if [[ ! -f tools/neo4j-local/target/neo4j-local.jar ]]; then
    scratch=$(mktemp -d)
    bash tools/neo4j-local/run.sh --dir "$scratch/home" --stop-when-ready >/dev/null
    rm -rf "$scratch"
  fi
fi
echo "ready: $(.venv/bin/aesop --help >/dev/null && echo 'aesop CLI installed in .venv/bin')"
