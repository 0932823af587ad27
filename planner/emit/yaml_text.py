"""Quoting by construction for the YAML the emitters write (Kubernetes manifests, the Envoy bootstrap).

PyYAML writes a string plain whenever its own YAML 1.1 resolver would read it back as a string.
Other readers resolve plain scalars differently: kubectl (sigs.k8s.io/yaml over go-yaml) reads
``08`` and ``1e3`` as numbers, and YAML 1.1 readers take ``y``, ``n``, ``on`` and ``off`` as
booleans. So a node or group named ``08`` or ``y`` changed type in the manifest and the API server
refused it (``node affinity values must be strings``). Here a string is written plain only when
it reads as a string in YAML 1.1 and 1.2 alike: a letter first (after at most a ``/`` or one or
two ``-``, as in ``/dev/shm`` and ``--port``), then only letters, digits, ``. _ / -`` and ``:``
inside, and no YAML 1.1 boolean or null word; every other string is double-quoted, multi-line
ones (the scripts) go in a literal block. No anchors or aliases.
"""
from __future__ import annotations

import re

import yaml

_PLAIN = re.compile(r"(?:/|--?)?[A-Za-z][A-Za-z0-9._/-]*(?::[A-Za-z0-9._/-]+)*")
#: Plain words YAML 1.1 (yaml.org/type/bool.html, yaml.org/type/null.html) reads as booleans or null,
#: compared in lower case (the spec lists the lower, capitalised and upper case forms).
_YAML11_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})


def plain_safe(s: str) -> bool:
    """Whether ``s`` reads back as this string when written plain, in YAML 1.1 and 1.2 alike.

    >>> [plain_safe(x) for x in ("apps/v1", "--port", "/dev/shm", "img:v0.3", "dgx0", "08", "y", "Off", "1e3",
    ...                          "-1", "-.inf", "a b", "a:", "")]
    [True, True, True, True, True, False, False, False, False, False, False, False, False, False]
    """
    return bool(_PLAIN.fullmatch(s)) and s.lower() not in _YAML11_WORDS


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, s: str):
    style = "|" if "\n" in s else None if plain_safe(s) else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str)


def yaml_dump(doc) -> str:
    """``doc`` as block-style YAML, keys in their order, strings written as the module docstring says."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
