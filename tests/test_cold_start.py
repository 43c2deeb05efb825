"""A search in a new process imports only what a search needs: not the MCP SDK, the HTTP client
of the llm extractor, the source registry or torch (the default embedder runs on ONNX Runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_A_SEARCH = ("mcp", "httpx", "torch", "sentence_transformers", "aesoperator.ingest.registry")


def _python(script: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESOP_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AESOP_CONFIG=os.devnull)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_cold_search_imports_no_mcp_sdk_http_client_or_torch(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "limits.md").write_text("# Rate limits\n\nClients are rate limited per token bucket.\n")
    data = str(tmp_path / "data")
    _python(
        f"""
        from aesoperator import ContextEngine
        with ContextEngine.open(data_dir={data!r}) as engine:
            print(engine.ingest_path({str(folder)!r}))
        """
    )
    out = json.loads(
        _python(
            f"""
            import json, sys
            from aesoperator import ContextEngine
            with ContextEngine.open(data_dir={data!r}) as engine:
                hits = [h.name for h in engine.search("how are clients rate limited", k=3).hits]
            print(json.dumps(dict(hits=hits, modules=sorted(sys.modules))))
            """
        )
    )
    assert out["hits"], "the search found nothing"
    loaded = [m for m in out["modules"] if m in NOT_FOR_A_SEARCH or m.split(".")[0] in NOT_FOR_A_SEARCH]
    assert loaded == []
