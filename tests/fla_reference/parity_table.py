"""Print the largest relative errors of workbench.from_pretrained against fla for each case of
tests/test_pretrained_fla.py (the numbers in docs/pretrained.md and the README).

    OMP_NUM_THREADS=1 .venv/bin/python tests/fla_reference/parity_table.py [OUT_DIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(out: Path) -> None:
    import test_pretrained_fla as t
    from safetensors.torch import load_file

    import workbench

    out.mkdir(parents=True, exist_ok=True)
    tokens = t._tokens()
    specs = [dict(model_type=mt, config={**t.TINY, **kw}, seed=i, out=str(out / name), tokens=tokens.tolist(),
                  state_positions=t.STATE_POSITIONS) for i, (name, (mt, kw)) in enumerate(t.CASES.items())]
    (out / "specs.json").write_text(json.dumps(specs))
    subprocess.run([sys.executable, str(HERE / "run_fla.py"), str(out / "specs.json")], check=True,
                   capture_output=True)
    print("| case | logits | every layer's output | states (3 positions × layers) |")
    print("|---|---|---|---|")
    for name in t.CASES:
        model = workbench.from_pretrained(out / name / "model")
        ref = load_file(str(out / name / "outputs.safetensors"))
        logits, cache = model.run_with_cache(tokens)
        n = model.cfg.n_layers
        layers = [t.rel(cache[f"blocks.{i}.hook_resid_pre"], ref[f"hidden_{i}"]) for i in range(1, n)]
        layers.append(t.rel(cache["ln_final.hook_normalized"], ref[f"hidden_{n}"]))
        states = [t.rel(model.fast_weights(tokens, layer, [p])[:, 0], ref[f"state_{layer}_{p}"])
                  for layer in model.fast_weight_layers for p in t.STATE_POSITIONS]
        print(f"| {name} | {t.rel(logits, ref['logits']):.1e} | {max(layers):.1e} | {max(states):.1e} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
