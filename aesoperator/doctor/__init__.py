"""`aesop doctor`: checks of an installation, each saying in words what is wrong and how to fix it.

A check takes the settings and returns its findings; add one by appending it to `CHECKS`.
"""

from __future__ import annotations

from aesoperator.config import Settings
from aesoperator.doctor.files import audit_key_file, data_dir_permissions, token_file
from aesoperator.doctor.findings import Check, Finding
from aesoperator.doctor.reachability import neo4j, sources
from aesoperator.doctor.store_checks import keyword_index, vector_index, versions

CHECKS: tuple[Check, ...] = (
    data_dir_permissions,
    token_file,
    audit_key_file,
    versions,
    neo4j,
    vector_index,
    keyword_index,
    sources,
)


def run_checks(settings: Settings) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(settings)]


__all__ = ["CHECKS", "Check", "Finding", "run_checks"]
