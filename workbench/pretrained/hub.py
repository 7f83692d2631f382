"""Where a checkpoint is: a local directory, or a Hugging Face hub id fetched into huggingface_hub's cache.

Only what the loader reads is fetched (``config.json``, ``*.safetensors`` and their index, the tokenizer
files); pickled weights (``*.bin``, ``*.pt``) are never downloaded nor read.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Union

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
FETCHED = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
           "special_tokens_map.json", "generation_config.json"]
_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """HF_HUB_OFFLINE set, or huggingface.co unreachable within two seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES:
        return True
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return False
    except OSError:
        return True


def resolve(name_or_path: Union[str, Path], revision: str | None = None) -> Path:
    """The local directory holding the checkpoint ``name_or_path`` (a directory, or a hub id such as
    ``fla-hub/delta_net-1.3B-100B``). Raises FileNotFoundError / ValueError with what to do instead."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint directory (config.json + *.safetensors)")
    name = str(name_or_path)
    if not HUB_ID.match(name):
        raise FileNotFoundError(f"{name!r} is neither a directory nor a hub id of the form 'owner/name'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError("opening a hub id needs huggingface_hub (pip install huggingface_hub); or pass a local "
                          "directory") from None
    if is_offline():
        try:  # already in the cache: no network needed
            return Path(snapshot_download(name, revision=revision, allow_patterns=FETCHED, local_files_only=True))
        except Exception:
            raise FileNotFoundError(
                f"{name!r} looks like a hub id, but this machine is offline (HF_HUB_OFFLINE or no network) and it is "
                "not in the huggingface_hub cache: pass a local directory holding config.json, *.safetensors and "
                "tokenizer.json instead") from None
    return Path(snapshot_download(name, revision=revision, allow_patterns=FETCHED))
