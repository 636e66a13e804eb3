"""Findings: what a rule reports about a checkpoint. One shape for the report, the JSON and the tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One observation. `code` names the rule (stable, documented in specs/RULES.md)."""

    severity: Severity
    code: str
    message: str
    hint: str | None = None
    file: str | None = None
    module: str | None = None
    tensor: str | None = None
    evidence: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out["severity"] = self.severity.value
        if not self.evidence:
            out.pop("evidence")
        return out


def error(code: str, message: str, **kw) -> Finding:
    return Finding(Severity.ERROR, code, message, **kw)


def warning(code: str, message: str, **kw) -> Finding:
    return Finding(Severity.WARNING, code, message, **kw)


def info(code: str, message: str, **kw) -> Finding:
    return Finding(Severity.INFO, code, message, **kw)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first, then by file/module so related findings stay together."""
    return sorted(findings, key=lambda f: (f.severity.rank, f.file or "", f.module or "", f.tensor or "", f.code))
