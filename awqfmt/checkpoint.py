"""Open a checkpoint: one .safetensors file, a `*.safetensors.index.json`, or a model directory.

Only headers are read at open time; tensors are memory-mapped on demand. Every defect of the container
(index naming missing files or tensors, a tensor in two shards, a hostile shard path) is a finding.
Pickled checkpoints (.bin/.pt/.pth) are never opened: unpickling runs arbitrary code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .findings import Finding, error, warning
from .quant_config import QuantConfig, load_quant_config
from .safetensors_file import PICKLE_HINT, SafetensorsFile, TensorEntry, loads_checked

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MAX_INDEX_BYTES = 256 * 1024 * 1024


class CheckpointNotFound(Exception):
    """The path does not exist or is not a checkpoint at all: a usage error (exit status 2)."""


@dataclass
class Checkpoint:
    path: Path
    directory: Path
    files: dict[str, SafetensorsFile] = field(default_factory=dict)
    index_name: str | None = None
    locations: dict[str, str] = field(default_factory=dict)  # tensor -> file name
    config: QuantConfig = field(default_factory=QuantConfig)
    findings: list[Finding] = field(default_factory=list)

    def entry(self, name: str) -> TensorEntry:
        return self.files[self.locations[name]].entries[name]

    def array(self, name: str) -> np.ndarray:
        return self.files[self.locations[name]].array(name)

    def file_of(self, name: str) -> str:
        return self.locations[name]

    @property
    def tensor_names(self) -> list[str]:
        return list(self.locations)

    def all_findings(self) -> list[Finding]:
        out = list(self.findings) + list(self.config.findings)
        for f in self.files.values():
            out.extend(f.findings)
        return out

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _safe_shard_name(name: object) -> bool:
    """A weight_map value must be a plain file name in the checkpoint's directory: no absolute path, no separator,
    no `..` (an index from a stranger must not make us open /etc/passwd or ../../secrets)."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        return False
    if "/" in name or "\\" in name or "\x00" in name:
        return False
    return not (PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute())


def open_checkpoint(path: str | Path) -> Checkpoint:
    p = Path(path)
    if not p.exists():
        raise CheckpointNotFound(f"no such file or directory: {path}")
    if p.is_dir():
        ckpt = Checkpoint(path=p, directory=p)
        try:
            listing = sorted(p.iterdir())
        except OSError as exc:
            raise CheckpointNotFound(f"cannot list directory {path}: {exc.strerror or exc}") from None
        # regular files (or symlinks to them, as in the Hugging Face cache); a FIFO or device is never opened,
        # a dangling symlink is kept so that the reader reports it
        usable = [x for x in listing if x.is_file() or (x.is_symlink() and not x.exists())]
        indexes = [x for x in usable if x.name.endswith(".safetensors.index.json")]
        shards = [x for x in usable if x.name.endswith(".safetensors")]
        if indexes:
            _open_index(ckpt, indexes[0], others=shards)
        else:
            if not shards:
                _no_safetensors(ckpt, listing, p)
            for shard in shards:
                _add_file(ckpt, shard)
    elif p.suffix in PICKLE_SUFFIXES:
        ckpt = Checkpoint(path=p, directory=p.parent)
        ckpt.findings.append(error("file.pickle", f"{p.name} is a pickled checkpoint; awqfmt does not open it", hint=PICKLE_HINT, file=p.name))
        return ckpt
    elif not p.is_file():
        raise CheckpointNotFound(f"not a regular file or directory: {path}")
    elif p.name.endswith(".json"):
        ckpt = Checkpoint(path=p, directory=p.parent)
        _open_index(ckpt, p)
    else:
        ckpt = Checkpoint(path=p, directory=p.parent)
        _add_file(ckpt, p)
    ckpt.config = load_quant_config(ckpt.directory)
    return ckpt


def _no_safetensors(ckpt: Checkpoint, listing: list[Path], directory: Path) -> None:
    pickles = sorted(x.name for x in listing if x.suffix in PICKLE_SUFFIXES)
    if pickles:
        ckpt.findings.append(error("file.pickle", f"only pickled weights here ({', '.join(pickles[:3])}); awqfmt does not open them",
                                   hint=PICKLE_HINT, file=pickles[0]))
    else:
        ckpt.findings.append(error("checkpoint.no-safetensors", f"no .safetensors file in {directory}",
                                   hint="point awqfmt at a model directory, a .safetensors file or a model.safetensors.index.json"))


