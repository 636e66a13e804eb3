"""The specs are the single source of truth: well-formed, and LAYOUTS.md is generated from them."""

import pytest

from awqfmt.spec import SPEC_DIR, all_specs, get_spec
from awqfmt.specdoc import render


def test_layouts_md_is_generated_from_the_json_specs():
    assert (SPEC_DIR / "LAYOUTS.md").read_text() == render(), "run `python -m awqfmt.specdoc` after editing specs/*.json"


@pytest.mark.parametrize("name", sorted(all_specs()))
def test_every_spec_is_consistent(name):
    spec = get_spec(name)
    roles = [t.role for t in spec.tensors]
    assert {"codes", "scales"} <= set(roles)
    for b in spec.bits:
        p = spec.packing(b)  # validates the order is a permutation
        assert p.values * b <= 32 * p.words
    for t in spec.tensors:
        assert len(t.dims) == len(t.shape)
        assert t.packed_dim is None or 0 <= t.packed_dim < len(t.dims)
    assert spec.g_idx in ("none", "always", "when-act-order")


def test_aliases_resolve():
    assert get_spec("awq-order").name == "awq"
    assert get_spec("logical-order").name == "logical"
    assert get_spec("GPTQ_V2").name == "gptq-v2"
    with pytest.raises(KeyError):
        get_spec("marlin")
