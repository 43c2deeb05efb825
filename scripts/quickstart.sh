#!/usr/bin/env bash
# Install, then ingest this repository's own docs and code into the embedded store and ask it questions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=${AESOP_DATA_DIR:-.aesop}
.venv/bin/aesop --data-dir "$DATA" ingest . --name aesoperator
.venv/bin/aesop --data-dir "$DATA" search "how does the engine keep the vector index consistent with the graph store?" -k 5
.venv/bin/aesop --data-dir "$DATA" remember "We chose reciprocal rank fusion to combine keyword and vector hits." --agent demo --session s1
.venv/bin/aesop --data-dir "$DATA" recall "which fusion method did we pick?" --agent demo
.venv/bin/aesop --data-dir "$DATA" stats
