#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole suite.
# Test servers (Neo4j, …) are started by the test fixtures on 127.0.0.1 and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

echo "== ruff"
.venv/bin/ruff check aesoperator tests benchmarks
.venv/bin/ruff format --check aesoperator tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc
