"""The `awqfmt` command line: a thin layer over the library (check, layout, convert, verify, bench).

Exit status: 0 no errors, 1 errors found (or a refused conversion / failed verification), 2 usage error
(no such path, bad option), 3 internal error (a bug in awqfmt; rerun with AWQFMT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "data" / "minilm_awq_g128"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Check, convert and understand AWQ / GPTQ / compressed-tensors quantized checkpoints.")
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
) -> None:
    """Check, convert and understand AWQ / GPTQ / compressed-tensors quantized checkpoints."""


def usage_error(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}")
    return typer.Exit(EXIT_USAGE)


@app.command()
def check(
    path: Optional[Path] = typer.Argument(None, help="model directory, .safetensors file or *.safetensors.index.json (default: the bundled MiniLM AWQ demo)"),
    deep: bool = typer.Option(False, "--deep", help="read every packed word instead of sampling qweight"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the report"),
) -> None:
    """Check a checkpoint against the layout specs: integrity, sharding, shapes, dtypes, config, values, pack order."""
    from .check import check_path
    from .checkpoint import CheckpointNotFound
    from .report import render_check

    from .progress import count_bar, maybe

    target = path or DEMO_CHECKPOINT
    try:
        with maybe(count_bar, err_console, "check --deep: modules", deep and not as_json) as bar:
            result = check_path(target, deep=deep, progress=bar)
    except CheckpointNotFound as exc:
        raise usage_error(str(exc))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        if path is None:
            console.print("[dim]no path given: checking the bundled demo, a real AutoAWQ checkpoint of all-MiniLM-L6-v2[/dim]")
        render_check(result, console)
    raise typer.Exit(EXIT_FINDINGS if result.errors else EXIT_OK)


@app.command()
def layout(
    target: str = typer.Argument(..., help="a layout name (awq, logical, gptq, gptq-v2, compressed-tensors) or a checkpoint path"),
    bits: int = typer.Option(4, "--bits", "-b", help="field width, for a layout name"),
    tensor: Optional[str] = typer.Option(None, "--tensor", help="with a checkpoint: full name of a packed tensor"),
    row: int = typer.Option(0, "--row", help="with a checkpoint: row of the stored tensor"),
    col: int = typer.Option(0, "--col", help="with a checkpoint: column of the stored tensor"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (checkpoint mode)"),
) -> None:
    """Show the bit layout of a packed word: for a layout spec, or one real word of a checkpoint."""
    from .layout_view import DamagedTensor, LayoutError, render_format, render_word, word_report
    from .spec import get_spec, layout_names

    try:
        spec = get_spec(target)
    except KeyError:
        spec = None
    if spec is not None:
        if bits not in spec.bits:
            raise usage_error(f"layout {spec.name} has no {bits}-bit packing (it has {spec.bits})")
        render_format(spec, bits, console)
        return
    if not Path(target).exists():
        raise usage_error(f"{target!r} is neither a layout ({', '.join(layout_names())}) nor an existing path")
    if tensor is None:
        raise usage_error("with a checkpoint, name a packed tensor: --tensor NAME [--row R --col C]")
    try:
        rep = word_report(target, tensor, row, col)
    except LayoutError as exc:
        raise usage_error(str(exc))
    except DamagedTensor as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        raise typer.Exit(EXIT_FINDINGS)
    if as_json:
        print(json.dumps(rep, indent=2))
    else:
        render_word(rep, console)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="checkpoint to convert: model directory, .safetensors file or *.safetensors.index.json"),
    dst: Optional[Path] = typer.Argument(None, help="new model directory to write (default: SRC-<layout> beside SRC)"),
    to: str = typer.Option(..., "--to", "-t", help="awq (awq-order), logical (logical-order), gptq, gptq-v2, compressed-tensors, unpacked, fp16, bf16"),
    max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="largest shard, e.g. 5GB, 500MB, 2GiB (one file without index when it fits)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing DST checkpoint directory"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="write shards in N processes"),
    verify_: bool = typer.Option(False, "--verify", help="also decode SRC and DST and compare them module by module"),
    scale_dtype: Optional[str] = typer.Option(None, "--scale-dtype", help="store scales as F16, BF16 or F32 (refused unless every scale keeps its value)"),
    v1_all_ones: Optional[str] = typer.Option(None, "--v1-all-ones", help="read GPTQ v1 zero fields of all ones as 'kernel' (zero 2^b, GPU kernels) or 'mask' (zero 0)"),
    force: bool = typer.Option(False, "--force", help="convert even if `awqfmt check` finds errors in SRC (carried over bit for bit); never overrides a refusal to represent data"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the report"),
) -> None:
    """Convert a checkpoint to another layout, exactly (codes, zeros and scales bit for bit), into a new directory."""
    import signal

    from .convert import ConvertRefused, ConvertUsageError, convert as run_convert
    from .convert_report import render_refusal, render_result
    from .progress import bytes_bar, maybe

    def interrupt(signum, frame):
        raise KeyboardInterrupt  # so a `kill` cleans up the staging directory like Ctrl-C does

    signal.signal(signal.SIGTERM, interrupt)
    try:
        with maybe(bytes_bar, err_console, f"convert -> {to}", not as_json) as bar:
            result = run_convert(src, dst, to, max_shard_size=max_shard_size, overwrite=overwrite, jobs=jobs, verify=verify_,
                                 scale_dtype=scale_dtype, v1_all_ones=v1_all_ones, force=force, progress=bar)
    except KeyboardInterrupt:
        err_console.print("interrupted: the partial output was removed, nothing was written at DST")
        raise typer.Exit(130)
    except ConvertUsageError as exc:
        raise usage_error(str(exc))
    except ConvertRefused as exc:
        if as_json:
            print(json.dumps(exc.to_json(), indent=2))
        else:
            render_refusal(exc, err_console)
        raise typer.Exit(EXIT_FINDINGS)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        if result.dst_defaulted:
            console.print(f"[dim]no DST given: writing to {result.dst}[/dim]")
        render_result(result, console)
    raise typer.Exit(EXIT_FINDINGS if result.errors else EXIT_OK)


@app.command()
def verify(
    path: Path = typer.Argument(..., help="checkpoint to verify: model directory, .safetensors file or *.safetensors.index.json"),
    against: Optional[Path] = typer.Option(None, "--against", help="another checkpoint of the same model (e.g. `awqfmt convert` output) to compare module by module"),
    backend: str = typer.Option("auto", "--backend", help="auto (CuPy when a GPU is usable, else numpy), cupy or numpy"),
    tokens: int = typer.Option(8, "--tokens", "-m", help="rows M of the random activations x [M, K]"),
    seed: int = typer.Option(0, "--seed", help="seed of the activations (same seed, same x for every checkpoint)"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="the unquantized model (`<module>.weight` [N, K], or `<module>.orig` as in decoded fixtures' reference files): dequantization error and best field order"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the report"),
) -> None:
    """Run every quantized module's packed weights on random fp16 activations and compare with a float64 reference."""
    from .checkpoint import CheckpointNotFound
    from .verify import VerifyUsageError, verify_path
    from .verify_backends import BACKEND_CHOICES, BackendUnavailable
    from .verify_report import render_verify

    if backend not in BACKEND_CHOICES:
        raise usage_error(f"--backend must be one of {', '.join(BACKEND_CHOICES)} (got {backend!r})")
    from .progress import count_bar, maybe

    try:
        with maybe(count_bar, err_console, "verify: modules", not as_json) as bar:
            result = verify_path(path, against=against, reference=reference, backend=backend, tokens=tokens, seed=seed,
                                 progress=bar)
    except (CheckpointNotFound, VerifyUsageError, BackendUnavailable) as exc:
        raise usage_error(str(exc))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        render_verify(result, console)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FINDINGS)


