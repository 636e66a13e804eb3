"""Hostile input for `awqfmt check` (issue 5): every byte and JSON field of a downloaded checkpoint is untrusted.
Each case is a crafted file; the test checks the finding and the exit status, and that no traceback, no
unpickling, no path escape and no giant allocation happens."""

import json
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from awqfmt.safetensors_file import MAX_HEADER_BYTES, SafetensorsFile
from craft import (Raw, assert_finding, check_cli, codes, copy_fixture, edit_config, edit_index, entry, file_bytes,
                   findings, shard_checkpoint)
from conftest import REAL_CHECKPOINTS

ROOT = Path(__file__).resolve().parent.parent
AWQ = REAL_CHECKPOINTS["awq_tiny_llama"][0]
A = np.arange(4, dtype=np.int32)


def one_file(tmp_path, blob: bytes, name="model.safetensors") -> Path:
    p = tmp_path / name
    p.write_bytes(blob)
    return p


# ---- safetensors headers -------------------------------------------------------------------------------

def test_header_length_over_the_limit_is_refused_before_allocating(tmp_path):
    """A 101 MiB file (sparse) whose length field says 100 MiB + 8: refused without reading the header."""
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write((MAX_HEADER_BYTES + 8).to_bytes(8, "little"))
        fh.truncate(MAX_HEADER_BYTES + (1 << 20))
    tracemalloc.start()
    st = SafetensorsFile(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [f.code for f in st.findings] == ["file.header-length"] and "100 MiB limit" in st.findings[0].message
    assert peak < 1 << 20  # nothing close to the claimed header size was allocated
    status, doc = check_cli(path)
    assert_finding(doc, "file.header-length", file="model.safetensors")
    assert status == 1


def test_header_length_larger_than_the_file_allocates_nothing(tmp_path):
    path = one_file(tmp_path, (1 << 62).to_bytes(8, "little") + b"{}")
    tracemalloc.start()
    st = SafetensorsFile(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [f.code for f in st.findings] == ["file.header-length"] and peak < 1 << 20


def test_odd_header_length_is_valid_and_read_correctly(tmp_path):
    """Unpadded headers are legal (older writers): the data buffer is then unaligned, and must still read right."""
    raw = Raw.read(AWQ / "model.safetensors")
    for filler in ("", "y"):  # one of the two makes the header length odd
        raw.metadata = {"format": "pt", "x": filler}
        if int.from_bytes(raw.to_bytes(pad=False)[:8], "little") % 2:
            break
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    raw.save(d / "model.safetensors", pad=False)
    blob = (d / "model.safetensors").read_bytes()
    assert int.from_bytes(blob[:8], "little") % 2 == 1
    status, doc = check_cli(d, "--deep")
    assert status == 0 and doc["findings"] == []
    st = SafetensorsFile(d / "model.safetensors")
    name = "model.layers.0.mlp.gate_proj.scales"
    assert np.array_equal(st.array(name), raw.get(name))
    st.close()


@pytest.mark.parametrize("header, code", [
    (b'{"a": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]}, "\xff\xfe": 1}', "file.header-utf8"),
    (b"\xc3\x28" * 8, "file.header-utf8"),
    (b"not json at all", "file.header-json"),
    (b'{"a": ', "file.header-json"),
    (b"[1, 2, 3]", "file.header-not-object"),
    (b'"a string"', "file.header-not-object"),
    (b"null", "file.header-not-object"),
    (b"[" * 200_000 + b"]" * 200_000, "file.header-json"),
    (b'{"a": ' + b'{"b": ' * 100_000 + b"1" + b"}" * 100_001, "file.header-json"),
    (b'{"a": {"dtype": "I32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 16]}}', "file.header-json"),
])
def test_headers_that_are_not_a_json_object(tmp_path, header, code):
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    assert_finding(doc, code, file="model.safetensors", severity="error")
    assert status == 1


@pytest.mark.parametrize("meta", [{"step": 1}, {"nested": {"a": "b"}}, ["a", "b"], "text", {"n": None}])
def test_metadata_that_is_not_string_to_string(tmp_path, meta):
    header = {"__metadata__": meta, "a": entry("I32", [4], 0, 16)}
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    assert_finding(doc, "file.metadata-type")
    assert status == 1


@pytest.mark.parametrize("dtype", ["INT4", "f16", "", 5, None, ["F16"], {"F16": 1}])
def test_unknown_or_mistyped_dtype(tmp_path, dtype):
    header = {"a": {"dtype": dtype, "shape": [4], "data_offsets": [0, 16]}}
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    assert_finding(doc, "tensor.unknown-dtype", tensor="a")
    assert status == 1


@pytest.mark.parametrize("shape", [[-4], [4.0], ["4"], [True, 4], [None], 4, {"0": 4}, [2 ** 40, 2 ** 40], [10 ** 30],
                                   [2 ** 64 + 4], [1] * 10_000 + [-1]])
def test_hostile_shapes(tmp_path, shape):
    header = {"a": {"dtype": "I32", "shape": shape, "data_offsets": [0, 16]}}
    tracemalloc.start()
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_finding(doc, "tensor.bad-shape", tensor="a")
    assert status == 1 and peak < 64 << 20


@pytest.mark.parametrize("offsets, code", [
    ([16, 0], "tensor.offsets-reversed"),
    ([0], "tensor.entry-malformed"),
    ([0, 16, 32], "tensor.entry-malformed"),
    ([0.0, 16.0], "tensor.entry-malformed"),
    (["0", "16"], "tensor.entry-malformed"),
    ([-16, 0], "tensor.entry-malformed"),
    ({"begin": 0}, "tensor.entry-malformed"),
    ([2 ** 70, 2 ** 70 + 16], "tensor.out-of-bounds"),
    ([2 ** 63 - 16, 2 ** 63], "tensor.out-of-bounds"),
])
def test_hostile_offsets(tmp_path, offsets, code):
    header = {"a": {"dtype": "I32", "shape": [4], "data_offsets": offsets}}
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    assert_finding(doc, code, tensor="a")
    assert status == 1


def test_entry_with_repeated_keys(tmp_path):
    text = '{"a": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16], "data_offsets": [0, 16]}}'
    status, doc = check_cli(one_file(tmp_path, file_bytes(text, A.tobytes())))
    assert_finding(doc, "tensor.entry-malformed", tensor="a")
    assert status == 1


@pytest.mark.parametrize("where", ["first", "middle", "last", "all-at-one-offset"])
def test_zero_length_tensors_are_valid(tmp_path, where):
    """Tensors with a 0 in the shape own no bytes; wherever they sit they are not overlaps or gaps."""
    real = Raw.read(AWQ / "model.safetensors")
    names = real.names()
    empties = {"extra.empty_a": np.zeros((0,), np.float16), "extra.empty_b": np.zeros((3, 0), np.int32)}
    out = Raw({}, bytearray(), metadata={"format": "pt"})
    order = {"first": 0, "middle": len(names) // 2, "last": len(names)}.get(where, 7)
    for i, name in enumerate(names + [None]):
        if i == order:
            for e_name, arr in empties.items():
                out.add(e_name, arr)
        if name is not None:
            out.add(name, real.get(name), real.dtype(name))
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    out.save(d / "model.safetensors")
    status, doc = check_cli(d)
    assert status == 0 and doc["findings"] == [] and doc["tensors"] == len(names) + 2


def test_zero_length_tensor_inside_another_is_an_overlap(tmp_path):
    header = {"a": entry("I32", [4], 0, 16), "z": entry("I32", [0], 8, 8)}
    status, doc = check_cli(one_file(tmp_path, file_bytes(header, A.tobytes())))
    assert_finding(doc, "file.overlap", tensor="z")
    assert status == 1


@pytest.mark.parametrize("keep", [0, 4, 8, 9, 40, 200, 1000, 600_000, -4096, -2, -1])
def test_real_file_truncated_anywhere(tmp_path, keep):
    blob = (AWQ / "model.safetensors").read_bytes()
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    (d / "model.safetensors").write_bytes(blob[:keep])
    status, doc = check_cli(d)
    assert status == 1 and codes(doc, "error")
    assert all(f["file"] in ("model.safetensors", None) for f in doc["findings"] if f["code"].startswith(("file.", "tensor.")))


@pytest.mark.parametrize("name", ["[bold]x[/bold]", "[/]", "\x1b[31mred", "a\nb", "\u202eevil", "x" * 5000])
def test_hostile_tensor_names_render_safely(tmp_path, name):
    from typer.testing import CliRunner

    from awqfmt.cli import app
    header = {name: entry("I32", [4], 0, 16), name + "2": entry("INT4", [4], 16, 32)}
    path = one_file(tmp_path, file_bytes(header, A.tobytes() * 2))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and "tensor.unknown-dtype" in result.stdout
    # a name cannot drive the terminal: no raw ESC / bidi override reaches it (rich styles nothing off a tty)
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout


# ---- index files -----------------------------------------------------------------------------------------

@pytest.fixture
def sharded(tmp_path):
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    return d, shard_checkpoint(d, 2)


def run_with_timeout(fn, seconds=20):
    """Run fn in a thread; a blocking open() of a FIFO would hang it, which the test reports as a failure."""
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    t.start()
    t.join(seconds)
    return (not t.is_alive()), box.get("value")


def release_fifo(path: Path):
    """Unblock a reader stuck on a FIFO (so a failing test does not hang the suite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


@pytest.mark.parametrize("target", ["../outside.safetensors", "{abs}", "sub/model.safetensors", "..\\outside.safetensors",
                                    "C:\\Windows\\model.safetensors", "..", ".", "", "model\x00.safetensors"])
def test_weight_map_paths_that_escape_are_refused_and_never_opened(sharded, target):
    """The escaping target is a FIFO: opening it for reading would block forever, so finishing proves it was not opened."""
    d, index = sharded
    fifo = d.parent / "outside.safetensors"
    os.mkfifo(fifo)
    (d / "sub").mkdir()
    os.mkfifo(d / "sub" / "model.safetensors")
    target = target.replace("{abs}", str(fifo))
    victim = next(iter(index["weight_map"]))
    edit_index(d, lambda o: o["weight_map"].update({victim: target}))
    try:
        finished, result = run_with_timeout(lambda: check_cli(d))
    finally:
        release_fifo(fifo)
        release_fifo(d / "sub" / "model.safetensors")
    assert finished, f"check blocked opening {target!r}"
    status, doc = result
    f = assert_finding(doc, "index.bad-path", tensor=victim, file="model.safetensors.index.json")
    assert "did not open" in f["hint"] and status == 1


def test_fifo_named_like_a_shard_is_not_opened(sharded):
    d, index = sharded
    shard = "model-00002-of-00002.safetensors"
    (d / shard).unlink()
    os.mkfifo(d / shard)
    try:
        finished, result = run_with_timeout(lambda: check_cli(d))
    finally:
        release_fifo(d / shard)
    assert finished
    status, doc = result
    assert_finding(doc, "index.missing-file", file="model.safetensors.index.json")
    assert status == 1


def test_fifo_in_a_directory_without_index_is_not_opened(tmp_path):
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    os.mkfifo(d / "zz-extra.safetensors")
    try:
        finished, result = run_with_timeout(lambda: check_cli(d))
    finally:
        release_fifo(d / "zz-extra.safetensors")
    assert finished and result == (0, result[1]) and result[1]["findings"] == []


def test_fifo_given_as_the_path_is_a_usage_error(tmp_path):
    os.mkfifo(tmp_path / "model.safetensors")
    try:
        finished, result = run_with_timeout(lambda: check_cli(tmp_path / "model.safetensors"))
    finally:
        release_fifo(tmp_path / "model.safetensors")
    assert finished and result[0] == 2


@pytest.mark.parametrize("index, what", [
    ({"metadata": {}}, "has no weight_map"),
    ({"weight_map": ["a", "b"]}, "weight_map that is a list"),
    ({"weight_map": "model.safetensors"}, "weight_map that is a str"),
    ([{"weight_map": {}}], "not a JSON object"),
    ("not json", "not valid JSON"),
])
def test_index_without_a_usable_weight_map(sharded, index, what):
    d, _ = sharded
    path = d / "model.safetensors.index.json"
    path.write_text(index if isinstance(index, str) else json.dumps(index))
    status, doc = check_cli(d)
    f = assert_finding(doc, "index.malformed", file="model.safetensors.index.json")
    assert what in f["message"] and status == 1


@pytest.mark.parametrize("value", [1, None, ["model-00001-of-00002.safetensors"], {"a": 1}, True])
def test_weight_map_values_of_the_wrong_type(sharded, value):
    d, index = sharded
    victim = next(iter(index["weight_map"]))
    edit_index(d, lambda o: o["weight_map"].update({victim: value}))
    status, doc = check_cli(d)
    assert_finding(doc, "index.malformed", tensor=victim)
    assert status == 1


def test_index_metadata_of_the_wrong_type(sharded):
    d, _ = sharded
    edit_index(d, lambda o: o.update(metadata=["total_size", 5]))
    status, doc = check_cli(d)
    assert status == 0 and doc["findings"] == []  # metadata is optional; an unusable one is ignored


def make_hf_cache(tmp_path, src: Path) -> Path:
    """Lay a checkpoint out as the Hugging Face cache does: snapshots/<rev>/<file> -> ../../blobs/<hash>."""
    repo = tmp_path / "hub" / "models--org--model"
    blobs, snap = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(src.iterdir())):
        blob = blobs / f"{i:040x}"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snap


def test_hugging_face_cache_symlinks_keep_working(tmp_path):
    snap = make_hf_cache(tmp_path, AWQ)
    assert (snap / "model.safetensors").is_symlink()
    for target in (snap, snap / "model.safetensors"):
        status, doc = check_cli(target, "--deep")
        assert status == 0 and doc["findings"] == [] and doc["modules"] == 14 and doc["layout"]["config"] == "awq"


def test_hugging_face_cache_symlinks_with_an_index(tmp_path):
    d = copy_fixture(AWQ, tmp_path / "src")
    shard_checkpoint(d, 2)
    snap = make_hf_cache(tmp_path, d)
    status, doc = check_cli(snap)
    assert status == 0 and doc["findings"] == [] and doc["layout"]["files"] == 2
    status, doc = check_cli(snap / "model.safetensors.index.json")
    assert status == 0 and doc["findings"] == []


def test_dangling_symlink_of_a_blob_not_downloaded(tmp_path):
    snap = make_hf_cache(tmp_path, AWQ)
    os.unlink(os.path.realpath(snap / "model.safetensors"))
    status, doc = check_cli(snap)
    assert_finding(doc, "file.unreadable", file="model.safetensors")
    assert status == 1


# ---- config files ----------------------------------------------------------------------------------------

@pytest.fixture
def awq(tmp_path):
    return copy_fixture(AWQ, tmp_path / "awq")


@pytest.mark.parametrize("field, value, code", [
    ("bits", "4", "config.bad-type"),
    ("bits", 4.0, "config.bad-type"),
    ("bits", True, "config.bad-type"),
    ("bits", 5, "config.bad-value"),
    ("bits", float("nan"), "config.bad-value"),
    ("group_size", None, "config.bad-type"),
    ("group_size", float("nan"), "config.bad-value"),
    ("group_size", float("inf"), "config.bad-value"),
    ("group_size", 0, "config.bad-value"),
    ("group_size", -7, "config.bad-value"),
    ("group_size", 2 ** 63, "config.bad-value"),
    ("group_size", 10 ** 40, "config.bad-value"),
    ("group_size", [64], "config.bad-type"),
    ("zero_point", "true", "config.bad-type"),
    ("modules_to_not_convert", "lm_head", "config.bad-type"),
    ("modules_to_not_convert", [1, 2], "config.bad-type"),
    ("quant_method", 7, "config.bad-type"),
])
def test_config_fields_of_the_wrong_type_or_value(awq, field, value, code):
    edit_config(awq, lambda q: q.update({field: value}))
    status, doc = check_cli(awq)
    f = assert_finding(doc, code, file="config.json", severity="error")
    assert field in f["message"] and status == 1


@pytest.mark.parametrize("method", ["bitsandbytes", "fp8", "AQLM", ""])
def test_unknown_quant_method(awq, method):
    edit_config(awq, lambda q: q.update(quant_method=method))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.unknown-quant-method", file="config.json")
    assert doc["layout"]["detected"] == "awq" and status == 1  # the tensors are still checked


def test_quantization_config_without_quant_method(awq):
    edit_config(awq, lambda q: q.pop("quant_method"))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.missing-field", file="config.json", severity="error")
    assert status == 1


@pytest.mark.parametrize("section", ["awq", 4, ["bits", 4]])
def test_quantization_config_that_is_not_an_object(awq, section):
    edit_config(awq, replace=section)
    status, doc = check_cli(awq)
    assert_finding(doc, "config.bad-type", file="config.json")
    assert status == 1


@pytest.mark.parametrize("text, name", [("{not json", "config.json"), ("[1, 2]", "config.json"), ('"str"', "quant_config.json"),
                                        ("\xff\xfe", "quant_config.json"), ("[" * 100_000, "config.json")])
def test_config_file_that_is_not_a_json_object(awq, text, name):
    (awq / name).write_bytes(text.encode("latin-1"))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.unreadable", file=name)
    assert status == 1


def test_giant_config_is_not_read(awq):
    with open(awq / "quant_config.json", "wb") as fh:
        fh.truncate(64 << 20)  # sparse
    tracemalloc.start()
    status, doc = check_cli(awq)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert_finding(doc, "config.too-large", file="quant_config.json")
    assert status == 1 and peak < 16 << 20


def test_config_json_and_quantize_config_json_disagree(tmp_path):
    d = copy_fixture(REAL_CHECKPOINTS["gptq_b4_g64_sym"][0], tmp_path / "gptq")
    edit_config(d, lambda q: q.update(desc_act=True, group_size=128), file="quantize_config.json")
    status, doc = check_cli(d)
    hits = findings(doc, "config.conflict")
    assert {h["file"] for h in hits} == {"quantize_config.json"}
    assert any("desc_act" in h["message"] for h in hits) and any("group_size" in h["message"] for h in hits)
    assert status == 1


def test_quant_config_json_synonyms_agree_with_config_json(awq):
    # AutoAWQ's own side file spells the fields w_bit / q_group_size / version "GEMM": no conflict
    (awq / "quant_config.json").write_text(json.dumps({"zero_point": True, "q_group_size": 64, "w_bit": 4, "version": "GEMM"}))
    status, doc = check_cli(awq)
    assert status == 0 and doc["findings"] == []
    (awq / "quant_config.json").write_text(json.dumps({"zero_point": True, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.conflict", file="quant_config.json")
    assert status == 1


def test_compressed_tensors_channel_strategy_group_size_null_is_fine(tmp_path):
    d = copy_fixture(REAL_CHECKPOINTS["ct_from_awq_tiny"][0], tmp_path / "ct")
    edit_config(d, lambda q: [g["weights"].update(group_size=None, strategy="channel") for g in q["config_groups"].values()])
    status, doc = check_cli(d)
    assert "config.bad-type" not in codes(doc)  # null means one group over K here
    assert_finding(doc, "module.config-group")  # ...which these group-64 tensors are not
    assert status == 1


# ---- pickled checkpoints ----------------------------------------------------------------------------------

class _Tripwire:
    """Unpickling this creates a marker file: proof that something ran code from the checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "model.ckpt"])
def test_pickled_checkpoint_is_never_unpickled(tmp_path, name):
    marker = tmp_path / "UNPICKLED"
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / name).write_bytes(pickle.dumps({"w": _Tripwire(marker)}, protocol=2))
    for target in (d, d / name):
        status, doc = check_cli(target)
        f = assert_finding(doc, "file.pickle", file=name)
        assert "weights_only=True" in f["hint"] and "never unpickles" in f["hint"]
        assert status == 1
    assert not marker.exists()


