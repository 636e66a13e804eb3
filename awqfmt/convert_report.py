"""Render `awqfmt convert` results with rich: a progress bar while writing, then a summary and the findings."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .convert import ConvertRefused, ConvertResult
from .findings import Finding

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _findings_table(findings: list[Finding], title: str) -> Table:
    table = Table(title=title, expand=True)
    table.add_column("sev", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=2)
    table.add_column("message / hint", overflow="fold", ratio=5)
    for f in findings:
        where = "\n".join(x for x in (f.module, f.tensor if not f.module else (f.tensor or "").rsplit(".", 1)[-1], f.file) if x)
        body = Text(f.message)
        if f.hint:
            body.append("\nhint: " + f.hint, style="dim")
        table.add_row(Text(f.severity.value, style=STYLE[f.severity.value]), f.code, where, body)
    return table


def render_result(result: ConvertResult, console: Console, max_findings: int = 100) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = Text("converted", style="bold green") if result.errors == 0 else Text(
        f"converted; DST has {result.errors} error(s) carried over from SRC", style="bold yellow")
    grid.add_row("status", status)
    grid.add_row("src", result.src)
    grid.add_row("dst", result.dst + ("  (default: no DST given)" if result.dst_defaulted else ""))
    grid.add_row("layout", f"{result.layout_from} -> {result.layout_to}")
    rate = result.bytes / result.seconds / 1e9 if result.seconds > 0 else 0.0
    grid.add_row("written", f"{result.modules} modules, {result.tensors} tensors in {result.shards} shard(s), "
                            f"{result.bytes / 1e6:.1f} MB in {result.seconds:.2f} s ({rate:.2f} GB/s)")
    if result.files_copied:
        grid.add_row("copied", ", ".join(result.files_copied[:8]) + (" ..." if len(result.files_copied) > 8 else ""))
    grid.add_row("checked", "DST passes `awqfmt check`" if result.errors == 0 else "see the findings below")
    if result.verified:
        grid.add_row("verified", "every module decodes to the same codes, zeros, scales and g_idx as SRC")
    console.print(Panel(grid, title="awqfmt convert", expand=False))
    shown = [f for f in result.findings][:max_findings]
    if shown:
        console.print(_findings_table(shown, "Findings"))


def render_refusal(exc: ConvertRefused, console: Console, max_findings: int = 50) -> None:
    console.print(f"[bold red]refused:[/bold red] {exc.src} -> {exc.dst} ({exc.layout_from or '?'} -> {exc.layout_to}); "
                  "nothing was written at DST")
    console.print(_findings_table(exc.findings[:max_findings], "Why"))
    if len(exc.findings) > max_findings:
        console.print(f"... {len(exc.findings) - max_findings} more (use --json for all)")
