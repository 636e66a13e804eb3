"""Render `awqfmt verify` results with rich: a summary, the per-module table, then every problem found."""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .findings_view import render_findings
from .verify import Comparison, ModuleVerification, VerifyResult

MAX_ROWS = 60  # passing modules shown in the table; failing ones are always shown


def _err(c: Comparison | None, attr: str) -> str:
    if c is None:
        return "-"
    v = getattr(c, attr)
    return "nan" if v != v else f"{v:.1e}"


def _status(m: ModuleVerification) -> Text:
    return Text("ok", style="green") if m.ok else Text("FAIL", style="bold red")  # the findings below say why


def _layouts(runs) -> str:
    counts = Counter(f"{r.layout}" + (f" {r.bits}-bit group {r.group_size}" if r.bits else "") for r in runs if r is not None)
    return ", ".join(f"{k} ({n})" for k, n in counts.most_common()) or "-"


def _summary(result: VerifyResult) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("checkpoint", escape(result.path))
    grid.add_row("layout", escape(_layouts(m.run for m in result.modules)))
    if result.against:
        grid.add_row("against", escape(result.against))
        grid.add_row("its layout", escape(_layouts(m.against for m in result.modules)))
    if result.reference:
        grid.add_row("reference", escape(result.reference))
    grid.add_row("backend", result.backend + ("" if result.backend_requested == result.backend else f" (asked: {result.backend_requested})"))
    grid.add_row("activations", f"{result.tokens} token(s) x K, fp16 N(0, 1), seed {result.seed}")
    grid.add_row("pass if", f"||y - ref|| / ||ref|| <= {result.tolerance:g}, no NaN/inf (ref: float64, logical decode)")
    failed = len(result.failed_modules)
    status = Text("OK", style="bold green") if result.ok else Text(f"FAILED ({result.errors} error(s))", style="bold red")
    grid.add_row("result", Text.assemble(status, f"  {len(result.modules) - failed} of {len(result.modules)} module(s) passed"
                                         f" in {result.elapsed_s:.2f} s"))
    return grid


def _module_table(result: VerifyResult, max_rows: int) -> tuple[Table, int]:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("module", overflow="fold", min_width=20)
    table.add_column("K x N", justify="right", no_wrap=True)
    mixed = len({m.run.backend for m in result.modules if m.run}) > 1
    if mixed:
        table.add_column("backend", no_wrap=True)
    table.add_column("max err", justify="right", no_wrap=True)
    table.add_column("rel err", justify="right", no_wrap=True)
    with_against = result.against is not None
    if with_against:
        table.add_column("vs other", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    shown_ok, hidden = 0, 0
    for m in result.modules:
        if m.ok:
            if shown_ok >= max_rows:
                hidden += 1
                continue
            shown_ok += 1
        run = m.run
        check = run.check if run else None
        row = [escape(m.name), f"{run.K}x{run.N}" if run else "-"]
        if mixed:
            row.append(run.backend if run else "-")
        row += [_err(check, "max_abs_err"), _err(check, "rel_err")]
        if with_against:
            row.append(_err(m.outputs, "rel_err"))
        row += [f"{run.time_s * 1e3:.1f}" if run else "-", _status(m)]
        table.add_row(*row)
    return table, hidden


def _reference_table(result: VerifyResult) -> Table | None:
    rows = [m for m in result.modules if m.reference is not None]
    if not rows:
        return None
    table = Table(title="Dequantized weights vs the original (relative Frobenius error)", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("module", overflow="fold", min_width=20)
    table.add_column("as stored", justify="right", no_wrap=True)
    table.add_column("best reading", overflow="fold", min_width=12)
    table.add_column("best", justify="right", no_wrap=True)
    table.add_column("worst", justify="right", no_wrap=True)
    for m in rows:
        r = m.reference
        worst = max(c.rel_err for c in r.candidates)
        best = Text(r.best.label, style="green" if r.stored_is_best else "bold red")
        table.add_row(escape(m.name), f"{r.rel_err:.4f}", best, f"{r.best.rel_err:.4f}", f"{worst:.4f}")
    return table


def render_verify(result: VerifyResult, console: Console, max_rows: int = MAX_ROWS, per_rule: int = 10) -> None:
    console.print(Panel(_summary(result), title="awqfmt verify", expand=False))
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if result.modules:
        table, hidden = _module_table(result, max_rows)
        console.print(table)
        if hidden:
            console.print(f"[dim]... and {hidden} more module(s) that passed (--json lists them all)[/dim]")
    ref = _reference_table(result)
    if ref is not None:
        console.print(ref)
    render_findings(result.findings, console, per_rule)
