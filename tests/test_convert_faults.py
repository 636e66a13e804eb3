"""A conversion that fails or is interrupted anywhere leaves no DST and SRC byte-identical: injected disk-full and
exceptions at many points, and real processes stopped with SIGINT, SIGTERM and SIGKILL halfway."""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import awqfmt.convert_engine as C
import awqfmt.writer as W
from awqfmt.convert import ConvertRefused, convert

from conftest import REAL_CHECKPOINTS, ROOT

MINILM = REAL_CHECKPOINTS["minilm_awq_g128"][0]


def checksums(directory: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src"
    shutil.copytree(MINILM, path)
    return path


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}."))


class FullDisk:
    """A file object that accepts `budget` more bytes (shared by every file opened) and then raises ENOSPC."""

    def __init__(self, path, budget):
        self._fh = open(path, "wb")
        self._budget = budget

    def write(self, data):
        n = memoryview(data).nbytes
        if n > self._budget[0]:
            self._fh.write(memoryview(data).cast("B")[: self._budget[0]])
            self._budget[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._budget[0] -= n
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


# bytes written before the disk fills: in the first header, mid-tensor, near the end of the shard, in the index
# and configs, in the copied tokenizer files
@pytest.mark.parametrize("budget", [0, 5, 4096, 1_000_000, 3_000_000, 6_137_000, 6_200_000, 6_500_000, 6_800_000])
def test_disk_full_at_any_point_leaves_no_dst(src, tmp_path, monkeypatch, budget):
    before = checksums(src)
    shared = [budget]
    monkeypatch.setattr(W, "open_output", lambda path: FullDisk(path, shared))
    with pytest.raises(ConvertRefused) as exc:
        convert(src, tmp_path / "out", "gptq-v2", max_shard_size="2MB")
    f = exc.value.findings[0]
    assert f.code == "convert.write-failed" and "disk full" in f.message
    assert leftovers(tmp_path, "out") == []
    assert checksums(src) == before


@pytest.mark.parametrize("after_modules", [0, 1, 20])
@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, MemoryError])
def test_exception_midway_leaves_no_dst(src, tmp_path, monkeypatch, after_modules, exc_type):
    before = checksums(src)
    real, seen = C.convert_module, [0]

    def failing(*args, **kw):
        if seen[0] == after_modules:
            raise exc_type("injected")
        seen[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(C, "convert_module", failing)
    with pytest.raises(exc_type):
        convert(src, tmp_path / "deep" / "out", "compressed-tensors", max_shard_size="1MB")
    assert seen[0] == after_modules
    assert leftovers(tmp_path, "deep") == []  # the parent directories made for DST are gone too
    assert checksums(src) == before


def test_failure_in_a_worker_process_leaves_no_dst(tmp_path):
    from test_convert_refusals import _unpacked_checkpoint

    src = _unpacked_checkpoint(tmp_path / "u", codes_max=99)  # a code that does not fit 4 bits, found while writing
    before = checksums(src)
    with pytest.raises(ConvertRefused) as exc:
        convert(src, tmp_path / "out", "compressed-tensors", jobs=2, max_shard_size="1KB")
    assert [(f.code, f.module, f.tensor) for f in exc.value.findings] == [("values.code-range", "layer", "layer.weight_codes")]
    assert leftovers(tmp_path, "out") == [] and checksums(src) == before


@pytest.mark.parametrize("where", ["mkdir", "rename"])
def test_permission_denied_leaves_no_dst(src, tmp_path, monkeypatch, where):
    """EACCES creating the staging directory or renaming it into place (tests run as root, so chmod cannot deny)."""
    before = checksums(src)

    def denied(*args, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(args[0]))

    if where == "mkdir":
        real_mkdir = Path.mkdir
        monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: denied(self) if W.PARTIAL_TAG in self.name else real_mkdir(self, *a, **k))
    else:
        monkeypatch.setattr(W.os, "rename", denied)
    with pytest.raises(ConvertRefused) as exc:
        convert(src, tmp_path / "out", "gptq-v2")
    f = exc.value.findings[0]
    assert f.code == "convert.io-error" and "Permission denied" in f.message
    assert leftovers(tmp_path, "out") == [] and checksums(src) == before


def test_overwrite_that_fails_keeps_the_old_dst(src, tmp_path, monkeypatch):
    dst = tmp_path / "out"
    convert(src, dst, "gptq-v2")
    old = checksums(dst)
    shared = [100_000]
    monkeypatch.setattr(W, "open_output", lambda path: FullDisk(path, shared))
    with pytest.raises(ConvertRefused):
        convert(src, dst, "compressed-tensors", overwrite=True)
    assert checksums(dst) == old and leftovers(tmp_path, "out") == ["out"]


# ---- real processes, stopped halfway --------------------------------------------------------------------------

SLOW_RUNNER = textwrap.dedent("""
    import sys, time
    import awqfmt.writer as W
    real = W.open_output

    class Slow:  # every write takes a while, so the conversion is still running when the signal comes
        def __init__(self, path):
            self._fh = real(path)
        def write(self, data):
            time.sleep(0.02)
            return self._fh.write(data)
        def __getattr__(self, name):
            return getattr(self._fh, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self._fh.close()

    W.open_output = Slow
    from awqfmt.cli import main
    sys.argv = ["awqfmt", "convert", *sys.argv[1:]]
    main()
""")


def start_slow(src: Path, dst: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", SLOW_RUNNER, str(src), str(dst), "--to", "gptq-v2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def wait_for_partial(parent: Path, name: str, proc: subprocess.Popen, min_bytes: int = 200_000) -> Path:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        for p in parent.glob(f".{name}.awqfmt-partial-*"):
            if sum(f.stat().st_size for f in p.glob("*.safetensors")) >= min_bytes:
                return p
        time.sleep(0.02)
    raise AssertionError("the conversion never got halfway")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_conversion_cleans_up(src, tmp_path, sig):
    before = checksums(src)
    proc = start_slow(src, tmp_path / "out")
    partial = wait_for_partial(tmp_path, "out", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not partial.exists() and leftovers(tmp_path, "out") == []
    assert checksums(src) == before


def test_killed_conversion_leaves_only_a_marked_partial_that_the_next_run_removes(src, tmp_path):
    before = checksums(src)
    proc = start_slow(src, tmp_path / "out")
    partial = wait_for_partial(tmp_path, "out", proc)
    proc.kill()
    proc.wait(timeout=60)
    assert not (tmp_path / "out").exists()
    assert partial.is_dir() and (partial / W.MARKER).is_file()  # clearly named and marked as ours
    assert checksums(src) == before
    result = convert(src, tmp_path / "out", "gptq-v2")
    assert any(f.code == "convert.stale-removed" and partial.name in f.message for f in result.findings)
    assert leftovers(tmp_path, "out") == ["out"]


def test_two_conversions_into_one_dst_one_wins(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REAL_CHECKPOINTS["awq_tiny_llama"][0], src)  # small: the slow writer finishes in about a second
    proc = start_slow(src, tmp_path / "out", "--json")
    wait_for_partial(tmp_path, "out", proc, min_bytes=1)
    with pytest.raises(ConvertRefused) as exc:
        convert(src, tmp_path / "out", "compressed-tensors")
    assert exc.value.findings[0].code == "convert.dst-busy"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["layout"]["to"] == "gptq-v2"
    assert leftovers(tmp_path, "out") == ["out"]
