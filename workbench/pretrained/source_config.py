"""A source model's ``config.json``, read so that every key is accounted for.

A converter ``get``s the keys it reproduces (with the values it accepts) and ``ignore``s those that do not
change the forward pass (training-only switches, kernel choices); :meth:`SourceConfig.check_all_read`
then refuses any key left — an option we do not know could change the model, and a silently wrong model
is worse than an error.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

_MISSING = object()

# keys transformers' PretrainedConfig writes for every model; none changes the forward of a causal LM
GENERIC_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype", "_name_or_path", "name_or_path",
    "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "use_cache", "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder", "finetuning_task", "id2label",
    "label2id", "tokenizer_class", "prefix", "problem_type", "task_specific_params", "initializer_range",
    "max_position_embeddings",
})


class SourceConfig:
    def __init__(self, data: dict[str, Any], where: str = "config.json"):
        if not isinstance(data, dict):
            raise ValueError(f"{where} must hold a JSON object")
        self.data, self.where = data, where
        self._read: set[str] = set(GENERIC_KEYS)

    @property
    def model_type(self) -> Optional[str]:
        return self.data.get("model_type")

    def get(self, key: str, default: Any = _MISSING, allowed: Optional[Iterable[Any]] = None) -> Any:
        """The value of ``key`` (``default`` when absent: the source library's default); with ``allowed``, any
        other value raises ValueError naming the option."""
        self._read.add(key)
        if key not in self.data or self.data[key] is None and default is not _MISSING:
            if default is _MISSING:
                raise ValueError(f"{self.where} has no {key!r}")
            value = default
        else:
            value = self.data[key]
        if allowed is not None and value not in tuple(allowed):
            raise ValueError(f"{self.where}: {key} = {value!r} is not supported by workbench (supported: "
                             f"{list(allowed)}); see docs/pretrained.md")
        return value

    def ignore(self, *keys: str) -> None:
        """Keys that do not change the forward pass (the converter says why in a comment)."""
        self._read.update(keys)

    def refuse(self, key: str, reason: str, harmless: Iterable[Any] = (None,)) -> None:
        """``key`` is an option workbench does not reproduce: fine when absent or one of ``harmless``."""
        self._read.add(key)
        value = self.data.get(key)
        if key in self.data and value not in tuple(harmless):
            raise ValueError(f"{self.where}: {key} = {value!r} is not supported by workbench: {reason}")

    def check_all_read(self) -> None:
        left = sorted(set(self.data) - self._read)
        if left:
            raise ValueError(f"{self.where} has options workbench does not know: {left}; they may change the model, "
                             "so it refuses to guess (docs/pretrained.md lists what is supported)")
