"""HookedFastWeightLM: a decoder-only language model whose every activation is a TransformerLens hook.

    x = embed(tokens) + pos_embed(tokens)          (Outlier Protected block: x = ln_input(x))
    for block in blocks:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))     (see block.py)
    logits = unembed(ln_final(x))

Built on TransformerLens' ``HookedRootModule``, so ``run_with_cache``, ``run_with_hooks``,
``hooks()`` and ``names_filter`` behave as in TransformerLens; ``model.hook_dict`` lists every hook.
``run_with_cache`` returns TransformerLens' ``ActivationCache`` (our subclass), and the weights and helpers its
tools read (``W_Q`` … ``W_U``, ``QK``/``OV``, ``cfg.device``) come from :mod:`workbench.tl_compat`.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from .block import TransformerBlock
from .components.embed import Embed, PosEmbed, Unembed
from .components.norms import make_norm
from .config import ModelConfig
from .mixers import Mixer, NotDefinedForMixer, RecurrenceInputs, StateRequest, check_positions, start_state, states_at
from .mixers.step import CannotStep, ModelStepCache, attached
from .tl_compat import TransformerLensModelAPI

ReturnType = Literal["logits", "loss", "both", None]


class HookedFastWeightLM(TransformerLensModelAPI, HookedRootModule):
    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"HookedFastWeightLM needs a ModelConfig, got {type(cfg).__name__}")
        self.cfg = copy.copy(cfg)  # its own copy (equal to cfg): cfg.device / cfg.dtype say where *this* model is
        self.embed = Embed(cfg.d_vocab, cfg.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional == "learned":
            self.pos_embed = PosEmbed(cfg.n_ctx, cfg.d_model)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.block == "outlier_protected":
            self.ln_input = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)  # the only norm before the blocks
        self.blocks = nn.ModuleList([TransformerBlock(cfg, i) for i in range(cfg.n_layers)])
        self.ln_final = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.unembed = Unembed(cfg.d_model, cfg.d_vocab)
        self.tokenizer = None  # text ↔ ids (encode, decode, token_strings), e.g. a checkpoint's tokenizer.json
        if init:  # init=False leaves the parameters uninitialised (e.g. built on the meta device, or to be loaded)
            self.init_weights()
        self.setup()
        self._record_placement()

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def init_weights(self) -> None:
        """Seeded (cfg.seed) initialisation, independent of the global RNG.

        Matrices ~ N(0, init_std²) (output projections ÷ √(2·n_layers), GPT-2 style); biases 0;
        norm weights 1; conv weights ~ U(±1/√kernel); then each mixer's ``init_extra_`` sets the
        parameters it lists in ``skip_default_init`` (e.g. the Gated DeltaNet decay, as in Mamba).
        """
        gen = torch.Generator().manual_seed(self.cfg.seed)
        std = self.cfg.init_std
        skip = {f"blocks.{i}.attn.{leaf}" for i, b in enumerate(self.blocks) if b.has_mixer
                for leaf in b.attn.skip_default_init}
        for name, p in self.named_parameters():
            if name in skip:
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("w", "w_norm"):
                p.fill_(1.0)
            elif leaf.startswith("b_") or leaf == "b":
                p.zero_()
            elif leaf == "weight" and ".conv_" in name:
                bound = p.shape[-1] ** -0.5
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))
            elif leaf in ("W_O", "W_out"):
                p.copy_(torch.randn(p.shape, generator=gen) * std / (2 * self.cfg.n_layers) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        for block in self.blocks:
            if block.has_mixer:
                block.attn.init_extra_(gen)

    # ------------------------------------------------------------------ input checking
    def check_tokens(self, tokens: Union[torch.Tensor, list], start: int = 0, check_length: bool = True) -> torch.Tensor:
        """Return tokens as a ``[batch, pos]`` long tensor on the model's device, or raise ValueError
        (``start``: the tokens continue a sequence of that many, as with a step cache; ``check_length`` False:
        ids that are only read as text, which may be longer than n_ctx)."""
        if isinstance(tokens, (list, tuple)):
            tokens = torch.tensor(tokens)
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a tensor or a list of ints, got {type(tokens).__name__}")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [batch, pos] or [pos], got {tuple(tokens.shape)}")
        if tokens.shape[1] == 0 or tokens.shape[0] == 0:
            raise ValueError("the token sequence is empty; pass at least one token")
        if check_length and self.cfg.positional == "learned" and start + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"sequence of {start + tokens.shape[1]} tokens is longer than the model's n_ctx = {self.cfg.n_ctx} "
                "(learned positions); truncate it"
            )
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.cfg.d_vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.cfg.d_vocab - 1}]")
        return tokens.long().to(self.unembed.W_U.device)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: Union[torch.Tensor, list],
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        stop_at_layer: Optional[int] = None,
        past_kv_cache: Optional[ModelStepCache] = None,
    ):
        """tokens ``[batch, pos]`` → logits ``[batch, pos, vocab]`` (or the next-token loss).

        return_type: "logits", "loss" (mean, or ``[batch, pos-1]`` with ``loss_per_token``), "both"
        (``(logits, loss)``) or None. ``stop_at_layer=i`` returns the residual stream entering block i.
        ``past_kv_cache`` (from :meth:`init_cache`): ``tokens`` continue the sequence the cache has seen; each
        layer continues from its carried state (fast weights, key/value cache, …) and the cache advances.
        """
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError(f"return_type must be 'logits', 'loss', 'both' or None, got {return_type!r}")
        if past_kv_cache is None:
            return self._forward(self.check_tokens(tokens), return_type, loss_per_token, stop_at_layer)
        tokens = self.check_tokens(tokens, start=past_kv_cache.n_seen)
        if return_type in ("loss", "both"):
            raise ValueError("with past_kv_cache the call sees only the new tokens; ask for return_type='logits'")
        if stop_at_layer is not None:
            raise ValueError("stop_at_layer with past_kv_cache would leave the later layers' caches behind")
        with attached([b.attn if b.has_mixer else None for b in self.blocks], past_kv_cache):
            for layer in past_kv_cache.layers:
                layer.check_batch(tokens.shape[0])
            out = self._forward(tokens, return_type, loss_per_token, None, start=past_kv_cache.n_seen)
        past_kv_cache.advance(tokens.shape[1])
        return out

    def _forward(self, tokens: torch.Tensor, return_type: ReturnType, loss_per_token: bool,
                 stop_at_layer: Optional[int], start: int = 0):
        x = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        if self.cfg.positional == "learned":
            x = x + self.hook_pos_embed(self.pos_embed(tokens, offset=start))
        if self.cfg.block == "outlier_protected":
            x = self.ln_input(x)
        for i, block in enumerate(self.blocks):
            if stop_at_layer is not None and i >= stop_at_layer:
                return x
            x = block(x)
        if stop_at_layer is not None and stop_at_layer >= len(self.blocks):
            return x
        logits = self.unembed(self.ln_final(x))  # [batch, pos, vocab]
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = lm_loss(logits, tokens, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    # ------------------------------------------------------------------ mixers and fast weights
    def mixer(self, layer: int) -> Mixer:
        """The mixer of ``layer`` (negative counts from the end); ValueError for a bad index or an MLP-only block
        (``cfg.block_kinds``), naming the layers that have a mixer."""
        n = self.cfg.n_layers
        if not isinstance(layer, int) or isinstance(layer, bool) or not -n <= layer < n:
            raise ValueError(f"layer must be an int in [0, {n - 1}] (or negative from the end), got {layer!r}")
        block = self.blocks[layer]
        if not block.has_mixer:
            raise NotDefinedForMixer(f"layer {layer % n} is an MLP-only block: it has no mixer; layers "
                                     f"{self.mixer_layers} have one")
        return block.attn

    @property
    def mixer_layers(self) -> list[int]:
        """The layers whose block has a mixer (every layer unless ``cfg.block_kinds`` has MLP-only blocks)."""
        return self.cfg.mixer_layers

    @property
    def mlp_layers(self) -> list[int]:
        """The layers whose block has an MLP."""
        return self.cfg.mlp_layers

    @property
    def fast_weight_layers(self) -> list[int]:
        """The layers whose mixer keeps a fast-weight state."""
        return [i for i, b in enumerate(self.blocks) if b.has_mixer and b.attn.has_fast_weights]

    def fast_weight_mixer(self, layer: int) -> Mixer:
        """The mixer of ``layer``, or a ValueError that says which layers have fast weights."""
        attn = self.mixer(layer)
        if not attn.has_fast_weights:
            have = self.fast_weight_layers
            where = f"layers {have} have them" if have else "this model has no fast-weight layer"
            raise NotDefinedForMixer(f"layer {layer % self.cfg.n_layers} ({attn.label(attn.cfg)}) keeps no "
                                     f"fast-weight matrix; {where}")
        return attn

    def layer_cache(self, tokens, layer: int, hooks: Sequence[str]):
        """Run up to ``layer`` caching the mixer's ``hooks`` (names relative to the mixer); returns a getter
        ``get(name) -> tensor or None``. Active hooks and patches apply."""
        layer = layer % self.cfg.n_layers
        prefix = f"blocks.{layer}.attn."
        names = {prefix + h for h in hooks}
        _, cache = self.run_with_cache(tokens, names_filter=lambda name: name in names, stop_at_layer=layer + 1)
        return lambda name: cache[prefix + name] if prefix + name in cache else None

    @torch.no_grad()
    def recurrence_inputs(self, tokens, layer: int) -> RecurrenceInputs:
        """What the fast-weight recurrence of ``layer`` consumes on ``tokens`` (read from its hooks)."""
        attn = self.fast_weight_mixer(layer)
        return attn.recurrence_inputs(self.layer_cache(self.check_tokens(tokens), layer, attn.input_hooks))

    @contextmanager
    def expose_states(
        self, positions: Union[int, Sequence[int]], mode: str = "readout", layers: Optional[Sequence[int]] = None
    ) -> Iterator["HookedFastWeightLM"]:
        """Inside this context every fast-weight layer fires ``blocks.{i}.attn.hook_state`` with W_t
        ``[batch, n_positions, head, d_k, d_v]`` at ``positions`` (states after the write at t).

        Read them with ``run_with_cache``; edit them with a hook and the edit is applied in ``mode``:
        ``"readout"`` (only the outputs at those positions change) or ``"carry"`` (one position; the
        edited state is carried through the rest of the sequence). Never active outside the context.
        ``layers`` None takes every fast-weight layer; a listed layer without fast weights is an error.
        """
        request = StateRequest(tuple(check_positions(positions, None)), mode)
        mixers = ([self.blocks[i].attn for i in self.fast_weight_layers] if layers is None
                  else [self.fast_weight_mixer(i) for i in layers])
        for attn in mixers:
            if attn.state_request is not None:
                raise RuntimeError("expose_states contexts cannot be nested on the same layer")
        try:
            for attn in mixers:
                attn.state_request = request
            yield self
        finally:
            for attn in mixers:
                attn.state_request = None

    @torch.no_grad()
    def fast_weights(self, tokens, layer: int, positions) -> Float[torch.Tensor, "batch n_positions head d_k d_v"]:
        """The fast-weight matrix of every head of ``layer`` after the write at each of ``positions``.

        float32 with ``o_t = read(W_t, q_t)`` (``W_tᵀ (scale·q_t)`` for the built-in mixers): a key
        indexes a row. For sum-normalised linear attention the last value column is the normaliser z_t.
        Memory: O(pos/C · head · d_k · d_v) for the chunk-start states plus the requested states, never
        the O(pos · head · d_k · d_v) trajectory (C = ``cfg.chunk_size``). Raises ValueError for a layer
        without fast weights, a bad layer or a position outside the sequence.
        """
        tokens = self.check_tokens(tokens)
        positions = check_positions(positions, tokens.shape[1])
        attn = self.fast_weight_mixer(layer)
        return states_at(attn.recurrence, self.recurrence_inputs(tokens, layer), positions, self.cfg.chunk_size,
                         self.cfg.backend)

    def initial_fast_weights(self, tokens, layer: int) -> Float[torch.Tensor, "batch head d_k d_v"]:
        """The fast weights of every head of ``layer`` before the first write, W_{-1} (float32, the layout of
        :meth:`fast_weights`): zeros for a memory that starts empty; the self-referential weight matrix starts
        from its learned slow weights W_0. Raises ValueError for a layer without fast weights."""
        tokens = self.check_tokens(tokens)
        attn = self.fast_weight_mixer(layer)
        return start_state(attn.recurrence, self.recurrence_inputs(tokens[:, :1], layer))

    @torch.no_grad()
    def effective_attention(self, tokens, layer: int) -> Float[torch.Tensor, "batch head pos pos"]:
        """Exact A (query, key) with ``hook_z = A · hook_v``, from the mixer of ``layer``.

        Softmax: the pattern. Linear: tril(QKᵀ) (sum-normalised row-wise). Delta rule:
        tril(Γ⊙QKᵀ)(I + tril(diag(β)Γ⊙KKᵀ, −1))⁻¹ diag(β) — signed, rows need not sum to one (use
        ``A.abs()`` for attention-style scores). O(pos²) memory, O(pos³) time for the delta rule.
        Raises :class:`~workbench.mixers.NotDefinedForMixer` where the output is not linear in the values.
        """
        tokens = self.check_tokens(tokens)
        attn = self.mixer(layer)
        hooks = attn.effective_attention_hooks or attn.input_hooks
        return attn.effective_attention(self.layer_cache(tokens, layer, hooks))

    # ------------------------------------------------------------------ generation (workbench/generation/)
    def init_cache(self) -> ModelStepCache:
        """An empty cache for ``model(tokens, past_kv_cache=cache)``: each call continues the sequence of the
        calls before it, every layer from its carried state. Raises :class:`~workbench.mixers.step.CannotStep`
        naming each layer whose mixer cannot continue from a cache, and why."""
        from .generation import step_unsupported

        unsupported = step_unsupported(self)
        if unsupported:
            raise CannotStep("; ".join(f"layer {i}: {why}" for i, why in unsupported.items()))
        return ModelStepCache(self.cfg.n_layers)

    def generate(self, input="", max_new_tokens: int = 10, **kwargs):
        """Sample a continuation of ``input`` (text or token ids), carrying every layer's state from token to
        token; TransformerLens' arguments (``do_sample``, ``temperature``, ``top_k``, ``top_p``,
        ``stop_at_eos``, ``eos_token_id``, ``use_past_kv_cache``, ``return_type``, ``verbose``, …) plus
        ``seed``/``generator``. See :func:`workbench.generation.generate`."""
        from .generation import generate

        return generate(self, input, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ text (with a tokenizer attached)
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: load a checkpoint directory that has tokenizer.json or a "
                             "recipe.json naming a synthetic task (workbench.load, workbench.from_pretrained) or set "
                             "model.tokenizer; otherwise pass token ids")
        return self.tokenizer

    def to_tokens(self, input: Union[str, Sequence[str]], prepend_bos: Optional[bool] = None,
                  padding_side: Optional[str] = None, move_to_device: bool = True, truncate: bool = True) -> torch.Tensor:
        """A text or a list of texts → ``[batch, pos]`` token ids (TransformerLens' ``to_tokens``). ``prepend_bos``
        (default False: our models train without BOS) puts the tokenizer's BOS first; texts of different lengths
        are padded on ``padding_side`` with its ``pad_token_id`` (an error without one); ``truncate`` keeps the
        first ``n_ctx`` tokens. See :mod:`workbench.text.tokens`."""
        from .text import tokens as text_tokens

        ids = text_tokens.to_tokens(self._need_tokenizer(), input, prepend_bos, padding_side,
                                    self.cfg.n_ctx if truncate else None)
        return self.check_tokens(ids, check_length=False) if move_to_device else ids

    def to_str_tokens(self, input: Union[str, Sequence[str], torch.Tensor, list],
                      prepend_bos: Optional[bool] = None) -> Union[list[str], list[list[str]]]:
        """Each token as its string, for plot axes: of a text (a list of texts: one list each), or of ids
        ``[pos]`` / ``[1, pos]``."""
        from .text import tokens as text_tokens

        tok = self._need_tokenizer()
        if isinstance(input, str):
            return text_tokens.token_strings(tok, text_tokens.encode(tok, input, prepend_bos))
        if isinstance(input, (list, tuple)) and input and all(isinstance(t, str) for t in input):
            return [self.to_str_tokens(t, prepend_bos) for t in input]
        ids = self.check_tokens(input, check_length=False)
        if ids.shape[0] != 1:
            raise ValueError(f"to_str_tokens takes one sequence of ids, got a batch of {ids.shape[0]}")
        return text_tokens.token_strings(tok, ids[0].tolist())

    def to_string(self, tokens: Union[torch.Tensor, list]) -> Union[str, list[str]]:
        """Token ids → text, as TransformerLens: ``[pos]`` (or a list of ints) → one text; ``[batch, pos]`` (or a
        list of lists) → a list of texts."""
        tok = self._need_tokenizer()
        batched = (isinstance(tokens, torch.Tensor) and tokens.dim() == 2) or (
            isinstance(tokens, (list, tuple)) and bool(tokens) and isinstance(tokens[0], (list, tuple, torch.Tensor)))
        texts = [tok.decode(row.tolist()) for row in self.check_tokens(tokens, check_length=False)]
        return texts if batched else texts[0]

    def to_single_token(self, string: str) -> int:
        """The id of ``string`` if it is exactly one token; a ValueError that shows how it splits otherwise."""
        from .text import tokens as text_tokens

        return text_tokens.single_token(self._need_tokenizer(), string)

    # ------------------------------------------------------------------ conveniences
    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def count_params(cfg: ModelConfig) -> int:
        """The parameter count of a model of ``cfg``, built on the meta device (nothing is allocated)."""
        with torch.device("meta"):
            return HookedFastWeightLM(cfg, init=False).num_params()


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, per_token: bool = False, *,
            mask: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy: logits[:, t] predicts tokens[:, t+1]; computed in float32 (or the logits'
    dtype if wider).

    ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the ``[batch, pos-1]`` losses; also
    ``per_token=True``). ``mask``: ``[batch, pos-1]`` bool, the predictions that count (e.g. a task's
    ``loss_mask``): ``"mean"`` is then Σ mask·nll / max(Σ mask, 1) and ``"sum"`` Σ nll[mask].
    """
    if tokens.shape[1] < 2:
        raise ValueError("the loss needs at least two tokens per sequence")
    if per_token:
        reduction = "none"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    logits, target = logits[:, :-1], tokens[:, 1:]
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # [batch, pos-1, vocab]
    if mask is not None:
        if mask.shape != target.shape:
            raise ValueError(f"mask must have the shape of the predictions {tuple(target.shape)}, got "
                             f"{tuple(mask.shape)}")
        if reduction == "none":
            raise ValueError("mask goes with reduction 'mean' or 'sum'; for the losses, index lm_loss(..., "
                             "reduction='none') with it")
    if reduction == "sum":
        selected = (logp.flatten(0, 1), target.flatten()) if mask is None else (logp[mask.bool()], target[mask.bool()])
        return F.nll_loss(*selected, reduction="sum")
    nll = -logp.gather(-1, target[..., None])[..., 0]  # [batch, pos-1]
    if reduction == "none":
        return nll
    if mask is None:
        return nll.mean()
    weight = mask.float()
    return (nll * weight).sum() / weight.sum().clamp_min(1.0)
