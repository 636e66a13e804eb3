"""Generate specs/LAYOUTS.md, the human-readable twin of specs/*.json (`python -m awqfmt.specdoc`).

A test regenerates it and compares, so the document cannot drift from the machine-readable spec.
"""

from __future__ import annotations

import sys

from .spec import SPEC_DIR, all_specs, config_fields


def _word_picture(spec, bits: int) -> str:
    if not spec.packed:
        return "not packed: one element per value"
    p = spec.packing(bits)
    if p.words != 1:
        return (f"{p.values} fields of {bits} bits in {p.words} words: one little-endian bit stream, field i at bits "
                f"[{bits}i, {bits}i+{bits}) of the block; fields crossing a word boundary are split (low bits in the lower word)")
    cells = [f"f{pos}=col {logical}" for pos, logical in reversed(list(enumerate(p.order)))]
    unused = 32 - p.values * bits
    return ("MSB " + " | ".join(cells) + " LSB" + (f" ({unused} top bits unused)" if unused else ""))


def render() -> str:
    out = ["# Layout specs (generated from specs/*.json by `python -m awqfmt.specdoc`; do not edit)", "",
           "Notation: K = in_features, N = out_features, G = group_size (-1 = one group over K), b = bits, "
           "n_g = ceil(K / G); `packed(X)` = ceil(X / fields per block) * words per block. The logical model every "
           "layout decodes to: `W[n, k] = (q[k, n] - z[g_idx[k], n]) * s[g_idx[k], n]`.", ""]
    for spec in all_specs().values():
        raw = spec.raw
        out += [f"## `{spec.name}` — {spec.title}", ""]
        if spec.aliases:
            out.append("Aliases: " + ", ".join(f"`{a}`" for a in spec.aliases) + ".  ")
        out.append(f"Bits: {', '.join(map(str, spec.bits))}.  ")
        zp = raw["zero_point"]
        out.append(f"Zero point stored as `{zp['stored']}`" + ("; the zero-point tensor is absent for symmetric schemes" if zp["when_symmetric"] == "absent" else "") + ".  ")
        out.append(f"g_idx: {spec.g_idx}.")
        out += ["", "| tensor | role | shape | dtypes | packed along |", "|---|---|---|---|---|"]
        for t in spec.tensors:
            along = t.dims[t.packed_dim] if t.packed_dim is not None else "-"
            out.append(f"| `{t.name}`{' (optional)' if t.optional else ''} | {t.role} | `[{', '.join(map(str, t.shape))}]` | "
                       f"{', '.join(t.dtypes)} | {along} |")
        out += ["", "Word layout per bit width (field position counted from the least significant bit):", ""]
        for b in spec.bits:
            out.append(f"- {b}-bit: {_word_picture(spec, b)}")
        if raw.get("field_order_why"):
            out += ["", f"Why this order: {raw['field_order_why']}."]
        if spec.invariants:
            out += ["", "Invariants:"]
            out += [f"- `{i.expr}` ({i.code}): {i.message}" for i in spec.invariants]
        match = spec.config.get("match", {})
        out += ["", "Config that selects it: " + ", ".join(f"`{k}` in {v}" for k, v in match.items()) + "."]
        if spec.config.get("note"):
            out.append(f"Note: {spec.config['note']}.")
        out += ["", "Sources: " + "; ".join(raw.get("sources", [])), ""]
    out += ["## Config fields", "", "| field | keys read (first found wins) | type | allowed |", "|---|---|---|---|"]
    for name, f in config_fields().items():
        out.append(f"| {name} | {', '.join(f'`{k}`' for k in f['keys'])} | {f['type']} | {f.get('allowed', f.get('rule', ''))} |")
    return "\n".join(out) + "\n"


def main() -> None:
    target = SPEC_DIR / "LAYOUTS.md"
    text = render()
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        sys.exit(0 if target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
