"""Streamlit caches over the app's computations.

Models are ``st.cache_resource`` (one object shared by every session, never mutated); results are
``st.cache_data`` (each caller gets its own copy), keyed by the model's ``key`` and the inputs. Every
computation holds the model's lock: hooks are module state and must not interleave across sessions.
Edited models, and what is measured on them, live in :func:`per_session` stores: no other session sees them.

Every cache is bounded, so that many sessions opening many models cannot grow the server without limit
(tests/test_app_isolation.py opens more models than the caches hold and counts the models left alive): models
by ``max_entries`` (at most :data:`MODELS_KEPT` in all, each under ``sources.MAX_PARAMS`` parameters) and, for
uploads, fresh configs and directories, a ``ttl`` as well; results by ``max_entries``; :func:`per_session` stores
by their ``max_entries`` and by the session's life (Streamlit drops a session's state once its browser tab is
closed, after ``server.disconnectedSessionTTL``). The rest of the app keeps no module-level state: the
``lru_cache`` functions it reaches (the text and canary tasks' corpora in workbench/tasks/) have a ``maxsize``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from operator import attrgetter
from typing import Callable, Hashable, Optional, TypeVar

import pandas as pd
import streamlit as st
import torch

from . import attention_maps, dictionaries, edits, information_flow, lenses, outlier_dashboard, predictions, probing, sources, steering, trajectory
from .sequences import TokenSequence
from .token_streams import TokenStream

_BY_KEY = {sources.LoadedModel: attrgetter("key")}
T = TypeVar("T")


def _locked(lm: sources.LoadedModel, fn, *args, **kwargs):
    with lm.lock:
        return fn(lm.model, *args, **kwargs)


# ---------------------------------------------------------------------- models (shared, immutable)
MODEL_TTL = 3600  # seconds: an upload or a fresh config nobody has asked for in an hour is let go
MODELS_KEPT = 8 + 4 + 4 + 4  # the max_entries below, together


@st.cache_resource(max_entries=8, show_spinner="Loading the checkpoint…")
def shipped_model(name: str, stamp: str) -> sources.LoadedModel:
    """``stamp`` (the files' mtimes) makes a rewritten checkpoint load afresh."""
    return sources.load_shipped(name)


@st.cache_resource(max_entries=4, ttl=MODEL_TTL, show_spinner="Reading the uploaded checkpoint…")
def uploaded_model(digest: str, label: str, _config: bytes, _weights: bytes) -> sources.LoadedModel:
    return sources.load_uploaded(_config, _weights, label)


@st.cache_resource(max_entries=4, ttl=MODEL_TTL, show_spinner="Opening the model directory…")
def directory_model(path: str, stamp: str) -> sources.LoadedModel:
    """``stamp`` (the files' mtimes) makes a rewritten directory load afresh."""
    return sources.load_directory(path)


@st.cache_resource(max_entries=4, ttl=MODEL_TTL, show_spinner="Building the model…")
def fresh_model(config_text: str) -> sources.LoadedModel:
    return sources.build_fresh(config_text)


# ---------------------------------------------------------------------- results (copied per caller)
@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def prediction_table(lm: sources.LoadedModel, seq: TokenSequence) -> pd.DataFrame:
    return _locked(lm, predictions.predictions, list(seq.tokens), seq.scored)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def attention(lm: sources.LoadedModel, seq: TokenSequence, layer: int) -> torch.Tensor:
    return _locked(lm, attention_maps.attention_maps, list(seq.tokens), layer)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def head_scores(lm: sources.LoadedModel, seq: TokenSequence) -> pd.DataFrame:
    return _locked(lm, attention_maps.head_score_table, list(seq.tokens))


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def fast_weight_trajectory(lm: sources.LoadedModel, seq: TokenSequence, layer: int) -> trajectory.FastWeightTrajectory:
    return _locked(lm, trajectory.fast_weight_trajectory, list(seq.tokens), layer)


@st.cache_data(max_entries=256, show_spinner=False, hash_funcs=_BY_KEY)
def probe(lm: sources.LoadedModel, seq: TokenSequence, layer: int, pairs: tuple) -> pd.DataFrame:
    return _locked(lm, probing.probe_sequence, seq, layer, pairs)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def redirect(lm: sources.LoadedModel, seq: TokenSequence, layer: int, position: int, source: int,
             head, strength: float, mode: str) -> edits.EditOutcome:
    return _locked(lm, edits.redirect_recall, list(seq.tokens), layer, position, source, head, strength, mode)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def wipe(lm: sources.LoadedModel, seq: TokenSequence, layer: int, position: int, head, mode: str) -> edits.EditOutcome:
    return _locked(lm, edits.wipe_memory, list(seq.tokens), layer, position, head, mode)


@st.cache_data(max_entries=512, show_spinner=False, hash_funcs=_BY_KEY)
def outlier_batch(lm: sources.LoadedModel, batch: tuple, sites: tuple) -> dict:
    """Outlier statistics of one batch (``[batch, pos]`` as nested tuples) at ``sites``."""
    return _locked(lm, outlier_dashboard.batch_stats, torch.tensor(batch, dtype=torch.long), sites)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def top_residual_neuron(lm: sources.LoadedModel, stream: TokenStream, layer: int, site: str) -> int:
    return _locked(lm, outlier_dashboard.top_residual_neuron, stream.stacked(), layer, site)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def residual_writes(lm: sources.LoadedModel, stream: TokenStream, layer: int, site: str, neuron: int) -> pd.DataFrame:
    return _locked(lm, outlier_dashboard.residual_writes, stream.stacked(), layer, site, neuron)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def state_table(lm: sources.LoadedModel, stream: TokenStream, n_singular: int) -> pd.DataFrame:
    return _locked(lm, outlier_dashboard.state_table, stream, n_singular)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def lens_layers(lm: sources.LoadedModel, seq: TokenSequence, stream, steps: int) -> pd.DataFrame:
    """The logit lens (and, with a ``stream`` and ``steps`` > 0, a tuned lens trained on it) by layer on ``seq``."""
    return _locked(lm, lenses.lens_layers, list(seq.tokens), stream, steps)


# ---------------------------------------------------------------------- per browser session (edits)
def per_session(store: str, key: Hashable, compute: Callable[[], T], max_entries: int = 4) -> T:
    """``compute()`` once per browser session and ``key``, kept in this session's state (the
    ``max_entries`` latest per store): for edited models and their results, which no other session may see."""
    entries = st.session_state.setdefault(f"per_session:{store}", OrderedDict())
    if key in entries:
        entries.move_to_end(key)
        return entries[key]
    value = compute()
    entries[key] = value
    while len(entries) > max_entries:
        entries.popitem(last=False)
    return value


# ---------------------------------------------------------------------- steering (the Steering page)
@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def steering_directions(lm: sources.LoadedModel, layer: int, source: str, task_json: Optional[str], n: int, seed: int,
                        token_a: int, token_b: int) -> steering.Directions:
    task = None if task_json is None else json.loads(task_json)
    return _locked(lm, steering.directions, layer, source, task, n, seed, token_a, token_b)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def steering_table(lm: sources.LoadedModel, seq: TokenSequence, layer: int, _dirs: steering.Directions,
                   dirs_key: tuple, positions: tuple, strength: float, mode: str) -> pd.DataFrame:
    """``dirs_key`` (the arguments of :func:`steering_directions`) stands for ``_dirs`` in the cache key."""
    return _locked(lm, steering.next_token_table, list(seq.tokens), layer, _dirs, list(positions), strength, mode)


@st.cache_data(max_entries=16, show_spinner=False, hash_funcs=_BY_KEY)
def steering_sweep(lm: sources.LoadedModel, seq: TokenSequence, layer: int, _dirs: steering.Directions,
                   dirs_key: tuple, positions: tuple, mode: str, strengths: tuple, token_a: int, token_b: int,
                   heldout: TokenStream) -> pd.DataFrame:
    return _locked(lm, steering.strength_sweep, list(seq.tokens), layer, _dirs, list(positions), mode,
                   list(strengths), token_a, token_b, heldout.stacked(), torch.cat(heldout.masks(), 0))


# ---------------------------------------------------------------------- information flow (patching)
@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def flow_default_query(lm: sources.LoadedModel, seq: TokenSequence) -> int:
    return _locked(lm, information_flow.default_query, seq)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def flow_sweep(lm: sources.LoadedModel, inputs: information_flow.FlowInputs, site: str, direction: str) -> pd.DataFrame:
    return _locked(lm, information_flow.sweep, inputs, site, direction)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def flow_heads(lm: sources.LoadedModel, inputs: information_flow.FlowInputs, site: str, layer: int, position: int,
               direction: str) -> pd.DataFrame:
    return _locked(lm, information_flow.heads, inputs, site, layer, position, direction)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def flow_knockout(lm: sources.LoadedModel, inputs: information_flow.FlowInputs, layer: int, head: Optional[int]
                  ) -> pd.DataFrame:
    return _locked(lm, information_flow.knockout, inputs, layer, head)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_BY_KEY)
def flow_knockout_heads(lm: sources.LoadedModel, inputs: information_flow.FlowInputs, layer: int, source: int,
                        target: int) -> pd.DataFrame:
    return _locked(lm, information_flow.knockout_heads, inputs, layer, source, target)


@st.cache_data(max_entries=16, show_spinner=False, hash_funcs=_BY_KEY)
def flow_attribution(lm: sources.LoadedModel, inputs: information_flow.FlowInputs, site: str, direction: str,
                     real: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _locked(lm, information_flow.attribution, inputs, site, direction, real)


# ---------------------------------------------------------------------- dictionaries (the Dictionaries page)
@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def dictionary_write_layers(lm: sources.LoadedModel) -> tuple[list[int], dict[int, str]]:
    """The layers a WriteSAE applies to, and every other layer's reason (trained dictionaries are per session:
    :func:`workbench.app_support.widgets.dictionary_with_progress`)."""
    return _locked(lm, dictionaries.write_layers)


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_BY_KEY)
def dictionary_hooks(lm: sources.LoadedModel) -> list[str]:
    return _locked(lm, dictionaries.firing_hooks)
