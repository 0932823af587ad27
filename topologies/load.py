"""The only place topology files are read.

Files are YAML or JSON (JSON is YAML, but JSON files are parsed by :mod:`json` for exact
error positions). YAML is loaded with a safe loader that also refuses alias expansion
past a small budget (a "billion laughs" file) and files larger than ``MAX_FILE_BYTES``.
"""
from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from topologies.errors import InputError
from topologies.schema import GpuSpecFile, GpuTypeSpec, TopologySpec

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_YAML_ALIASES = 1000
#: Values (scalars, lists, mappings) one YAML file may hold: a sweep's largest grid (100,000 rows from
#: one list) or a topology of thousands of nodes stays far below; a 16 MiB flow list of a million
#: numbers took the pure-Python loader 26 s and 780 MB before any other limit applied.
MAX_YAML_NODES = 300_000


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that counts alias nodes; a file that expands past the budget is refused."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} YAML aliases; refusing to expand")
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:  # the pure-Python loader takes ~25 us and ~700 bytes a node
            raise yaml.YAMLError(f"more than {MAX_YAML_NODES:,} YAML values; no topology, sweep or plan has "
                                 "that many")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        """Refuse a mapping that names a key twice (PyYAML would keep the last value)."""
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.construct_object(key_node)
                    if isinstance(key, (str, int, float, bool)) or key is None:
                        if key in seen:
                            raise _DuplicateKey(key, key_node.start_mark.line + 1)
                        seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    """A key given twice in one mapping (YAML or JSON); ``line`` is known for YAML only."""

    def __init__(self, key, line: int | None = None):
        super().__init__(key)
        self.key = key
        self.line = line


class _NonFinite:
    """Stands in for a JSON ``NaN``/``Infinity`` until its place in the data is found."""

    def __init__(self, literal: str):
        self.literal = literal


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` for :func:`json.loads`: a key given twice is an error."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _find_non_finite(data: Any, path: str = "") -> tuple[str, str] | None:
    """(dotted path, literal) of the first ``NaN``/``Infinity`` in parsed JSON, else None."""
    stack = [(data, path)]
    while stack:
        x, where = stack.pop()
        if isinstance(x, _NonFinite):
            return where or "(top level)", x.literal
        if isinstance(x, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in reversed(list(x.items())))
        elif isinstance(x, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(x))))
    return None


def read_text_file(path: str | Path) -> tuple[str, bytes]:
    """Read a UTF-8 text file whole; returns (text, raw bytes).

    Refuses what is not a regular file, files over ``MAX_FILE_BYTES``, bytes that are not
    UTF-8 and empty files, each as an :class:`InputError` naming the file and the fix.
    """
    p = Path(path)
    src = str(path)
    if not p.exists():
        if p.is_symlink():
            raise InputError("is a broken or looping symbolic link", source=src)
        raise InputError("file does not exist; check the path", source=src)
    if not p.is_file():
        raise InputError("not a regular file", source=src)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"file is {size / 2**20:.0f} MiB; the limit is "
                         f"{MAX_FILE_BYTES // 2**20} MiB", source=src)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", source=src) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start}); save the file as UTF-8", source=src) from None
    if not text.strip():
        raise InputError("file is empty", source=src)
    return text, raw


def read_structured_file(path: str | Path) -> tuple[Any, bytes]:
    """Read a YAML or JSON file into plain Python data; returns (data, raw bytes).

    Raises :class:`InputError` naming the file for every way reading can fail.
    """
    p = Path(path)
    src = str(path)
    text, raw = read_text_file(path)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_json_object, parse_constant=_NonFinite)
        except _DuplicateKey as e:
            raise InputError(f"key {e.key!r} is given twice in one object; keep one", source=src) from None
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}", source=src) from None
        except RecursionError:
            raise InputError("JSON nests too deeply", source=src) from None
        except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
            raise InputError(f"invalid JSON: {str(e).splitlines()[0]}", source=src) from None
        bad = _find_non_finite(data)
        if bad is not None:
            raise InputError(f"{bad[1]} is not a number JSON allows (RFC 8259); give a finite number",
                             source=src, field=bad[0])
    else:
        try:
            data = yaml.load(text, Loader=_GuardedLoader)  # noqa: S506 - _GuardedLoader is a SafeLoader
        except _DuplicateKey as e:
            raise InputError(f"key {e.key!r} is given twice in one mapping (line {e.line}); keep one",
                             source=src) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise InputError(f"invalid YAML{where}: {problem}", source=src) from None
        except RecursionError:
            raise InputError("YAML nests too deeply", source=src) from None
        except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
            raise InputError(f"invalid YAML: {str(e).splitlines()[0]}", source=src) from None
    return data, raw


def _pydantic_error(e: ValidationError, src: str) -> InputError:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or None
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    m = re.match(r"^([a-z_][a-z0-9_]*): (.*)$", msg)
    if m:  # a model validator naming one of its own fields
        loc = f"{loc}.{m.group(1)}" if loc else m.group(1)
        msg = m.group(2)
    return InputError(msg, source=src, field=loc)


def read_gpu_spec_file(path: str | Path) -> tuple[dict[str, GpuTypeSpec], bytes]:
    """Read a file of user-defined GPUs (``gpu_types:`` name -> figures); returns them and the file's bytes.

    Every way the file can be wrong is one :class:`InputError` naming this file and the field.
    """
    src = str(path)
    data, raw = read_structured_file(path)
    if not isinstance(data, dict):
        raise InputError("a GPU spec file must be a mapping with a 'gpu_types' key (name -> figures)", source=src)
    try:
        return dict(GpuSpecFile.model_validate(data).gpu_types), raw
    except ValidationError as e:
        raise _pydantic_error(e, src) from None


def _merge_gpu_spec(data: dict, base: Path, src: str) -> tuple[dict, bytes]:
    """``data`` with the GPU types of the file its ``gpu_spec`` names (relative to ``base``) merged into
    ``gpu_types``, and that file's bytes (empty without one). A name defined in both is refused."""
    ref = data.get("gpu_spec")
    if ref is None:
        return data, b""
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("must be the path of a GPU spec file (YAML or JSON), relative to this file", source=src,
                         field="gpu_spec")
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    types, raw = read_gpu_spec_file(path)
    own = data.get("gpu_types") or {}
    if not isinstance(own, dict):
        return data, raw  # schema validation names the field
    for name in types:
        if name in own:
            raise InputError(f"GPU type {name!r} is defined here and in {path}; keep one", source=src,
                             field=f"gpu_types.{name}")
    merged = {**own, **{n: {**t.model_dump(exclude_defaults=True),
                            "source": t.source or f"user-defined GPU type from {path}"} for n, t in types.items()}}
    return {**data, "gpu_types": merged}, raw


BUILTIN_DIR = "builtin"


def builtin_topology_names() -> list[str]:
    d = resources.files("topologies") / BUILTIN_DIR
    return sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))


def _builtin_path(name: str) -> Path | None:
    f = resources.files("topologies") / BUILTIN_DIR / f"{name}.yaml"
    return Path(str(f)) if f.is_file() else None


def load_topology(name_or_path: str | Path) -> tuple[TopologySpec, str]:
    """Load a built-in topology by name, or a topology file by path.

    Returns the validated spec and the SHA-256 of the file's bytes (echoed in plans).
    """
    ref = str(name_or_path)
    if not ref.strip():
        raise InputError("empty; give a built-in topology name or a file path", source="--topology")
    path = _builtin_path(ref) if "/" not in ref and not ref.endswith((".yaml", ".yml", ".json")) else None
    if path is None:
        if not Path(ref).exists() and "/" not in ref and "." not in ref:
            from difflib import get_close_matches

            near = get_close_matches(ref, builtin_topology_names(), n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise InputError(f"unknown topology {ref!r}: not a built-in name and no such file; "
                             f"{hint}see `plan-search catalog topologies`", source="--topology")
        path = Path(ref)
    data, raw = read_structured_file(path)
    if not isinstance(data, dict):
        raise InputError("a topology file must be a mapping at the top level", source=ref)
    data, spec_raw = _merge_gpu_spec(data, Path(path).parent, ref)
    try:
        spec = TopologySpec.model_validate(data)
    except ValidationError as e:
        raise _pydantic_error(e, ref) from None
    # a GPU spec file is part of the topology: its bytes count in the hash plans echo
    digest = hashlib.sha256(raw)
    if spec_raw:
        digest.update(b"\0gpu_spec\0" + spec_raw)
    return spec, digest.hexdigest()


def parse_topology(data: Any, *, source: str = "<topology>") -> TopologySpec:
    """Validate already-parsed topology data (a dict), for library callers; a ``gpu_spec`` path is taken
    relative to the working directory."""
    if isinstance(data, dict):
        data, _ = _merge_gpu_spec(data, Path("."), source)
    try:
        return TopologySpec.model_validate(data)
    except ValidationError as e:
        raise _pydantic_error(e, source) from None