def _int_list(text: str, option: str, pair: bool = False) -> list:
    """'1,16,256' -> [1, 16, 256]; with pair, '4096x4096,8192x28672' -> [(4096, 4096), (8192, 28672)]."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            parts = [int(p) for p in item.lower().split("x")] if pair else [int(item)]
        except ValueError:
            parts = []
        if len(parts) != (2 if pair else 1) or min(parts) < 1:
            raise usage_error(f"{option}: {item!r} is not {'K x N, e.g. 4096x4096' if pair else 'a positive integer'}")
        out.append(tuple(parts) if pair else parts[0])
    if not out:
        raise usage_error(f"{option} is empty")
    return out


@app.command()
def bench(
    shapes: Optional[str] = typer.Option(None, "--shapes", help="comma-separated K x N shapes (default: 4096x4096,8192x8192,8192x28672,28672x8192)"),
    ms: Optional[str] = typer.Option(None, "--m", help="comma-separated token counts M (default: 1,16,256,4096)"),
    group_size: int = typer.Option(128, "--group-size", help="quantization group size"),
    reps: int = typer.Option(100, "--reps", help="timed repetitions per kernel (the median is reported)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of the table"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the JSON results to this file"),
) -> None:
    """Time the W4A16 kernels (AWQ-interleaved, natural order, GPTQ) against cuBLAS fp16 on this GPU."""
    from .verify_backends import gpu_available

    if not gpu_available():
        raise usage_error("awqfmt bench needs CuPy and an NVIDIA GPU, and none is usable here "
                          "(install CuPy, the `gpu` extra of awqfmt, on a machine with a GPU)")
    if reps < 1:
        raise usage_error(f"--reps must be at least 1 (got {reps})")
    shape_list = _int_list(shapes, "--shapes", pair=True) if shapes else None
    m_list = _int_list(ms, "--m") if ms else None
    from .gpu import bench as gpu_bench

    shape_list = shape_list or list(gpu_bench.DEFAULT_SHAPES)
    m_list = m_list or list(gpu_bench.DEFAULT_MS)
    progress = None if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
    copy_bw = gpu_bench.measure_copy_bandwidth()
    rows = gpu_bench.run_bench(shapes=shape_list, ms=m_list, group_size=group_size, reps=reps,
                               copy_bandwidth=copy_bw, progress=progress)
    doc = {"date": gpu_bench.now_utc(), "device": gpu_bench.device_info(), "group_size": group_size, "reps": reps,
           "copy_bytes_per_s": copy_bw, "rows": rows, "summary": gpu_bench.summarize(rows)}
    if out is not None:
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        gpu_bench.render_table(rows, console, copy_bw=copy_bw)
        console.print(f"[dim]{doc['date']}, {doc['device'].get('name')}; device-to-device copy {copy_bw / 1e9:.0f} GB/s[/dim]")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    """Entry point: no traceback reaches the user unless AWQFMT_DEBUG=1."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence, see module docstring
        if os.environ.get("AWQFMT_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc}\n"
                          "This is a bug in awqfmt. Rerun with AWQFMT_DEBUG=1 to see the traceback and please report it.")
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
