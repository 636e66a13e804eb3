"""Render `awqfmt convert` results with rich: a progress bar while writing, then a summary and the findings."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .convert import ConvertRefused, ConvertResult
from .findings import sort_findings
from .findings_view import render_findings, rules_table, safe

def render_result(result: ConvertResult, console: Console, per_rule: int = 5) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = Text("converted", style="bold green") if result.errors == 0 else Text(
        f"converted; DST has {result.errors} error(s) carried over from SRC", style="bold yellow")
    grid.add_row("status", status)
    grid.add_row("src", safe(result.src))
    grid.add_row("dst", safe(result.dst) + ("  (default: no DST given)" if result.dst_defaulted else ""))
    grid.add_row("layout", f"{result.layout_from} -> {result.layout_to}")
    rate = result.bytes / result.seconds / 1e9 if result.seconds > 0 else 0.0
    grid.add_row("written", f"{result.modules} modules, {result.tensors} tensors in {result.shards} shard(s), "
                            f"{result.bytes / 1e6:.1f} MB in {result.seconds:.2f} s ({rate:.2f} GB/s)")
    if result.files_copied:
        grid.add_row("copied", safe(", ".join(result.files_copied[:8])) + (" ..." if len(result.files_copied) > 8 else ""))
    grid.add_row("checked", "DST passes `awqfmt check`" if result.errors == 0 else "see the findings below")
    if result.verified:
        grid.add_row("verified", "every module decodes to the same codes, zeros, scales and g_idx as SRC")
    console.print(Panel(grid, title="awqfmt convert", expand=False))
    if result.findings:
        findings = sort_findings(list(result.findings))
        console.print(rules_table(findings))
        render_findings(findings, console, per_rule)


def render_refusal(exc: ConvertRefused, console: Console, per_rule: int = 5) -> None:
    console.print(f"[bold red]refused:[/bold red] {safe(str(exc.src))} -> {safe(str(exc.dst))} ({exc.layout_from or '?'} -> {exc.layout_to}); "
                  "nothing was written at DST")
    findings = sort_findings(list(exc.findings))
    console.print(rules_table(findings))
    render_findings(findings, console, per_rule)
