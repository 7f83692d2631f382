"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112): one affine translator per layer, then the logit lens,

    logits_ℓ = unembed(ln_final(h_ℓ + A_ℓ h_ℓ + b_ℓ))      ℓ = 0 … n_layers − 1;  layer n_layers: h itself

with A_ℓ, b_ℓ = 0 at the start (the identity: the logit lens exactly). Writing the translator as h + A h + b,
as the authors' code does (tuned_lens/nn/lenses.py, ``TunedLens.transform_hidden``), makes weight decay pull it
towards the identity rather than towards zero. The final norm and unembedding are the model's, never trained;
the lens holds only the translators, so one model serves any number of lenses.

Saved as two files beside each other (nothing pickled): ``tuned_lens.json`` (:class:`TunedLensConfig`) and
``tuned_lens.safetensors`` (``translators.{ℓ}.weight`` ``[d_model, d_model]``, ``translators.{ℓ}.bias``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ... import atomic
from ...dataclass_io import JsonConfig, check_int_fields
from .logit_lens import decode
from .residuals import check_layer, residual_stream

CONFIG_FILE = "tuned_lens.json"
WEIGHTS_FILE = "tuned_lens.safetensors"


@dataclass(frozen=True)
class TunedLensConfig(JsonConfig):
    """The shape of a tuned lens and of the model it decodes: ``n_layers`` translators (layers 0 … n_layers − 1)
    of width ``d_model``, for a model of vocabulary ``d_vocab``; ``bias``: translators with a bias b."""

    d_model: int
    n_layers: int
    d_vocab: int
    bias: bool = True

    def __post_init__(self) -> None:
        check_int_fields(self, ("d_model", "n_layers", "d_vocab"))
        if not isinstance(self.bias, bool):
            raise ValueError(f"TunedLensConfig.bias must be a bool, got {self.bias!r}")

    @classmethod
    def for_model(cls, model, bias: bool = True) -> "TunedLensConfig":
        return cls(d_model=model.cfg.d_model, n_layers=model.cfg.n_layers, d_vocab=model.cfg.d_vocab, bias=bias)


class TunedLens(nn.Module):
    """Translators ``translators[ℓ]`` (``nn.Linear``, zero at the start) for layers 0 … n_layers − 1."""

    def __init__(self, cfg: TunedLensConfig):
        super().__init__()
        if not isinstance(cfg, TunedLensConfig):
            raise TypeError(f"TunedLens needs a TunedLensConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.translators = nn.ModuleList([nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias) for _ in range(cfg.n_layers)])
        with torch.no_grad():
            for t in self.translators:  # the identity: h + 0·h + 0
                t.weight.zero_()
                if t.bias is not None:
                    t.bias.zero_()

    @classmethod
    def for_model(cls, model, bias: bool = True) -> "TunedLens":
        """An identity lens for ``model``, on its device and in its dtype."""
        w = model.unembed.W_U
        return cls(TunedLensConfig.for_model(model, bias)).to(device=w.device, dtype=w.dtype)

    def check_model(self, model) -> None:
        """ValueError unless ``model`` has this lens's d_model, n_layers and d_vocab."""
        mine = TunedLensConfig.for_model(model, self.cfg.bias)
        if mine != self.cfg:
            raise ValueError(f"this tuned lens was made for a model with d_model={self.cfg.d_model}, n_layers="
                             f"{self.cfg.n_layers}, d_vocab={self.cfg.d_vocab}; the model has d_model={mine.d_model}, "
                             f"n_layers={mine.n_layers}, d_vocab={mine.d_vocab}")

    def translate(self, resid: Float[torch.Tensor, "... d_model"], layer: int) -> Float[torch.Tensor, "... d_model"]:
        """``h + A_ℓ h + b_ℓ`` at ``layer`` ℓ < n_layers; ``h`` itself at layer n_layers (the final stream)."""
        n = self.cfg.n_layers
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= n:
            raise ValueError(f"layer must be an int in 0 … {n}, got {layer!r}")
        if not isinstance(resid, torch.Tensor) or resid.dim() < 1 or resid.shape[-1] != self.cfg.d_model:
            shape = tuple(resid.shape) if isinstance(resid, torch.Tensor) else type(resid).__name__
            raise ValueError(f"resid must be a tensor [..., d_model = {self.cfg.d_model}], got {shape}")
        if layer == n:
            return resid
        return resid + self.translators[layer](resid)

    def decode(self, model, resid: Float[torch.Tensor, "... d_model"], layer: int) -> Float[torch.Tensor, "... vocab"]:
        """The tuned lens's logits for residual vector(s) of ``layer``: ``unembed(ln_final(translate(resid)))``."""
        return decode(model, self.translate(resid, check_layer(model, layer)))

    # ------------------------------------------------------------------ files
    def save(self, directory: Union[str, Path]) -> Path:
        """Write ``tuned_lens.json`` and ``tuned_lens.safetensors`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"cannot save a tuned lens into {directory}: it is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic.replacing(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "workbench-tuned-lens", "version": "1"})
        atomic.write_json(directory / CONFIG_FILE, self.cfg.to_dict(), indent=2)
        return directory

    @classmethod
    def load(cls, directory: Union[str, Path], model=None) -> "TunedLens":
        """The lens saved in ``directory``; with ``model``, checked against it and put on its device and dtype.
        Every problem (missing file, bad JSON or config, wrong or missing tensors) raises ValueError."""
        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ValueError(f"no tuned lens in {directory}: {p.name} is missing")
        try:
            cfg = TunedLensConfig.from_dict(json.loads(cfg_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{cfg_path}: {e}") from e
        try:
            tensors = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{w_path}: not a readable safetensors file ({e})") from e
        lens = cls(cfg)
        expected = {k: tuple(v.shape) for k, v in lens.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != got:
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
            raise ValueError(f"{w_path} does not match {cfg_path.name}: missing {missing}, unexpected {extra}, "
                             f"wrong shapes {wrong}")
        if not all(v.is_floating_point() and bool(torch.isfinite(v).all()) for v in tensors.values()):
            raise ValueError(f"{w_path}: the translators must be finite floating-point tensors")
        lens.load_state_dict(tensors)
        if model is not None:
            lens.check_model(model)
            w = model.unembed.W_U
            lens = lens.to(device=w.device, dtype=w.dtype)
        return lens


@torch.no_grad()
def tuned_lens(model, tokens, lens: TunedLens) -> Float[torch.Tensor, "layer batch pos vocab"]:
    """The tuned lens at every layer 0 … n_layers for ``tokens`` ``[batch, pos]`` (layer n_layers = the model's
    logits). With identity translators it equals :func:`~.logit_lens.logit_lens`."""
    if not isinstance(lens, TunedLens):
        raise ValueError(f"lens must be a TunedLens, got {type(lens).__name__}")
    lens.check_model(model)
    resid = residual_stream(model, tokens)
    return torch.stack([lens.decode(model, resid[layer], layer) for layer in range(resid.shape[0])])
