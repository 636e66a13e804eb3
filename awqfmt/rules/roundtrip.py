"""--deep: decode -> encode must give back the stored bytes of every module."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..logical import DecodeError, RepresentationError, decode, encode
from ..modules import Fit


def roundtrip_findings(ckpt, module, fit: Fit, err) -> list[Finding]:
    """Decode the whole module to its logical form and encode it again in the same layout. The packed fields
    decode and encode exactly, so any byte that differs in a packed tensor sits in bits no field covers
    (padding past K or N, the 2 spare bits of a 10-in-32 word): nonzero there means the file was not written
    by the layout's packer. A difference in any other tensor is a round-trip failure."""
    spec = fit.spec
    stored = {short: np.asarray(ckpt.array(full)) for short, full in module.tensors.items()}
    kinds = {short: ckpt.entry(full).dtype for short, full in module.tensors.items()}
    try:
        logical = decode(spec, stored, kinds, fit.bits, fit.G)
        encoded = encode(spec, logical)
    except (DecodeError, RepresentationError) as exc:
        err("values.roundtrip", f"the module does not survive decode -> encode in {spec.name}: {exc}",
            hint="the stored values are outside what the layout can hold", tensor=getattr(exc, "tensor", None) or spec.tensor("codes").name,
            cause=exc.code)
        return []
    by_name = {t.name: t for t in spec.tensors}
    for short, (array, dtype) in encoded.items():
        if short not in stored:
            continue
        t = by_name.get(short)
        have = stored[short]
        if t is not None and t.packed_dim is not None:
            a, b_ = have.reshape(-1).view(np.uint32), np.ascontiguousarray(array).reshape(-1).view(np.uint32)
            diff = np.nonzero(a != b_)[0]
            if diff.size:
                i = int(diff[0])
                err("values.padding-nonzero",
                    f"{diff.size} word(s) have bits set outside every field (first: word {i} is {int(a[i]):#010x}, its fields alone give {int(b_[i]):#010x})",
                    hint="unused bits must be zero: some readers mask them, others add them to a field; re-pack the tensor",
                    tensor=short, words=int(diff.size), first_word=i)
        elif have.shape != array.shape or not np.array_equal(have, array):
            err("values.roundtrip", f"{short} changes on decode -> encode in {spec.name}",
                hint="please report this checkpoint: awqfmt's decoder and encoder disagree on it", tensor=short)
    return []
