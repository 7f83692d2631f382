"""A model as the two files of a checkpoint, for a download button (and the sidebar's upload picker)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, save


def checkpoint_files(model) -> dict[str, bytes]:
    """``{"config.json": …, "model.safetensors": …}`` exactly as :func:`workbench.save` writes them."""
    with tempfile.TemporaryDirectory() as tmp:
        save(model, tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in (CONFIG_FILE, WEIGHTS_FILE)}
