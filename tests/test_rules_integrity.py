"""File-integrity rules (issue 2, section 5): every rule proven by a crafted bad file, checked through the CLI
for the finding code, the file and tensor it names, and the exit status."""

import json
import struct

import numpy as np
import pytest

from craft import assert_finding, check_cli, codes, copy_fixture, entry, file_bytes, safetensors_bytes
from conftest import REAL_CHECKPOINTS

A = np.arange(4, dtype=np.int32)  # 16 bytes
B = np.ones((2, 2), dtype=np.float16)  # 8 bytes


def write(tmp_path, blob: bytes, name: str = "model.safetensors"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def two_tensors(a_offsets=(0, 16), b_offsets=(16, 24), a_shape=(4,), b_shape=(2, 2), a_dtype="I32", b_dtype="F16", data=None):
    header = {"a": entry(a_dtype, list(a_shape), *a_offsets), "b": entry(b_dtype, list(b_shape), *b_offsets)}
    return header, (A.tobytes() + B.tobytes()) if data is None else data


def test_a_valid_crafted_file_has_no_integrity_findings(tmp_path):
    path = write(tmp_path, file_bytes(*two_tensors()))
    status, doc = check_cli(path)
    # no quantized module in it, and nothing else wrong
    assert codes(doc) == {"checkpoint.no-quantized-modules"} and status == 1
    assert doc["tensors"] == 2


@pytest.mark.parametrize("length, why", [(0, "is 0"), (10_000, "exceeds the file")])
def test_header_length_vs_file_size(tmp_path, length, why):
    path = write(tmp_path, file_bytes(*two_tensors(), length=length))
    status, doc = check_cli(path)
    f = assert_finding(doc, "file.header-length", file="model.safetensors", severity="error")
    assert why in f["message"] and status == 1


def test_file_shorter_than_the_length_field(tmp_path):
    path = write(tmp_path, b"\x10\x00\x00")
    status, doc = check_cli(path)
    assert_finding(doc, "file.too-small", file="model.safetensors")
    assert status == 1


def test_invalid_json_header(tmp_path):
    path = write(tmp_path, file_bytes('{"a": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]', A.tobytes()))
    status, doc = check_cli(path)
    assert_finding(doc, "file.header-json", file="model.safetensors")
    assert status == 1


def test_duplicate_keys_name_the_tensor(tmp_path):
    text = ('{"a": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]},'
            ' "a": {"dtype": "I32", "shape": [4], "data_offsets": [16, 32]}}')
    path = write(tmp_path, file_bytes(text, A.tobytes() * 2))
    status, doc = check_cli(path)
    assert_finding(doc, "file.duplicate-key", tensor="a", file="model.safetensors")
    # the first copy's bytes are now owned by no entry: that is a gap, reported too
    assert_finding(doc, "file.gap")
    assert status == 1


def test_unknown_dtype(tmp_path):
    header, data = two_tensors(b_dtype="Q4_K")
    path = write(tmp_path, file_bytes(header, data))
    status, doc = check_cli(path)
    f = assert_finding(doc, "tensor.unknown-dtype", tensor="b", file="model.safetensors")
    assert "'Q4_K'" in f["message"] and status == 1


def test_offsets_out_of_bounds(tmp_path):
    path = write(tmp_path, file_bytes(*two_tensors(b_offsets=(16, 24 + 64), b_shape=(2, 18))))
    status, doc = check_cli(path)
    assert_finding(doc, "tensor.out-of-bounds", tensor="b", file="model.safetensors")
    assert status == 1


def test_overlapping_offsets(tmp_path):
    # b starts inside a; the 8 bytes after b are then left over as well
    path = write(tmp_path, file_bytes(*two_tensors(b_offsets=(8, 16))))
    status, doc = check_cli(path)
    assert_finding(doc, "file.overlap", tensor="b", file="model.safetensors")
    assert status == 1


def test_gap_between_tensors(tmp_path):
    header = {"a": entry("I32", [4], 0, 16), "b": entry("F16", [2, 2], 24, 32)}
    path = write(tmp_path, file_bytes(header, A.tobytes() + b"\0" * 8 + B.tobytes()))
    status, doc = check_cli(path)
    f = assert_finding(doc, "file.gap", tensor="b", file="model.safetensors")
    assert "8 unused bytes" in f["message"] and status == 1


def test_gap_before_the_first_tensor(tmp_path):
    header = {"a": entry("I32", [4], 8, 24), "b": entry("F16", [2, 2], 24, 32)}
    path = write(tmp_path, file_bytes(header, b"\0" * 8 + A.tobytes() + B.tobytes()))
    status, doc = check_cli(path)
    assert_finding(doc, "file.gap", file="model.safetensors")
    assert status == 1


def test_size_is_not_shape_times_dtype(tmp_path):
    # 16 bytes hold 4 I32 values, but the header claims shape [5]
    path = write(tmp_path, file_bytes(*two_tensors(a_shape=(5,))))
    status, doc = check_cli(path)
    f = assert_finding(doc, "tensor.size-mismatch", tensor="a", file="model.safetensors")
    assert f["evidence"] == {"have": 16, "need": 20} and status == 1


def test_trailing_bytes_after_the_last_tensor(tmp_path):
    header, data = two_tensors()
    path = write(tmp_path, file_bytes(header, data + b"junk"))
    status, doc = check_cli(path)
    assert_finding(doc, "file.trailing-bytes", file="model.safetensors", severity="error")
    assert status == 1


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_real_checkpoint(tmp_path, cut):
    """A real AutoAWQ file cut short: the tensors past the end are named, the others still checked."""
    d = copy_fixture(REAL_CHECKPOINTS["awq_tiny_llama"][0], tmp_path / "ckpt")
    path = d / "model.safetensors"
    blob = path.read_bytes()
    path.write_bytes(blob[:-cut])
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data_size = len(blob) - 8 - n - cut
    cut_off = sorted(k for k, v in header.items() if k != "__metadata__" and v["data_offsets"][1] > data_size)
    status, doc = check_cli(d)
    named = sorted(f["tensor"] for f in doc["findings"] if f["code"] == "tensor.out-of-bounds")
    assert named == cut_off and status == 1
    assert all(f["file"] == "model.safetensors" for f in doc["findings"] if f["code"] == "tensor.out-of-bounds")
    assert "file.trailing-bytes" not in codes(doc)  # the partial last tensor is not "trailing"
    if any(name.rsplit(".", 1)[1] in ("qweight", "qzeros", "scales") for name in cut_off):
        # the module that lost a tensor is reported as incomplete, not silently skipped
        assert_finding(doc, "module.missing-tensor")


def test_truncated_inside_the_header(tmp_path):
    blob = safetensors_bytes({"a": A, "b": B})
    path = write(tmp_path, blob[:20])
    status, doc = check_cli(path)
    assert_finding(doc, "file.header-length", file="model.safetensors")
    assert status == 1


def test_offsets_reversed(tmp_path):
    path = write(tmp_path, file_bytes(*two_tensors(b_offsets=(24, 16))))
    status, doc = check_cli(path)
    assert_finding(doc, "tensor.offsets-reversed", tensor="b")
    assert status == 1


def test_metadata_with_non_string_values(tmp_path):
    header, data = two_tensors()
    header = {"__metadata__": {"format": "pt", "step": 1000}, **header}
    path = write(tmp_path, file_bytes(header, data))
    status, doc = check_cli(path)
    assert_finding(doc, "file.metadata-type", file="model.safetensors")
    assert status == 1


def test_string_metadata_is_fine(tmp_path):
    header, data = two_tensors()
    path = write(tmp_path, file_bytes({"__metadata__": {"format": "pt"}, **header}, data))
    _, doc = check_cli(path)
    assert "file.metadata-type" not in codes(doc)


def test_several_defects_in_one_header_are_all_reported(tmp_path):
    header = {
        "ok": entry("I32", [4], 0, 16),
        "bad_dtype": entry("INT4", [4], 16, 32),
        "bad_shape": entry("I32", [-1, 4], 16, 32),
        "no_offsets": {"dtype": "I32", "shape": [4]},
    }
    path = write(tmp_path, file_bytes(header, A.tobytes() * 2))
    status, doc = check_cli(path)
    assert_finding(doc, "tensor.unknown-dtype", tensor="bad_dtype")
    assert_finding(doc, "tensor.bad-shape", tensor="bad_shape")
    assert_finding(doc, "tensor.entry-malformed", tensor="no_offsets")
    assert status == 1
