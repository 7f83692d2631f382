"""A checkpoint's summary for people: architecture, parameter count, hooks, and the task and final
metrics from its ``recipe.json`` when it has one (``workbench info``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Union

from ..checkpoint import load
from ..run_dir import RECIPE_FILE

_BLOCK = re.compile(r"^blocks\.\d+\.")


def describe_model(model) -> list[str]:
    cfg = model.cfg
    return [
        f"HookedFastWeightLM: {cfg.n_layers} block(s) ({cfg.mixer_label}), d_model {cfg.d_model}, {cfg.n_heads} heads "
        f"x d_head {cfg.d_head}, vocab {cfg.d_vocab}, {model.num_params():,} parameters",
        "config: " + ", ".join(f"{k}={_mixers(v) if k == 'mixer' else v}" for k, v in cfg.to_dict().items()),
    ]


def _mixers(value) -> str:
    """``delta(qk_norm=l2, conv_size=4, …)``, or a list of those for a model with one mixer per layer (``None`` at
    an MLP-only block)."""
    def one(d) -> str:
        if d is None:
            return "None"
        return d["kind"] + "(" + ", ".join(f"{k}={v}" for k, v in d.items() if k != "kind") + ")"

    return "[" + ", ".join(map(one, value)) + "]" if isinstance(value, list) else one(value)


def hook_names(model) -> tuple[list[str], list[str]]:
    """(top-level hook names, per-block hook names with the block index as ``{i}``), in model order."""
    top, block = [], []
    for name in model.hook_dict:
        if _BLOCK.match(name):
            pattern = _BLOCK.sub("blocks.{i}.", name)
            if pattern not in block:
                block.append(pattern)
        else:
            top.append(name)
    return top, block


def describe_recipe(directory: Path) -> list[str]:
    path = Path(directory) / RECIPE_FILE
    if not path.is_file():
        return ["task and training: unknown (no recipe.json next to the checkpoint)"]
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return [f"task and training: {path} is not readable JSON ({e})"]
    if not isinstance(recipe, dict):
        return [f"task and training: {path} does not hold a JSON object"]
    lines = []
    if recipe.get("recipe"):
        lines.append(f"recipe: {recipe['recipe']}")
    if isinstance(recipe.get("task"), dict):
        lines.append("task: " + ", ".join(f"{k}={v}" for k, v in recipe["task"].items()))
    if isinstance(recipe.get("train"), dict):
        keep = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "seed")
        lines.append("training: " + ", ".join(f"{k}={recipe['train'][k]}" for k in keep if k in recipe["train"]))
    final = recipe.get("final")
    if isinstance(final, dict):
        lines.append("final metrics: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in final.items()))
    if recipe.get("command"):
        lines.append(f"made by: {recipe['command']}")
    return lines or [f"task and training: {path} names none of task, train, final"]


def describe_checkpoint(directory: Union[str, Path]) -> str:
    """The summary ``workbench info`` prints; raises CheckpointError for an unreadable checkpoint."""
    model = load(directory)
    top, block = hook_names(model)
    lines = [f"checkpoint {directory}", *describe_model(model), *describe_recipe(Path(directory))]
    lines.append(f"hooks ({len(model.hook_dict)}; shapes and meaning in docs/hooks.md):")
    lines.append("  " + ", ".join(top))
    lines.append(f"  blocks.{{i}} for i in 0..{model.cfg.n_layers - 1}: "
                 + ", ".join(n.removeprefix("blocks.{i}.") for n in block))
    if any(n.endswith("attn.hook_state") for n in block):
        lines.append("  (attn.hook_state fires only inside model.expose_states(...): the fast-weight matrices)")
    return "\n".join(lines)
