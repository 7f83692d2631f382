"""Where the app's model comes from: a shipped checkpoint, an upload, a local model directory of another library
(``workbench.from_pretrained``: fla or transformers checkpoints, with their tokenizer), or a fresh config.

Every source returns a :class:`LoadedModel`: the model frozen (eval mode, no gradients), a key naming
its weights (results are cached under it), and a lock. Hooks are state on the model's modules, so every
run on a model shared between browser sessions holds its lock; analyses add hooks only for the length
of one run, so nothing one session does is visible to another.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, config_from_text, load, load_from_bytes
from ..config import ModelConfig
from ..model import HookedFastWeightLM
from ..paths import CHECKPOINTS_DIR, DEFAULT_CHECKPOINT
from ..run_dir import RECIPE_FILE

MAX_PARAMS = 20_000_000  # the app runs on a CPU next to other users: bigger models belong in a notebook
# Uploads: model.safetensors of MAX_PARAMS float32 weights is 80 MB (plus its header); a config.json is a few kB.
# Streamlit refuses bigger files itself (server.maxUploadSize, launch.APP_OPTIONS); check_upload_size says so
# in the sidebar wherever the option is not set (a plain `streamlit run`, AppTest).
MAX_UPLOAD_MB = 100
MAX_UPLOAD_BYTES = {CONFIG_FILE: 1 << 20, WEIGHTS_FILE: MAX_UPLOAD_MB << 20}


@dataclass(frozen=True, eq=False)
class LoadedModel:
    key: str  # identifies the weights: equal keys, equal models
    label: str  # what the sidebar calls it
    model: HookedFastWeightLM  # never mutated: edits return new outputs, never a changed model
    task: Optional[dict] = None  # the task the checkpoint was trained on (recipe.json), if known
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)


def list_checkpoints(root: Union[str, Path] = CHECKPOINTS_DIR) -> list[str]:
    """Names of the checkpoint directories under ``root`` (the bundled default first)."""
    root = Path(root)
    names = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()) if root.is_dir() else []
    default = DEFAULT_CHECKPOINT.name
    return sorted(names, key=lambda n: (n != default, n))


def checkpoint_stamp(name: str, root: Union[str, Path] = CHECKPOINTS_DIR) -> str:
    """Changes whenever the checkpoint's files change (a cache key part)."""
    d = Path(root) / name
    return "-".join(str((d / f).stat().st_mtime_ns) for f in (CONFIG_FILE, WEIGHTS_FILE) if (d / f).is_file())


def load_shipped(name: str, root: Union[str, Path] = CHECKPOINTS_DIR) -> LoadedModel:
    """The checkpoint ``root/name``; raises CheckpointError (a ValueError) with the reason."""
    known = list_checkpoints(root)
    if name not in known:
        raise CheckpointError(f"no checkpoint named {name!r} under {root}; known: {known}")
    directory = Path(root) / name
    model = freeze(load(directory))
    return LoadedModel(f"shipped:{name}:{checkpoint_stamp(name, root)}", name, model, recipe_task(directory))


