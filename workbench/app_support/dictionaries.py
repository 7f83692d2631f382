"""What the Dictionaries page shows: a sparse dictionary trained here (or uploaded) on one site of the model, and
how it reads the model.

Two kinds (workbench.analysis.dictionaries): a WriteSAE, rank-one atoms for one head's state writes
k_t u_tᵀ in a layer whose memory takes one such write per position (the mixer says which:
:func:`~workbench.analysis.dictionaries.write_mixer`), and an ordinary SAE on the activations of any hook.
Both are trained on the rows of a :class:`~.token_streams.TokenStream` (one write, or one activation vector,
per position), then measured on the same rows: reconstruction, atom usage, and each atom's top positions.
A WriteSAE also gets the substitution test (an atom's write installed in place of the native write, against
removing it). The model is never changed: the substitution runs are contexts.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import pandas as pd
import torch

from ..analysis.dictionaries import (SAEConfig, SparseAutoencoder, WriteSAE, WriteSAEConfig, cache_activations,
                                     code_usage, collect_writes, load_dictionary, reconstruction_metrics,
                                     save_dictionary, state_writes, substitution_test, train_sae, train_write_sae,
                                     win_rate, write_mixer, write_reconstruction_metrics)
from ..analysis.dictionaries.substitution import counted_predictions, eligible_positions, find_firings
from ..mixers import NotDefinedForMixer
from .sources import MAX_UPLOAD_MB
from .token_streams import TokenStream

KINDS = ("WriteSAE", "SAE")
KIND_HELP = {"WriteSAE": "WriteSAE: rank-one atoms for one head's state writes k uᵀ",
             "SAE": "SAE: an ordinary sparse autoencoder on the activations of a hook"}
MIN_ROWS = 64  # fewer writes (or vectors) than this do not make a dictionary worth looking at
MAX_ATOMS = 1024
MAX_STEPS = 2000
BATCH_SIZE = 256
MAX_FIRINGS = 256
TOP_ROWS = 16  # top positions kept per atom
CONTEXT = 4  # tokens shown either side of a top position
MAX_DICTIONARY_BYTES = MAX_UPLOAD_MB << 20
Dictionary = Union[WriteSAE, SparseAutoencoder]


@dataclass(frozen=True)
class Site:
    """Where a dictionary reads: a head's writes in a layer (WriteSAE), or a hook's activations (SAE)."""

    kind: str
    layer: Optional[int] = None
    head: Optional[int] = None
    hook: Optional[str] = None

    @property
    def label(self) -> str:
        return f"layer {self.layer}, head {self.head} writes" if self.kind == "WriteSAE" else f"{self.hook}"

    @property
    def file_name(self) -> str:
        where = f"layer{self.layer}-head{self.head}" if self.kind == "WriteSAE" else str(self.hook).replace(".", "-")
        return f"{'write_sae' if self.kind == 'WriteSAE' else 'sae'}-{where}.safetensors"


def kind_of(module: Dictionary) -> str:
    return "WriteSAE" if isinstance(module, WriteSAE) else "SAE"


# ------------------------------------------------------------------------------------------- what the model offers
def write_layers(model) -> tuple[list[int], dict[int, str]]:
    """The layers whose memory takes one rank-one write per position (WriteSAE applies), and for every other
    layer with a mixer the mixer's reason why not."""
    ok, why = [], {}
    for layer in model.mixer_layers:
        try:
            write_mixer(model, layer)
            ok.append(layer)
        except NotDefinedForMixer as e:
            why[layer] = str(e)
    return ok, why


def no_writes_message(model, why: dict[int, str]) -> str:
    """Why no layer of ``model`` has writes for a WriteSAE (each mixer's own reason), and what to do instead."""
    reasons = " ".join(f"Layer {layer}: {r.removeprefix(f'layer {layer} ')}." for layer, r in why.items()) \
        or "The model has no mixer layer."
    return (f"WriteSAE does not apply to this model ({model.cfg.mixer_label}): no layer keeps a [d_k, d_v] fast-weight "
            f"state written once per position as k uᵀ. {reasons} Pick a model whose memory is written that way (the "
            "shipped toy-delta checkpoint, or a fresh delta-rule model), or choose SAE to train an ordinary sparse "
            "autoencoder on a hook of this one.")


