"""Where the bundled files live (importing this module imports nothing heavy)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKPOINTS_DIR = PACKAGE_DIR / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "toy-delta"
