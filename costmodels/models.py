"""The catalog of built-in models (``data/models/*.json``, HF ``config.json`` files with their
sources): names, aliases for releases that share an architecture, and :func:`get_model`, which
also reads any ``config.json`` by path (:mod:`costmodels.hf_config`).
"""
from __future__ import annotations

import json
import re
from difflib import get_close_matches
from functools import cache
from importlib import resources
from pathlib import Path

from costmodels.hf_config import model_from_config, warn_unknown_type
from costmodels.model_spec import ModelSpec, model_label
from topologies.errors import InputError

_SUFFIXES = ("-instruct", "-chat", "-hf", "-base", "-it", "-v0.1", "-v0.2", "-v0.3")

#: Releases that share a catalog model's architecture: every config.json field the cost model
#: reads is the same (the weights differ). DeepSeek-R1, R1-0528 and V3-0324: DeepSeek-V3's config
#: (DeepseekV3ForCausalLM, 61 layers, 256 routed experts, MLA), deepseek-ai/DeepSeek-R1 config.json
#: (also bundled by aiconfigurator-core 0.12.0); Llama-3.3-70B: Llama-3.1-70B's
#: (meta-llama/Llama-3.3-70B-Instruct config.json); the R1 Llama distills: their bases' configs
#: (deepseek-ai/DeepSeek-R1-Distill-Llama-8B from Llama-3.1-8B, -70B from Llama-3.3-70B-Instruct;
#: the Qwen distills differ from Qwen2.5 in max_position_embeddings, so they have their own files);
#: Phi-3.5-mini: Phi-3-mini-128k's (microsoft/Phi-3.5-mini-instruct config.json). Mistral's dated
#: names keep the date after "-Instruct", so they are listed. Llama 4 Scout and Maverick by their
#: short names (meta-llama/Llama-4-Scout-17B-16E-Instruct and the like resolve without an alias).
MODEL_ALIASES = {
    "deepseek-r1": "deepseek-v3", "deepseek-r1-0528": "deepseek-v3", "deepseek-v3-0324": "deepseek-v3",
    "llama-3.3-70b": "llama-3.1-70b",
    "deepseek-r1-distill-llama-8b": "llama-3.1-8b", "deepseek-r1-distill-llama-70b": "llama-3.1-70b",
    "phi-3.5-mini": "phi-3-mini-128k",
    "mistral-nemo-instruct-2407": "mistral-nemo-12b", "mistral-nemo-base-2407": "mistral-nemo-12b",
    "mistral-nemo": "mistral-nemo-12b",
    "mistral-small-24b-instruct-2501": "mistral-small-24b", "mistral-small-24b-base-2501": "mistral-small-24b",
    "mistral-large-instruct-2407": "mistral-large-123b", "mistral-large-instruct-2411": "mistral-large-123b",
    "llama-4-scout": "llama-4-scout-17b-16e", "llama-4-maverick": "llama-4-maverick-17b-128e",
}


def normalize_model_name(name: str) -> str:
    """Map an HF repo id or display name to a catalog key.

    >>> normalize_model_name("meta-llama/Meta-Llama-3.1-70B-Instruct")
    'llama-3.1-70b'
    """
    n = name.strip().lower().rsplit("/", 1)[-1]
    n = re.sub(r"^meta-(?=llama)", "", n)
    changed = True
    while changed:
        changed = False
        for s in _SUFFIXES:
            if n.endswith(s):
                n, changed = n[: -len(s)], True
    n = n.replace("_", "-")
    return MODEL_ALIASES.get(n, n)


def builtin_model_names() -> list[str]:
    d = resources.files("costmodels") / "data" / "models"
    return sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".json"))


@cache
def _builtin(name: str) -> ModelSpec:
    f = resources.files("costmodels") / "data" / "models" / f"{name}.json"
    return model_from_config(json.loads(f.read_text(encoding="utf-8")), name=name,
                             source=f"builtin:{name}")


def get_model(name_or_path: str | Path) -> ModelSpec:
    """A built-in model by (HF or display) name, or any HF ``config.json`` by path."""
    ref = str(name_or_path)
    key = normalize_model_name(ref)
    p = Path(ref)
    # A checkpoint folder or config file that exists is read, as `vllm serve PATH` loads a local folder
    # before it looks for a repository: /models/Llama-3.1-70B-Instruct may hold a quantised or trimmed
    # model, so its own config.json decides, not the catalog entry its name resembles.
    local = p.is_file() or (p.is_dir() and (p / "config.json").is_file())
    if key in builtin_model_names() and not local:
        return _builtin(key)
    if p.is_dir() and (p / "config.json").is_file():
        p = p / "config.json"
    elif p.is_dir() and (len(p.parts) > 1 or ref.endswith(("/", "\\"))):
        raise InputError(f"folder {ref!r} holds no config.json; give a checkpoint folder or its config.json",
                         source="--model")
    if p.is_file() or ref.endswith(".json"):
        from topologies.load import read_structured_file  # the one place files are parsed

        if p.suffix.lower() != ".json":
            raise InputError("a model config must be a .json file (an HF config.json)", source=ref)
        data, _ = read_structured_file(p)
        spec = model_from_config(data, name=model_label(p.absolute().parent.name if p.name == "config.json" else p.stem),
                                 source=ref)
        warn_unknown_type(data, ref)
        return spec
    near = get_close_matches(key, builtin_model_names(), n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise InputError(f"unknown model {ref!r}: not a built-in name and no such config.json; {hint}"
                     f"see `plan-search catalog models`", source="--model")
