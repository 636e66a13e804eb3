"""The rules `awqfmt check` applies, one module per family (see specs/RULES.md for every code)."""
