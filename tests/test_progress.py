"""Long commands report progress per module through a plain callback (the CLI turns it into a bar on a TTY)."""

from rich.console import Console

from awqfmt.check import check_path
from awqfmt.progress import count_bar, maybe
from awqfmt.verify import verify_path

from conftest import REAL_CHECKPOINTS

TINY = REAL_CHECKPOINTS["awq_tiny_llama"][0]


def test_check_and_verify_call_progress_once_per_module():
    seen = []
    check_path(TINY, deep=True, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 14) for i in range(1, 15)]
    seen.clear()
    verify_path(TINY, backend="numpy", progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 14) for i in range(1, 15)]


def test_no_bar_unless_enabled_and_on_a_terminal(tmp_path):
    with open(tmp_path / "log", "w") as fh:
        pipe = Console(file=fh, force_terminal=False)
        with maybe(count_bar, pipe, "x", True) as bar:
            assert bar is None
    tty = Console(force_terminal=True, file=open(tmp_path / "tty", "w"))
    with maybe(count_bar, tty, "x", False) as bar:
        assert bar is None
    with maybe(count_bar, tty, "x", True) as bar:
        bar(1, 2)
        bar(2, 2)
    assert "2/2" in (tmp_path / "tty").read_text()
