"""Render check results with rich: summary first, worst findings first, each naming file, module, tensor, rule."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .check import CheckResult
from .findings_view import render_findings, rules_table, safe as _safe

def _summary(result: CheckResult) -> Table:
    lay = result.layout
    status = Text("OK", style="bold green") if result.errors == 0 else Text(f"{result.errors} error(s)", style="bold red")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("checkpoint", _safe(result.path))
    grid.add_row("status", Text.assemble(status, f"  {result.warnings} warning(s)"))
    files = f" ({', '.join(lay['config_files'])})" if lay.get("config_files") else ""
    grid.add_row("layout", f"{lay.get('detected') or '-'} from tensors, {lay.get('config') or '-'} from config{_safe(files)}")
    grid.add_row("quantization", f"bits={lay.get('bits')}  group_size={lay.get('group_size')}  sym={lay.get('sym')}  desc_act={lay.get('desc_act')}")
    grid.add_row("contents", f"{result.modules} quantized modules, {lay.get('unquantized_tensors')} other tensors, "
                             f"{result.tensors} tensors in {lay.get('files')} file(s)" + (f" via {_safe(lay['index'])}" if lay.get("index") else ""))
    return grid


def render_check(result: CheckResult, console: Console, per_rule: int = 5) -> None:
    console.print(Panel(_summary(result), title="awqfmt check", expand=False))
    if not result.findings:
        console.print("[green]No findings: every rule passed.[/green]")
        return
    console.print(rules_table(result.findings))
    render_findings(result.findings, console, per_rule)
