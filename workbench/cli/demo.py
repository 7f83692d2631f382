"""A terminal tour of a checkpoint: what it exposes and what its fast weights hold.

    python -m workbench.cli.demo [CHECKPOINT_DIR]      (default: the bundled toy-delta checkpoint)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..analysis import aggregate, probe_associations
from ..checkpoint import load
from ..paths import DEFAULT_CHECKPOINT
from ..run_dir import RECIPE_FILE
from ..tasks import task_from_dict


def run_demo(checkpoint: Path = DEFAULT_CHECKPOINT, out=print) -> dict:
    checkpoint = Path(checkpoint)
    model = load(checkpoint)
    cfg = model.cfg
    out(f"checkpoint {checkpoint}: {cfg.n_layers} layers ({cfg.mixer_label}), d_model {cfg.d_model}, {cfg.n_heads} heads "
        f"x {cfg.d_head}, vocab {cfg.d_vocab}, {model.num_params():,} parameters")
    recipe = checkpoint / RECIPE_FILE
    if recipe.is_file():
        task = task_from_dict(json.loads(recipe.read_text())["task"])
    else:
        from ..tasks import MQAR

        task = MQAR(vocab_size=cfg.d_vocab, seq_len=min(cfg.n_ctx, cfg.d_vocab - 1) // 2 * 2,
                    num_kv_pairs=max(1, min(cfg.n_ctx, cfg.d_vocab - 1) // 8))
    batch = task.sample(1, torch.Generator().manual_seed(0))
    tokens = batch.tokens
    logits, cache = model.run_with_cache(tokens)
    mask = batch.loss_mask[0]
    pred = logits[0, :-1].argmax(-1)
    acc = float((pred[mask] == tokens[0, 1:][mask]).float().mean())
    out(f"\none {task.to_dict()['name']} sequence of {tokens.shape[1]} tokens: recall accuracy {acc:.2f} "
        f"on its {int(mask.sum())} queries")
    out(f"\n{len(cache)} hooks cached by run_with_cache (docs/hooks.md):")
    for name, act in cache.items():
        if name.startswith("blocks.0.") or not name.startswith("blocks."):
            out(f"  {name:<36} {tuple(act.shape)}")
    out(f"  … and the same for blocks 1..{cfg.n_layers - 1}")
    summary = {"accuracy": acc, "hooks": len(cache)}
    if not model.fast_weight_layers:
        return summary
    layer = model.fast_weight_layers[-1]
    positions = [0, tokens.shape[1] // 2, tokens.shape[1] - 1]
    W = model.fast_weights(tokens, layer, positions)
    out(f"\nfast weights of layer {layer} (‖W_t‖_F per head) at positions {positions}:")
    for i, p in enumerate(positions):
        out(f"  pos {p:>3}: " + "  ".join(f"{float(W[0, i, h].norm()):7.3f}" for h in range(cfg.n_heads)))
    A = model.effective_attention(tokens, layer)
    z = torch.einsum("bhqk,bkhd->bqhd", A, cache[f"blocks.{layer}.attn.hook_v"])
    ref = cache[f"blocks.{layer}.attn.hook_z"]
    err = float((z - ref).abs().max() / ref.abs().max())
    out(f"\nexact effective attention of layer {layer}: hook_z = A·hook_v to relative error {err:.1e}")
    df = probe_associations(model, tokens, layer, batch.pairs)
    by_lag = aggregate(df, "n_stored")
    out(f"\nassociative-recall probe of layer {layer}: mean write fidelity cos(W_tᵀk_i, v_i) by pairs stored")
    out(by_lag.pivot(index="n_stored", columns="head", values="fidelity").round(3).to_string())
    summary.update(effective_attention_error=err)
    return summary


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run_demo(Path(argv[0]) if argv else DEFAULT_CHECKPOINT)


if __name__ == "__main__":
    main()
