"""Render check results with rich: summary first, worst findings first, each naming file, module, tensor, rule."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .check import CheckResult

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_check(result: CheckResult, console: Console, max_findings: int = 200) -> None:
    lay = result.layout
    status = Text("OK", style="bold green") if result.errors == 0 else Text(f"{result.errors} error(s)", style="bold red")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("checkpoint", result.path)
    summary.add_row("status", Text.assemble(status, f"  {result.warnings} warning(s)"))
    detected = lay.get("detected") or "-"
    cfg = lay.get("config") or "-"
    summary.add_row("layout", f"{detected} (tensors)  /  {cfg} (config{': ' + ', '.join(lay['config_files']) if lay.get('config_files') else ''})")
    summary.add_row("quantization", f"bits={lay.get('bits')}  group_size={lay.get('group_size')}  sym={lay.get('sym')}  desc_act={lay.get('desc_act')}")
    summary.add_row("contents", f"{result.modules} quantized modules, {lay.get('unquantized_tensors')} other tensors, "
                                f"{result.tensors} tensors in {lay.get('files')} file(s)" + (f" via {lay['index']}" if lay.get("index") else ""))
    console.print(Panel(summary, title="awqfmt check", expand=False))
    if not result.findings:
        console.print("[green]No findings: every rule passed.[/green]")
        return
    by_code: dict[str, int] = {}
    for f in result.findings:
        by_code[f.code] = by_code.get(f.code, 0) + 1
    table = Table(title="Findings (worst first)", show_lines=False, expand=True)
    table.add_column("sev", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=2)
    table.add_column("message / hint", overflow="fold", ratio=5)
    for f in result.findings[:max_findings]:
        where = "\n".join(x for x in (f.file, f.module, (f.tensor or "").rsplit(".", 1)[-1] if f.module else f.tensor) if x)
        body = Text(f.message)
        if f.hint:
            body.append("\nhint: " + f.hint, style="dim")
        table.add_row(Text(f.severity.value, style=STYLE[f.severity.value]), f.code, where, body)
    console.print(table)
    if len(result.findings) > max_findings:
        console.print(f"... {len(result.findings) - max_findings} more findings (use --json for all)")
    console.print("rules hit: " + ", ".join(f"{code} x{n}" for code, n in sorted(by_code.items(), key=lambda kv: -kv[1])))