def _add_file(ckpt: Checkpoint, path: Path, name: str | None = None) -> SafetensorsFile:
    name = name or path.name
    st = SafetensorsFile(path, display_name=name)
    ckpt.files[name] = st
    for tensor in st.entries:
        if tensor in ckpt.locations:
            ckpt.findings.append(error("index.duplicate-tensor", f"tensor {tensor!r} is stored in {ckpt.locations[tensor]} and in {name}",
                                       hint="loaders pick one copy arbitrarily: remove one", file=name, tensor=tensor))
        else:
            ckpt.locations[tensor] = name
    return st


def _open_index(ckpt: Checkpoint, index_path: Path, others: list[Path] = ()) -> None:
    """Open the shards an index names. `others`: the directory's .safetensors files, to report unlisted shards."""
    iname = index_path.name
    ckpt.index_name = iname

    def bad(code: str, message: str, hint: str, **kw):
        ckpt.findings.append(error(code, message, hint=hint, file=iname, **kw))

    try:
        if index_path.stat().st_size > MAX_INDEX_BYTES:
            return bad("index.malformed", f"index file is larger than {MAX_INDEX_BYTES >> 20} MiB", "this is not a safetensors index")
        obj = loads_checked(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return bad("index.malformed", f"index is not valid JSON: {str(exc)[:120]}", "re-create the index")
    if not isinstance(obj, dict) or not isinstance(obj.get("weight_map"), dict):
        what = "is not a JSON object" if not isinstance(obj, dict) else \
            "has no weight_map" if "weight_map" not in obj else f"has a weight_map that is a {type(obj['weight_map']).__name__}, not an object"
        return bad("index.malformed", f"index {what}", "an index must hold {\"weight_map\": {tensor name: shard file name}}")
    weight_map: dict = obj["weight_map"]
    for dup in sorted(set(getattr(weight_map, "duplicates", ()))):
        bad("index.duplicate-key", f"weight_map lists {dup!r} more than once (JSON readers keep only the last)",
            "regenerate the index", tensor=dup)
    wanted: dict[str, list[str]] = {}
    verdicts: dict[str, bool] = {}  # 100k tensors name a few shards: judge each shard name once
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            bad("index.malformed", f"weight_map sends {tensor!r} to a {type(shard).__name__}, not a file name",
                "weight_map values must be shard file names", tensor=tensor)
            continue
        safe = verdicts.get(shard)
        if safe is None:
            safe = verdicts[shard] = _safe_shard_name(shard)
        if not safe:
            bad("index.bad-path", f"weight_map sends {tensor!r} to {str(shard)[:100]!r}, which is not a plain file name in the checkpoint directory",
                "shard names must not be absolute or contain '/', '\\\\' or '..'; awqfmt did not open it", tensor=tensor)
            continue
        wanted.setdefault(shard, []).append(tensor)
    for shard in sorted(wanted):
        path = ckpt.directory / shard
        if not path.is_file():
            bad("index.missing-file", f"index names shard {shard!r} ({len(wanted[shard])} tensors), which does not exist or is not a regular file",
                "download the missing shard, or regenerate the index", evidence={"tensors": len(wanted[shard])})
            continue
        st = _add_file(ckpt, path, shard)
        if not st.header_ok:
            continue
        listed = set(wanted[shard])
        present = set(st.entries) | set(_unparsed_names(st))
        for t in sorted(listed - present)[:50]:
            bad("index.missing-tensor", f"index says {t!r} is in {shard}, but it is not there", "regenerate the index or re-upload the shard", tensor=t)
        for t in sorted(present - weight_map.keys())[:50]:  # (a keys view: no 100k-name set per shard)
            ckpt.findings.append(error("index.unlisted-tensor", f"{t!r} is in {shard} but absent from the index",
                                       hint="loaders that follow the index never load it: regenerate the index", file=shard, tensor=t))
    for extra in sorted(x.name for x in others if x.name not in wanted):
        ckpt.findings.append(warning("index.unlisted-file", f"{extra} is in the directory but the index names none of its tensors",
                                     hint="loaders that follow the index never read it: a leftover from another export? delete it or regenerate the index",
                                     file=extra))
    total = obj.get("metadata", {}).get("total_size") if isinstance(obj.get("metadata"), dict) else None
    if total is not None:
        actual = sum(e.nbytes for f in ckpt.files.values() for e in f.entries.values())
        if type(total) is not int or total != actual:
            ckpt.findings.append(warning("index.total-size", f"metadata.total_size is {total}, the shards hold {actual} bytes of tensors",
                                         hint="regenerate the index (some loaders size buffers from it)", file=iname))


def _unparsed_names(st: SafetensorsFile) -> list[str]:
    """Tensors whose header entry was defective are not in `entries` but were present: don't call them missing."""
    return [f.tensor for f in st.findings if f.tensor]
