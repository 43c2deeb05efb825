"""A small demo corpus for the explorer's screenshots and tests: a folder of notes about a
made-up team (people, a service, a vendor), a second namespace, and two agents' memories with
a corrected and a forgotten episode. Everything is deterministic except the times of ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from aesoperator.context import ContextEngine
from aesoperator.ingest.documents import DocumentInput

NOTES = {
    "atlas.md": (
        "# Atlas billing service\n\n"
        "Atlas is the billing service of Northwind Traders. Kim Lee leads the Atlas team and owns its\n"
        "deployment pipeline. Atlas stores invoices in PostgreSQL and sends receipts through Postmark.\n\n"
        "## Incidents\n\nIn March Ravi Patel rotated the database password after the staging leak.\n"
    ),
    "people.md": (
        "# People\n\n"
        "Kim Lee works for Northwind Traders in Oslo and leads the Atlas team.\n"
        "Ravi Patel works for Northwind Traders as a site reliability engineer.\n"
        "Ana Souza works for Contoso and reviews the Atlas security audit.\n"
    ),
    "runbook.md": (
        "# Runbook: rotating credentials\n\n"
        "1. Ask Kim Lee for approval.\n2. Rotate the PostgreSQL password in the vault.\n"
        "3. Restart Atlas and check the receipts queue in Postmark.\n"
    ),
    "vendor.md": (
        "# Vendors\n\nPostmark delivers Atlas receipts. Contoso audits the Atlas billing service every year.\n"
    ),
}
PARTNER_DOCS = [
    DocumentInput(
        title="Contoso audit plan",
        text="Contoso plans the yearly audit of the Atlas billing service with Ana Souza.",
    )
]
PARTNER_NAMESPACE = "partners"


class DemoCorpus(BaseModel):
    """What `load_demo` stored, for scripts and tests to point at."""

    folder: str
    source: str
    namespaces: list[str]
    agents: list[str]
    corrected_episode: str
    forgotten_episode: str


def load_demo(engine: ContextEngine, folder: Path) -> DemoCorpus:
    """Write the notes to `folder`, ingest them (source `team-notes`, namespace `default`), add a
    partner document in `partners`, and give the agents `ops` and `support` some memories."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in NOTES.items():
        (folder / name).write_text(text, encoding="utf-8")
    engine.ingest_path(folder, name="team-notes", namespace="default")
    engine.add_documents(PARTNER_DOCS, source="partner-docs", namespace=PARTNER_NAMESPACE)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    memory = engine.memory
    memory.remember("Kim Lee asked to rotate the staging password for Atlas.", "ops", "s1", created_at=start)
    wrong = memory.remember(
        "Ravi Patel rotated the staging password.", "ops", "s1", created_at=start + timedelta(minutes=20)
    )
    memory.remember(
        "Receipts from Postmark were delayed for an hour.", "ops", "s2", created_at=start + timedelta(days=1)
    )
    stale = memory.remember(
        "The vault token for Atlas is kept in the old wiki.", "ops", "s2", created_at=start + timedelta(days=1, hours=2)
    )
    memory.remember("Kim Lee approved the Atlas release.", "ops", "s3", created_at=start + timedelta(days=3))
    memory.remember("A customer asked why their Atlas invoice was late.", "support", "t1", created_at=start)
    memory.remember(
        "Ana Souza from Contoso asked for the audit logs.", "support", "t2", created_at=start + timedelta(days=2)
    )
    correction = engine.update_memory(wrong.id, "Ravi Patel rotated the production password, not staging.")
    engine.forget("ops", ids=[stale.id])
    del correction
    return DemoCorpus(
        folder=str(folder),
        source="team-notes",
        namespaces=["default", PARTNER_NAMESPACE, "agent:ops", "agent:support"],
        agents=["ops", "support"],
        corrected_episode=wrong.id,
        forgotten_episode=stale.id,
    )