def recipe_task(directory: Path) -> Optional[dict]:
    """The ``task`` of the directory's recipe.json, or None when there is none or it is unreadable."""
    try:
        task = json.loads((Path(directory) / RECIPE_FILE).read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None
    return task if isinstance(task, dict) else None


def check_upload_size(kind: str, size: int, name: Optional[str] = None) -> None:
    """ValueError unless an uploaded ``kind`` file (config.json or model.safetensors) of ``size`` bytes fits."""
    limit = MAX_UPLOAD_BYTES[kind]
    if size > limit:
        raise ValueError(f"the uploaded {kind}{f' ({name!r})' if name else ''} is {size / 2**20:.1f} MB; the app reads at most "
                         f"{limit / 2**20:g} MB for {kind} (models up to {MAX_PARAMS:,} parameters): open bigger "
                         "checkpoints in a notebook with workbench.load")


def load_uploaded(config: bytes, weights: bytes, label: str = "uploaded checkpoint") -> LoadedModel:
    """A model from the bytes of an uploaded config.json and model.safetensors (same checks as ``load``), parsed
    in memory: nothing is written to disk."""
    check_upload_size(CONFIG_FILE, len(config))
    check_upload_size(WEIGHTS_FILE, len(weights))
    cfg = config_from_text(config)
    check_size(cfg)
    digest = hashlib.sha256(config + b"\0" + weights).hexdigest()[:16]
    return LoadedModel(f"upload:{digest}", label, freeze(load_from_bytes(cfg, weights)))


def directory_stamp(path: Union[str, Path]) -> str:
    """Changes whenever the directory's config.json or weights change (a cache key part); '' if unreadable."""
    d = Path(path).expanduser()
    try:
        files = sorted(f for f in d.iterdir() if f.name == "config.json" or f.suffix == ".safetensors")
        return "-".join(f"{f.name}:{f.stat().st_mtime_ns}" for f in files)
    except OSError:
        return ""


def check_directory(path: str) -> Path:
    """``path`` as a model directory the app can open, or ValueError with what is wrong and what to pass."""
    text = (path or "").strip()
    if not text:
        raise ValueError("type the path of a local model directory (config.json, *.safetensors, tokenizer.json), "
                         "e.g. one written by save_pretrained of fla or transformers")
    d = Path(text).expanduser()
    if not d.exists():
        raise ValueError(f"{d} does not exist: type the path of a local model directory")
    if not d.is_dir():
        raise ValueError(f"{d} is a file, not a directory: type the directory that holds config.json")
    if not (d / "config.json").is_file():
        raise ValueError(f"{d} has no config.json: a model directory holds config.json, *.safetensors and "
                         "tokenizer.json (the app opens fla and transformers checkpoints; see docs/pretrained.md)")
    return d.resolve()


def load_directory(path: str) -> LoadedModel:
    """A model directory of another library (``workbench.from_pretrained``: never a hub id here, never pickle);
    ValueError with the reason (a bad directory, an unsupported architecture or option, too many parameters)."""
    from ..pretrained import from_pretrained

    d = check_directory(path)
    model = from_pretrained(d)
    check_size(model.cfg)
    label = d.name + ("" if model.tokenizer is not None else " (no tokenizer.json: type token ids)")
    return LoadedModel(f"dir:{d}:{directory_stamp(d)}", label, freeze(model))


def build_fresh(config_text: str) -> LoadedModel:
    """A randomly initialised model (seeded by the config's ``seed``) from config JSON; ValueError if bad."""
    try:
        data = json.loads(config_text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the model config is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError("the model config is not valid JSON: nested too deeply") from None
    try:
        cfg = ModelConfig.from_dict(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the model config is not valid: {e}") from None
    check_size(cfg)
    digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:16]
    return LoadedModel(f"fresh:{digest}", f"fresh {cfg.mixer_label} model (seed {cfg.seed})", freeze(HookedFastWeightLM(cfg)))


DEFAULT_FRESH_MIXER = "gated_delta"


def default_fresh_config(mixer: str = DEFAULT_FRESH_MIXER) -> str:
    """The config the 'fresh model' editor starts from: a small 2-layer model of ``mixer`` (any registered
    mixer, with its default options)."""
    cfg = ModelConfig(d_vocab=64, d_model=64, n_layers=2, n_heads=2, d_head=16, d_mlp=128, n_ctx=64,
                      mixer=mixer, chunk_size=16)
    return cfg.to_json()


def estimate_params(cfg: ModelConfig) -> int:
    """The parameter count, computed without allocating the model (it is built on the meta device)."""
    return HookedFastWeightLM.count_params(cfg)


def check_size(cfg: ModelConfig) -> None:
    n = cfg.min_params  # arithmetic first: building even on the meta device loops over n_layers
    if n <= MAX_PARAMS:
        n = estimate_params(cfg)
    if n > MAX_PARAMS:
        raise ValueError(f"this config has {'at least' if n == cfg.min_params else 'about'} {n:,} parameters; the app builds models up to {MAX_PARAMS:,} "
                         "(make d_model, d_vocab, n_ctx, d_mlp or n_layers smaller, or use a notebook)")


def freeze(model: HookedFastWeightLM) -> HookedFastWeightLM:
    """Eval mode and no gradients: the app only reads the model."""
    model.eval()
    model.requires_grad_(False)
    return model