@torch.no_grad()
def firing_hooks(model) -> list[str]:
    """The hooks that fire in a plain forward pass (an SAE reads them), in the model's order."""
    _, cache = model.run_with_cache(torch.zeros(1, 2, dtype=torch.long))
    return list(cache.keys())


def default_hook(hooks: list[str]) -> str:
    """The last layer's residual stream after the block, if the model has one, else the first hook."""
    resid = [h for h in hooks if h.endswith("hook_resid_post")]
    return resid[-1] if resid else hooks[0]


# ----------------------------------------------------------------------------------------------- settings and data
def dictionary_config(kind: str, n_atoms: int, sparsity: str, k: int, l1: float, steps: int, seed: int
                      ) -> Union[WriteSAEConfig, SAEConfig]:
    """The training config of a ``kind`` dictionary (ValueError naming the field and its range when it is bad)."""
    if kind not in KINDS:
        raise ValueError(f"the dictionary kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(n_atoms, int) or not 1 <= n_atoms <= MAX_ATOMS:
        raise ValueError(f"the dictionary size must be an integer in 1 … {MAX_ATOMS} in the app, got {n_atoms!r}")
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"the training steps must be an integer in 1 … {MAX_STEPS} in the app (train longer in a "
                         f"notebook with workbench.analysis.dictionaries), got {steps!r}")
    if kind == "WriteSAE":
        return WriteSAEConfig(n_atoms=n_atoms, sparsity=sparsity, k=k, l1=l1, steps=steps, batch_size=BATCH_SIZE,
                              seed=seed, resample_every=max(50, steps // 4))
    return SAEConfig(n_latents=n_atoms, sparsity=sparsity, k=k, l1=l1, steps=steps, batch_size=BATCH_SIZE, seed=seed,
                     resample_every=max(50, steps // 4))


def collect(model, stream: TokenStream, site: Site) -> tuple[torch.Tensor, ...]:
    """The rows a dictionary at ``site`` reads over ``stream``, one per (sequence, position) in the stream's order:
    (keys ``[n, d_k]``, values ``[n, d_v]``) for a WriteSAE, (activations ``[n, d_in]``,) for an SAE. ValueError
    when the stream gives fewer than :data:`MIN_ROWS`."""
    if site.kind == "WriteSAE":
        rows = collect_writes(model, stream.tensors(), site.layer, site.head)
    else:
        rows = (cache_activations(model, stream.tensors(), site.hook),)
    n = rows[0].shape[0]
    if n < MIN_ROWS:
        raise ValueError(f"too few tokens: {stream.label} gives {n} positions, and a dictionary needs at least "
                         f"{MIN_ROWS} to train or measure on; take batches of the model's task (or more of them)")
    return rows


def check_fits(module: Dictionary, site: Site, rows: tuple[torch.Tensor, ...]) -> None:
    """ValueError when ``module`` is not the kind of dictionary ``site`` calls for, or reads rows of another shape."""
    if kind_of(module) != site.kind:
        raise ValueError(f"the dictionary is a {kind_of(module)}, but the page is set up for a {site.kind}")
    if site.kind == "WriteSAE":
        have = (module.d_k, module.d_v)
        want = (rows[0].shape[1], rows[1].shape[1])
        if have != want:
            raise ValueError(f"the WriteSAE reads writes [d_k, d_v] = {list(have)}, but {site.label} are {list(want)}: "
                             "choose the layer it was trained on, or another model")
    elif module.d_in != rows[0].shape[1]:
        raise ValueError(f"the SAE reads vectors of {module.d_in} numbers, but {site.hook} gives {rows[0].shape[1]}: "
                         "choose the hook it was trained on")


# ---------------------------------------------------------------------------------------------- train and measure
@dataclass(frozen=True)
class DictionaryReport:
    """A dictionary and what it does on the rows of one stream: ``history`` (step, mse, l0; None when uploaded),
    ``metrics`` (reconstruction, l0, dead), ``usage`` (per atom: fires, frequency, mean_code), and the rows where
    each atom's code is largest (``top_rows``/``top_codes`` ``[TOP_ROWS, n_atoms]``, rows in the stream's order)."""

    module: Dictionary
    site: Site
    history: Optional[pd.DataFrame]
    metrics: dict
    usage: pd.DataFrame
    top_rows: torch.Tensor
    top_codes: torch.Tensor


def train(model, stream: TokenStream, site: Site, cfg: Union[WriteSAEConfig, SAEConfig],
          on_step: Optional[Callable[[int, int], None]] = None) -> DictionaryReport:
    """A dictionary of ``cfg`` trained at ``site`` on ``stream``, measured on the same rows."""
    rows = collect(model, stream, site)
    if site.kind == "WriteSAE":
        module, history = train_write_sae(*rows, cfg, progress=False, on_step=on_step)
    else:
        module, history = train_sae(rows[0], cfg, progress=False, on_step=on_step)
    return measure(module, site, rows, history)


def measure(module: Dictionary, site: Site, rows: tuple[torch.Tensor, ...],
            history: Optional[pd.DataFrame] = None) -> DictionaryReport:
    """The report of ``module`` on ``rows`` (from :func:`collect`)."""
    check_fits(module, site, rows)
    with torch.no_grad():
        if site.kind == "WriteSAE":
            metrics = write_reconstruction_metrics(module, *rows)
            codes = module.encode(*(r.to(module.b_dec) for r in rows))
        else:
            metrics = reconstruction_metrics(module, rows[0])
            codes = module.encode(rows[0].to(module.b_dec))
        top = codes.topk(min(TOP_ROWS, codes.shape[0]), dim=0)
    return DictionaryReport(module, site, history, metrics, code_usage(codes), top.indices, top.values)


def evaluate(model, stream: TokenStream, site: Site, module: Dictionary) -> DictionaryReport:
    """The report of a given (uploaded) dictionary at ``site`` on ``stream``."""
    return measure(module, site, collect(model, stream, site))


def token_strings(model, tokens: torch.Tensor) -> list[str]:
    """Each token of ``tokens [pos]`` as the model's tokenizer writes it, or its id."""
    if getattr(model, "tokenizer", None) is not None:
        try:
            return [str(s) for s in model.to_str_tokens(tokens)]
        except (AttributeError, TypeError, ValueError, KeyError):
            pass
    return [str(int(t)) for t in tokens]


def top_positions(model, report: DictionaryReport, stream: TokenStream, atom: int) -> pd.DataFrame:
    """The positions where ``atom``'s code is largest (non-zero only): sequence, position, token, code and the
    tokens around it, the position's token in brackets."""
    n_atoms = report.top_rows.shape[1]
    if not isinstance(atom, int) or not 0 <= atom < n_atoms:
        raise ValueError(f"the atom must be an integer in [0, {n_atoms - 1}], got {atom!r}")
    tokens = stream.stacked()
    seq_len = tokens.shape[1]
    out = []
    for row, code in zip(report.top_rows[:, atom].tolist(), report.top_codes[:, atom].tolist()):
        if code <= 0:
            break
        s, t = divmod(int(row), seq_len)
        lo, hi = max(0, t - CONTEXT), min(seq_len, t + CONTEXT + 1)
        words = token_strings(model, tokens[s, lo:hi])
        words[t - lo] = f"[{words[t - lo]}]"
        out.append({"sequence": s, "position": t, "token": token_strings(model, tokens[s, t:t + 1])[0],
                    "code": code, "context": ("… " if lo else "") + " ".join(words) + (" …" if hi < seq_len else "")})
    return pd.DataFrame(out, columns=["sequence", "position", "token", "code", "context"])


# --------------------------------------------------------------------------------------------------- substitution
def substitution(model, report: DictionaryReport, stream: TokenStream, n_firings: int, seed: int = 0,
                 progress: Optional[Callable[[int, int], None]] = None, chunk: int = 32) -> pd.DataFrame:
    """:func:`~workbench.analysis.dictionaries.substitution_test` of a WriteSAE on ``stream`` (over the predictions
    its task scores): at most ``n_firings`` firings drawn (seeded) from the eligible positions, run ``chunk`` at a
    time with ``progress(done, total)`` after each."""
    site, sae = report.site, report.module
    if site.kind != "WriteSAE":
        raise ValueError("the substitution test installs an atom's write in the state: it needs a WriteSAE")
    if not isinstance(n_firings, int) or not 1 <= n_firings <= MAX_FIRINGS:
        raise ValueError(f"the number of firings must be an integer in 1 … {MAX_FIRINGS}, got {n_firings!r}")
    tokens = stream.stacked()
    mask = torch.cat(stream.masks(), 0)
    keys, values = (x[:, :, site.head] for x in state_writes(model, tokens, site.layer))
    allowed = eligible_positions(counted_predictions(tokens, mask))
    with torch.no_grad():
        firings = find_firings(sae, keys, values, allowed, n_firings, seed)
    if firings.empty:
        raise ValueError("no firings: the dictionary's codes are zero at every position the task scores a later "
                         "prediction of; train it longer or with more atoms")
    parts = []
    for start in range(0, len(firings), chunk):
        part = firings.iloc[start:start + chunk].reset_index(drop=True)
        parts.append(substitution_test(model, sae, tokens, site.layer, site.head, loss_mask=mask, firings=part,
                                       seed=seed + start, progress=False))
        if progress is not None:
            progress(min(start + chunk, len(firings)), len(firings))
    return pd.concat(parts, ignore_index=True)


def win_rates(results: pd.DataFrame) -> pd.DataFrame:
    """How often the atom's install beats each baseline on each metric, with Wilson 95 % intervals."""
    return pd.DataFrame([win_rate(results, b, m) for m in ("loss", "kl") for b in ("ablate", "random")])


# -------------------------------------------------------------------------------------------------- files
def dictionary_bytes(module: Dictionary) -> bytes:
    """``module`` as the .safetensors file :func:`~workbench.analysis.dictionaries.save_dictionary` writes."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_dictionary(module, Path(tmp) / "dictionary.safetensors").read_bytes()


def check_dictionary_size(size: int, name: Optional[str] = None) -> None:
    if size > MAX_DICTIONARY_BYTES:
        raise ValueError(f"the uploaded dictionary{f' ({name!r})' if name else ''} is {size / 2**20:.1f} MB; the app "
                         f"reads at most {MAX_DICTIONARY_BYTES / 2**20:g} MB: open bigger dictionaries in a notebook "
                         "with workbench.analysis.dictionaries.load_dictionary")


def read_dictionary(data: bytes, name: str = "the upload") -> Dictionary:
    """The dictionary in the bytes of a file written by ``save_dictionary``; ValueError saying what is wrong."""
    check_dictionary_size(len(data), name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dictionary.safetensors"
        path.write_bytes(data)
        try:
            module = load_dictionary(path)
        except ValueError as e:
            raise ValueError(f"{name!r} is not a dictionary this app can read: {str(e).replace(str(path), 'it')}"
                             ) from None
        except Exception as e:  # a file that is not safetensors, or whose tensors do not fit its own metadata
            raise ValueError(f"{name!r} is not a dictionary saved by workbench.analysis.dictionaries.save_dictionary "
                             f"(a .safetensors file with the dictionary's kind and config in its metadata): "
                             f"{type(e).__name__}: {e}") from None
    if not all(bool(torch.isfinite(p.detach()).all()) for p in module.parameters()):
        raise ValueError(f"{name!r} holds weights that are not finite numbers (NaN or inf)")
    return module