@pytest.mark.parametrize("magic", [b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95"])
def test_pickle_renamed_to_safetensors(tmp_path, magic):
    marker = tmp_path / "UNPICKLED"
    body = pickle.dumps(_Tripwire(marker), protocol=4)[2:]
    path = one_file(tmp_path, magic + body)
    status, doc = check_cli(path)
    assert_finding(doc, "file.pickle", file="model.safetensors")
    assert status == 1 and not marker.exists()


def test_safetensors_preferred_over_pickles_in_the_same_directory(awq):
    (awq / "pytorch_model.bin").write_bytes(b"\x80\x02garbage")
    status, doc = check_cli(awq)
    assert status == 0 and doc["findings"] == []


# ---- usage errors and internal errors --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/no/such/checkpoint", "/dev/null"])
def test_paths_that_are_not_checkpoints_are_usage_errors(path):
    status, _ = check_cli(path)
    assert status == 2


def run_awqfmt(args, env_extra=None, patch=None):
    """Run the real entry point in a subprocess (optionally after `patch` code), -> CompletedProcess."""
    code = "import sys\n" + (patch or "") + "\nfrom awqfmt.cli import main\nsys.argv = ['awqfmt', *sys.argv[1:]]\nmain()\n"
    env = {**os.environ, **(env_extra or {})}
    env.pop("AWQFMT_DEBUG", None) if not env_extra or "AWQFMT_DEBUG" not in env_extra else None
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


BUG = "import awqfmt.check as c\ndef boom(*a, **k):\n    raise RuntimeError('simulated bug')\nc.check_checkpoint = boom\n"


def test_internal_error_is_one_line_and_exit_3():
    proc = run_awqfmt(["check", str(AWQ)], patch=BUG)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr and "internal error" in proc.stderr and "AWQFMT_DEBUG=1" in proc.stderr


def test_internal_error_shows_the_traceback_with_awqfmt_debug():
    proc = run_awqfmt(["check", str(AWQ)], env_extra={"AWQFMT_DEBUG": "1"}, patch=BUG)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "simulated bug" in proc.stderr


@pytest.mark.parametrize("blob", [b"", b"\x00" * 8, (2 ** 64 - 1).to_bytes(8, "little"), b"\x08\x00\x00\x00\x00\x00\x00\x00[[[[[[[["])
def test_no_traceback_from_the_real_command(tmp_path, blob):
    path = one_file(tmp_path, blob)
    for extra in ([], ["--json"], ["--deep"]):
        proc = run_awqfmt(["check", str(path), *extra])
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


# ---- hostile tensor values (found by fuzzing) ------------------------------------------------------------

@pytest.mark.parametrize("values, dtype", [([np.inf, 256], "F32"), ([np.nan, 256], "F32"), ([2 ** 63 - 1, 2 ** 62], "I64"),
                                            ([-128, 256], "I64"), ([], "I64")])
def test_compressed_tensors_weight_shape_with_hostile_values(tmp_path, values, dtype):
    d = copy_fixture(REAL_CHECKPOINTS["ct_from_awq_tiny"][0], tmp_path / "ct")
    name = "model.layers.0.self_attn.k_proj.weight_shape"
    from craft import edit_model
    edit_model(d, lambda r: r.set(name, np.array(values, dtype=np.float32 if dtype == "F32" else np.int64), dtype))
    status, doc = check_cli(d)
    assert status == 1 and ({"module.shape", "module.dtype"} & codes(doc, "error"))
    assert all(f["module"] == "model.layers.0.self_attn.k_proj" for f in doc["findings"] if f["severity"] == "error")


def test_config_group_size_beyond_k_is_one_group_and_fast(tmp_path):
    d = copy_fixture(REAL_CHECKPOINTS["gptq_b8_gall_sym"][0], tmp_path / "g")
    for file in ("config.json", "quantize_config.json"):
        edit_config(d, lambda q: q.update(group_size=2 ** 30), file=file)
    status, doc = check_cli(d, "--deep")
    assert status == 0 and not codes(doc, "error") and doc["layout"]["group_size"] == 2 ** 30


def test_symlink_loop_is_a_finding_not_a_hang(tmp_path):
    d = copy_fixture(AWQ, tmp_path / "ckpt")
    (d / "loop-a.safetensors").symlink_to("loop-b.safetensors")
    (d / "loop-b.safetensors").symlink_to("loop-a.safetensors")
    status, doc = check_cli(d)
    assert {f["file"] for f in findings(doc, "file.unreadable")} == {"loop-a.safetensors", "loop-b.safetensors"}
    assert status == 1


def test_shard_symlink_to_a_directory_is_not_a_shard(sharded):
    d, _ = sharded
    shard = "model-00002-of-00002.safetensors"
    (d / shard).unlink()
    (d / shard).symlink_to(d.parent)
    status, doc = check_cli(d)
    assert_finding(doc, "index.missing-file")
    assert status == 1
