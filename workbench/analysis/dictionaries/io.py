"""Save and load a dictionary (WriteSAE or SAE) as safetensors, its config and shape in the file's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from safetensors import safe_open
from safetensors.torch import save_file

from .sae import SAEConfig, SparseAutoencoder
from .write_sae import WriteSAE, WriteSAEConfig

_KINDS = {"write_sae": (WriteSAE, WriteSAEConfig), "sae": (SparseAutoencoder, SAEConfig)}


def save_dictionary(module: Union[WriteSAE, SparseAutoencoder], path: Union[str, Path]) -> Path:
    """Write ``module`` to ``path`` (a ``.safetensors`` file); :func:`load_dictionary` reads it back."""
    kind = "write_sae" if isinstance(module, WriteSAE) else "sae"
    dims = {"d_k": module.d_k, "d_v": module.d_v} if kind == "write_sae" else {"d_in": module.d_in}
    meta = {"kind": kind, "config": json.dumps(module.cfg.to_dict()), "dims": json.dumps(dims)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_dictionary(path: Union[str, Path]) -> Union[WriteSAE, SparseAutoencoder]:
    """The dictionary saved at ``path`` (eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dictionary at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("kind") not in _KINDS:
        raise ValueError(f"{path} is not a dictionary saved by save_dictionary (metadata kind {meta.get('kind')!r})")
    cls, cfg_cls = _KINDS[meta["kind"]]
    module = cls(cfg_cls.from_dict(json.loads(meta["config"])), **json.loads(meta["dims"]))
    module = module.to(next(iter(tensors.values())).dtype)
    module.load_state_dict(tensors)
    return module.eval()
