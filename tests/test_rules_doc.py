"""specs/RULES.md lists exactly the finding codes the code can emit, each with the severity it is emitted at."""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "specs" / "RULES.md"
CATEGORIES = ("file", "tensor", "index", "checkpoint", "config", "layout", "module", "shape", "values", "zeros", "order",
              "convert", "verify", "reference")
CODE = re.compile(rf"^(?:{'|'.join(CATEGORIES)})\.[a-z0-9]+(?:-[a-z0-9]+)*$")
NOT_CODES = re.compile(r"\.(json|safetensors|md|py|txt)$")  # "config.json" is a file name, not a rule
SEVERITY_OF_CALL = {"error": "error", "err": "error", "_err": "error", "bad": "error", "fail": "error",
                    "warning": "warning", "warn": "warning", "info": "info"}
ROW = re.compile(r"^\| `([^`]+)` \| ([a-z ]+?) \|")


def documented() -> dict[str, set[str]]:
    out = {}
    for line in RULES.read_text().splitlines():
        m = ROW.match(line)
        if m:
            assert m.group(1) not in out, f"{m.group(1)} is listed twice in RULES.md"
            out[m.group(1)] = set(m.group(2).replace(" or ", " ").split())
    return out


def emitted() -> tuple[dict[str, set[str]], dict[str, str]]:
    """Every rule-code string literal in awqfmt/ and the spec invariants -> severities seen at known call sites."""
    codes: dict[str, set[str]] = {}
    where: dict[str, str] = {}
    for path in sorted((ROOT / "awqfmt").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value) and not NOT_CODES.search(node.value):
                codes.setdefault(node.value, set())
                where.setdefault(node.value, f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and node.args:
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                first = node.args[0]
                if name in SEVERITY_OF_CALL and isinstance(first, ast.Constant) and isinstance(first.value, str) and CODE.match(first.value):
                    codes.setdefault(first.value, set()).add(SEVERITY_OF_CALL[name])
    for spec in sorted((ROOT / "awqfmt" / "specs").glob("*.json")):
        for inv in json.loads(spec.read_text()).get("invariants", []):
            codes.setdefault(inv["code"], set()).add("error")  # check reports spec invariants as errors
            where.setdefault(inv["code"], spec.name)
    return codes, where


def test_every_emitted_code_is_documented():
    codes, where = emitted()
    doc = documented()
    missing = sorted(set(codes) - set(doc))
    assert not missing, "add these codes to specs/RULES.md: " + ", ".join(f"{c} ({where[c]})" for c in missing)


def test_every_documented_code_is_emitted():
    codes, _ = emitted()
    stale = sorted(set(documented()) - set(codes))
    assert not stale, f"specs/RULES.md lists codes nothing emits any more: {stale}"


def test_documented_severity_matches_the_call_sites():
    codes, where = emitted()
    doc = documented()
    wrong = {c: (sorted(sev), sorted(doc[c])) for c, sev in codes.items() if c in doc and not sev <= doc[c]}
    assert not wrong, f"severity in RULES.md differs from the code (emitted, documented): {wrong}"


def test_the_extractor_sees_real_call_sites():
    """Guard the guard: the AST scan must find the codes of each emitting module, with their severities."""
    codes, _ = emitted()
    assert codes["file.trailing-bytes"] == {"error"}
    assert codes["index.total-size"] == {"warning"}
    assert codes["config.missing-field"] == {"error", "warning"}
    assert "shape.group-divides-k" in codes and "config.json" not in codes
