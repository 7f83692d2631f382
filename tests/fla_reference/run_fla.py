"""Build a tiny random-weight flash-linear-attention model on the CPU, save it as fla saves it, and record
its outputs: the subprocess half of tests/test_pretrained_fla.py.

    python tests/fla_reference/run_fla.py SPECS.json

SPECS: a list of {"model_type": "delta_net" | "gated_deltanet" | "gla", "config": {...fla config kwargs...}, "seed": 0,
       "out": DIR, "tokens": [[...]], "state_positions": [...]}

Writes DIR/model (``save_pretrained``: config.json + model.safetensors) and DIR/outputs.safetensors with
``logits`` [batch, pos, vocab], ``hidden_{i}`` (fla's ``hidden_states``: the input of block i, the last one
after the final norm) and ``state_{layer}_{pos}`` [batch, head, d_k, d_v] (for each layer with one: the recurrent state in fla's
cache after a forward over tokens[:, :pos + 1], in [K, V] layout).

fla's Triton-only functions are swapped for fla's own references (``fla/ops/*/naive.py``,
``rms_norm_ref``, ``naive_gdn_gate``) or, where fla has none, a few lines of plain torch written from the
fla source named beside them. The stand-in ``triton`` (triton_stub/) only satisfies the imports; any
kernel left unswapped raises.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "triton_stub"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _l2norm(x):  # fla/modules/norm/l2norm.py: x / sqrt(sum x² + 1e-6)
    return x * torch.rsqrt(x.float().pow(2).sum(-1, keepdim=True) + 1e-6).to(x)


def patch_fla() -> None:
    """Swap every Triton-only function an fla DeltaNet / Gated DeltaNet / GLA forward calls."""
    import fla.layers.attn as attn
    import fla.layers.delta_net as dn
    import fla.layers.gated_deltanet as gdn
    import fla.layers.gla as gla_layer
    import fla.modules as fm
    from fla.modules.activations import ACT2FN
    from fla.modules.norm.layernorm import rms_norm_ref
    from fla.modules.rotary.ops import rotary_embedding_ref
    from fla.ops.delta_rule.naive import delta_rule_recurrence
    from fla.ops.gated_delta_rule.gate import naive_gdn_gate
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    from fla.ops.gla.naive import naive_recurrent_gla

    def delta_rule(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None,
                   use_qk_l2norm_in_kernel=False, scale=None, **kwargs):  # fla/ops/delta_rule/chunk.py
        assert cu_seqlens is None and scale is None
        if use_qk_l2norm_in_kernel:
            q, k = _l2norm(q), _l2norm(k)
        o, state = delta_rule_recurrence(*(x.transpose(1, 2) for x in (q, k, v, beta)), initial_state=initial_state,
                                         output_final_state=True)
        return o.transpose(1, 2), (state if output_final_state else None)

    def gated_delta_rule(q, k, v, g, beta, initial_state=None, output_final_state=False, use_qk_l2norm_in_kernel=False,
                         use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False, state_v_first=False,
                         cu_seqlens=None, use_gate_in_kernel=False, A_log=None, dt_bias=None, scale=None, **kwargs):
        # fla/ops/gated_delta_rule/chunk.py: l2norm, beta = (2·)sigmoid, g = -exp(A_log)·softplus(g + dt_bias),
        # value head i uses q/k head i // (HV / H)
        assert cu_seqlens is None and scale is None
        if use_qk_l2norm_in_kernel:
            q, k = _l2norm(q), _l2norm(k)
        if use_beta_sigmoid_in_kernel:
            beta = beta.sigmoid() * (2.0 if allow_neg_eigval else 1.0)
        if use_gate_in_kernel:
            g = naive_gdn_gate(g, A_log, dt_bias)
        group = v.shape[2] // q.shape[2]
        q, k = q.repeat_interleave(group, dim=2), k.repeat_interleave(group, dim=2)
        if initial_state is not None and state_v_first:
            initial_state = initial_state.transpose(-1, -2)
        o, state = naive_recurrent_gated_delta_rule(q, k, v, beta, g, initial_state=initial_state,
                                                    output_final_state=True)
        if state_v_first:
            state = state.transpose(-1, -2)
        return o, (state if output_final_state else None)

    def gla(q, k, v, gk=None, g=None, initial_state=None, output_final_state=False, state_v_first=False,
            cu_seqlens=None, scale=None, **kwargs):  # fla/ops/gla/{chunk,fused_recurrent,fused_chunk}.py
        assert cu_seqlens is None and scale is None
        if initial_state is not None and state_v_first:
            initial_state = initial_state.transpose(-1, -2)
        o, state = naive_recurrent_gla(q, k, v, gk if gk is not None else g, initial_state=initial_state,
                                       output_final_state=True)
        if state_v_first:
            state = state.transpose(-1, -2)
        return o, (state if output_final_state else None)

    gla_layer.chunk_gla = gla_layer.fused_chunk_gla = gla_layer.fused_recurrent_gla = gla
    for name in ("swish", "silu"):  # feature maps and gates: fla's Triton activations as plain torch
        ACT2FN[name] = F.silu
    ACT2FN["sigmoid"] = torch.sigmoid
    dn.chunk_delta_rule = dn.fused_recurrent_delta_rule = delta_rule
    gdn.chunk_gated_delta_rule = gdn.fused_recurrent_gated_delta_rule = gated_delta_rule
    gdn.GatedDeltaNet._use_fused_qkv_conv = lambda self, **kwargs: False

    def short_conv(self, x, residual=None, mask=None, cache=None, output_final_state=False, cu_seqlens=None,
                   **kwargs):  # fla ShortConvolution: depthwise causal nn.Conv1d (padding K-1), then SiLU
        assert residual is None and mask is None and cu_seqlens is None
        t = x.shape[1]
        y = F.conv1d(x.transpose(1, 2), self.weight, self.bias, padding=self.kernel_size[0] - 1,
                     groups=self.hidden_size)[..., :t].transpose(1, 2)
        return (F.silu(y) if self.activation is not None else y), None

    fm.ShortConvolution.forward = short_conv

    def weight(self, x):  # elementwise_affine=False: no weight (rms_norm_ref needs one; ones are the same)
        return self.weight if self.weight is not None else x.new_ones(x.shape[-1])

    def rms_norm(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        return rms_norm_ref(x, weight(self, x), self.bias, residual=residual, eps=self.eps, prenorm=prenorm,
                            upcast=True)

    fm.RMSNorm.forward = rms_norm

    def rms_norm_gated(self, x, g, residual=None, prenorm=False, residual_in_fp32=False):
        # fla/modules/norm/fused_norm_gate.py: RMSNorm(x)·weight ⊙ act(g), act = swish/silu or sigmoid
        assert residual is None and not prenorm
        y = rms_norm_ref(x, weight(self, x), self.bias, eps=self.eps, upcast=True)
        return y * (torch.sigmoid(g) if self.activation == "sigmoid" else F.silu(g))

    fm.FusedRMSNormGated.forward = rms_norm_gated

    def gated_mlp(self, x, **kwargs):  # fla/modules/mlp.py GatedMLP with hidden_act swish: down(silu(gate) ⊙ up)
        assert self.hidden_act == "swish"
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    fm.GatedMLP.forward = gated_mlp

    def flash_attn_func(q, k, v, causal=True, window_size=(-1, -1), softmax_scale=None, **kwargs):
        # flash_attn's flash_attn_func (which fla/layers/attn.py calls): causal softmax attention, query head i on
        # key/value head i // (H / H_kv), scale d^-½, keys j ∈ [i − window_size[0], i] (bottom-right aligned)
        assert causal and window_size[1] in (-1, 0) and softmax_scale is None
        group = q.shape[2] // k.shape[2]
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * q.shape[-1] ** -0.5
        tq, tk = q.shape[1], k.shape[1]
        i = torch.arange(tq)[:, None] + (tk - tq)
        j = torch.arange(tk)[None]
        mask = j > i
        if window_size[0] >= 0:
            mask = mask | (j < i - window_size[0])
        pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v.float()).to(q.dtype)

    attn.flash_attn_func = flash_attn_func

    def rotary(self, q, k, seqlen_offset=0, cu_seqlens=None, max_seqlen=None, **kwargs):
        # fla RotaryEmbedding.forward with its reference rotation instead of the Triton kernel
        assert isinstance(seqlen_offset, int) and seqlen_offset == 0 and cu_seqlens is None
        t = q.shape[1]
        self._update_cos_sin_cache(max(max_seqlen or 0, t), device=q.device, dtype=q.dtype)
        assert self.scale is None
        cos, sin = self._cos_cached[:t], self._sin_cached[:t]
        return (rotary_embedding_ref(q, cos, sin, interleaved=self.interleaved),
                rotary_embedding_ref(k, cos, sin, interleaved=self.interleaved))

    fm.RotaryEmbedding.forward = rotary


def randomise_(model, seed: int) -> None:
    """Every parameter random and O(1)-relevant (fla's init leaves norms at 1 and matrices at std 0.02)."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.empty(p.shape).uniform_(1, 16, generator=gen).log())
            elif name.endswith("dt_bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 - 3)
            elif "norm" in name:
                p.copy_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def main(spec_path: str) -> None:
    torch.set_num_threads(1)
    patch_fla()
    for spec in json.loads(Path(spec_path).read_text()):
        run(spec)


def run(spec: dict) -> None:
    from fla.models import (DeltaNetConfig, DeltaNetForCausalLM, GatedDeltaNetConfig, GatedDeltaNetForCausalLM,
                            GLAConfig, GLAForCausalLM)

    classes = {"delta_net": (DeltaNetConfig, DeltaNetForCausalLM),
               "gated_deltanet": (GatedDeltaNetConfig, GatedDeltaNetForCausalLM),
               "gla": (GLAConfig, GLAForCausalLM)}
    config_cls, model_cls = classes[spec["model_type"]]
    torch.manual_seed(spec.get("seed", 0))
    model = model_cls(config_cls(**spec["config"])).float().eval()
    randomise_(model, spec.get("seed", 0))
    if model.config.tie_word_embeddings:
        model.tie_weights()
    out = Path(spec["out"])
    model.save_pretrained(out / "model")
    tokens = torch.tensor(spec["tokens"])
    results = {}
    with torch.no_grad():
        res = model(tokens, output_hidden_states=True, use_cache=False)
        results["logits"] = res.logits
        for i, h in enumerate(res.hidden_states):
            results[f"hidden_{i}"] = h
        for pos in spec.get("state_positions", []):
            cache = model(tokens[:, : pos + 1], use_cache=True).past_key_values
            for layer in range(model.config.num_hidden_layers):
                state = cache[layer]["recurrent_state"]
                if state is None:  # a softmax-attention layer of a hybrid
                    continue
                if spec["model_type"] in ("gated_deltanet", "gla"):  # fla keeps these layers' states as [V, K]
                    state = state.transpose(-1, -2)
                results[f"state_{layer}_{pos}"] = state
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in results.items()}, str(out / "outputs.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
