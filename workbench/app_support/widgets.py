"""The app's shared controls: the sidebar's model and sequence pickers and the per-page pickers.

Bad input never raises out of here: every ValueError (CheckpointError included) becomes an
``st.error`` with its message, and the page stops cleanly while the sidebar stays usable.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from typing import Iterator, Optional

import streamlit as st

from ..mixers import NotDefinedForMixer
from ..mixers import describe as describe_mixer
from ..mixers import names as mixer_names
from . import caching, kfac_editing, sequences, sources, token_streams
from .outlier_dashboard import trace_stream
from .probing import probe_samples
from .sequences import TokenSequence
from .token_streams import TokenStream

MODEL_SOURCES = ("Shipped checkpoint", "Upload a checkpoint", "Local model directory", "Fresh model (random init)")
SEQUENCE_SOURCES = ("Sample from a task", "Type token ids", "Type text")
STREAM_SOURCES = ("Batches of the model's task", "The sidebar's sequence")


_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$])")


def plain(text) -> str:
    """``text`` with Markdown's special characters escaped, so that ``st.error``/``st.info`` show a message as
    written (unescaped, an error's ``MQAR.__init__()`` renders as ``MQAR.init()`` with "init" in bold)."""
    return _MARKDOWN.sub(r"\\\1", str(text))


@contextmanager
def errors_shown() -> Iterator[None]:
    """Show a ValueError raised inside as ``st.error`` and stop this run of the page; a view that does not
    apply to the chosen layer's memory (``NotDefinedForMixer``) is said as ``st.info`` instead."""
    try:
        yield
    except NotDefinedForMixer as e:
        st.info(plain(e))
        st.stop()
    except ValueError as e:
        st.error(plain(e))
        st.stop()


# ---------------------------------------------------------------------- sidebar (runs on every page)
def choose_model() -> sources.LoadedModel:
    """Sidebar: where the model comes from. Raises ValueError with the reason if it cannot be had."""
    source = st.radio("Model", MODEL_SOURCES, key="model_source")
    if source == MODEL_SOURCES[0]:
        names = sources.list_checkpoints()
        if not names:
            raise ValueError(f"no checkpoints under {sources.CHECKPOINTS_DIR}: upload one or build a fresh model")
        name = st.selectbox("Checkpoint", names, key="checkpoint", help="directories under workbench/checkpoints/")
        return caching.shipped_model(name, sources.checkpoint_stamp(name))
    if source == MODEL_SOURCES[1]:
        config = st.file_uploader("config.json", key="upload_config")
        weights = st.file_uploader("model.safetensors", key="upload_weights")
        if config is None or weights is None:
            raise ValueError("upload both files of a checkpoint: config.json and model.safetensors (written by "
                             "workbench.save)")
        for kind, upload in ((sources.CONFIG_FILE, config), (sources.WEIGHTS_FILE, weights)):
            sources.check_upload_size(kind, upload.size, upload.name)  # before reading it (Streamlit keeps it in memory)
        c, w = config.getvalue(), weights.getvalue()
        digest = hashlib.sha256(c + b"\0" + w).hexdigest()
        return caching.uploaded_model(digest, f"upload: {config.name} + {weights.name}", c, w)
    if source == MODEL_SOURCES[2]:
        path = st.text_input("Model directory", key="model_dir",
                             help="a local directory of an fla or transformers checkpoint: config.json, *.safetensors "
                                  "and tokenizer.json (docs/pretrained.md lists the architectures)")
        directory = sources.check_directory(path)
        return caching.directory_model(str(directory), sources.directory_stamp(directory))
    kinds = mixer_names()
    kind = st.selectbox("Mixer", kinds, key="fresh_mixer", format_func=describe_mixer,
                        index=kinds.index(sources.DEFAULT_FRESH_MIXER) if sources.DEFAULT_FRESH_MIXER in kinds else 0,
                        help="every registered mixer (workbench.mixers.names()); its options go in the JSON below")
    if st.session_state.get("fresh_config_mixer") != kind:  # a new mixer choice starts the editor on its defaults
        st.session_state["fresh_config_mixer"] = kind
        st.session_state["fresh_config"] = sources.default_fresh_config(kind)
    text = st.text_area("Model config (JSON)", height=260, key="fresh_config",
                        help="any ModelConfig fields; `mixer` is one mixer config or one per layer; weights are "
                             "random, seeded by `seed`")
    return caching.fresh_model(text)


def choose_sequence(lm: sources.LoadedModel) -> TokenSequence:
    """Sidebar: the sequence to look at. Raises ValueError with the reason if it is not usable."""
    cfg = lm.model.cfg
    # a tokenizer of free text (not a synthetic task's vocabulary of token names) starts the sidebar on typed text
    has_tokenizer = getattr(lm.model.tokenizer, "encodes_free_text", lm.model.tokenizer is not None)
    options = SEQUENCE_SOURCES if has_tokenizer else SEQUENCE_SOURCES[:2]
    # a model with a tokenizer starts on typed text (its own widget key, so that choice is not carried over from
    # a model without one)
    kind = st.radio("Sequence", options, key="sequence_source_text" if has_tokenizer else "sequence_source",
                    index=2 if has_tokenizer else 0)
    if kind == SEQUENCE_SOURCES[2]:
        text = st.text_area("Text", "The Eiffel Tower is in the city of", height=120, key=f"text-{lm.key}",
                            help="encoded with the model's tokenizer; the axes show its tokens")
        return sequences.text_sequence(lm.model, text)
    try:
        task = sequences.default_task(cfg, lm.task)
    except ValueError:
        task = None
    if kind == SEQUENCE_SOURCES[0]:
        if task is None:
            raise ValueError(f"no synthetic task fits this model (vocabulary {cfg.d_vocab}); type a sequence")
        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="seed")
        with st.expander("Task settings"):
            text = st.text_area("Task (JSON)", json.dumps(task, indent=1), height=200, key=f"task-{lm.key}",
                                help="mqar or associative_recall, with the arguments of workbench.tasks")
        return sequences.task_sequence(cfg, sequences.parse_task(text), int(seed))
    example = " ".join(map(str, sequences.task_sequence(cfg, task, 0).tokens)) if task else "1 2 3 4"
    text = st.text_area("Token ids", example, height=120, key=f"typed-{lm.key}",
                        help=f"integers in [0, {cfg.d_vocab - 1}], separated by spaces or commas")
    return sequences.typed_sequence(lm.model, text)


def sidebar() -> None:
    """Render the pickers and remember the choice (or the reason there is none) for the pages."""
    st.session_state["selection"] = st.session_state["selection_error"] = None
    try:
        lm = choose_model()
        st.caption(f"{lm.label}: {lm.model.cfg.n_layers} layers ({lm.model.cfg.mixer_label}), {lm.model.num_params():,} parameters")
        seq = choose_sequence(lm)
        st.caption(f"{seq.source}: {len(seq)} tokens")
    except ValueError as e:
        st.error(plain(e))
        st.session_state["selection_error"] = str(e)
        return
    st.session_state["selection"] = (lm, seq)


# ---------------------------------------------------------------------- on the pages
def current() -> tuple[sources.LoadedModel, TokenSequence]:
    """The sidebar's model and sequence; stops the page with the sidebar's message when there are none."""
    selection = st.session_state.get("selection")
    if selection is None:
        problem = st.session_state.get("selection_error") or "no model or sequence chosen"
        st.warning(f"The sidebar has no usable model and sequence yet: {plain(problem)}")
        st.stop()
    return selection


def choose_layer(lm: sources.LoadedModel, fast_weights_only: bool = False, default: Optional[int] = None) -> int:
    """A layer of the model (only those with a fast-weight state if ``fast_weights_only``); opens on
    ``default`` (else the first)."""
    cfg = lm.model.cfg
    layers = lm.model.fast_weight_layers if fast_weights_only else lm.model.mixer_layers  # not the MLP-only blocks
    if not layers:
        st.info(f"This model's layers ({cfg.mixer_label}) keep no fast-weight matrix; pick a model with a "
                f"fast-weight mixer (one of {mixer_names(fast_weights=True)}).")
        st.stop()
    label = lambda i: f"layer {i}: {lm.model.mixer(i).label(lm.model.mixer(i).cfg)}"  # noqa: E731
    index = layers.index(default) if default in layers else 0
    return st.selectbox("Layer", layers, format_func=label, key="layer", index=index)


def key_value_reason(lm: sources.LoadedModel, layer: int) -> Optional[str]:
    """None if the layer's state is a [d_k, d_v] matrix read as Wᵀk (probes and association edits apply),
    else the mixer's reason why not."""
    return lm.model.mixer(layer).key_value_state()


def choose_head(lm: sources.LoadedModel, allow_all: bool = False, label: str = "Head") -> Optional[int]:
    options = ([None] if allow_all else []) + list(range(lm.model.cfg.n_heads))
    return st.selectbox(label, options, format_func=lambda h: "all heads" if h is None else f"head {h}", key="head")


def choose_position(seq: TokenSequence, label: str, default: int, key: str) -> int:
    """A position of ``seq``, listed with its token (and ★ where the task scores the prediction)."""
    labels = sequences.token_labels(seq)
    fmt = lambda t: f"{t}: {labels[t]!r}" if seq.labels else f"{t}: token {seq.tokens[t]}" + (" ★" if t in seq.scored else "")  # noqa: E731
    return st.selectbox(label, list(range(len(seq))), index=default, format_func=fmt, key=f"{key}-{len(seq)}")


def token_labels(seq: TokenSequence) -> list[str]:
    return sequences.token_labels(seq)


def probe_samples_with_progress(lm: sources.LoadedModel, seq: TokenSequence, n: int, layer: int,
                                pairs_of=lambda s: s.pairs, what: str = "pairs"):
    """The probe on ``n`` samples of the sequence's task (seeds seed … seed+n−1), with a progress bar;
    ``pairs_of(sample)`` gives the pairs probed in each sample."""
    bar = st.progress(0.0, text=f"Probing the {what} of {n} sequences…")
    df = probe_samples(lm.model, json.loads(seq.task_json), range(seq.seed, seq.seed + n), layer,
                       progress=lambda i, total: bar.progress(i / total, text=f"Probed the {what} of {i} of {total} "
                                                                               "sequences"),
                       probe=lambda s, lay: caching.probe(lm, s, lay, pairs_of(s)))
    bar.empty()
    return df


def choose_stream(lm: sources.LoadedModel, seq: TokenSequence, key: str, batches: int = 4,
                  batch_size: int = 8) -> TokenStream:
    """The tokens an analysis averages over: seeded batches of the task (the sidebar's, else the model's)
    or the sidebar's one sequence. Raises ValueError (shown by ``errors_shown``) for bad sizes."""
    task = token_streams.stream_task(lm.model.cfg, seq, lm.task)
    kind = st.radio("Tokens", STREAM_SOURCES if task is not None else STREAM_SOURCES[1:], horizontal=True,
                    key=f"{key}_source")
    if kind == STREAM_SOURCES[1]:
        return token_streams.sequence_stream(seq)
    cols = st.columns(3)
    n = cols[0].number_input("Batches", min_value=1, max_value=64, value=batches, key=f"{key}_batches")
    size = cols[1].number_input("Sequences per batch", min_value=1, max_value=256, key=f"{key}_batch_size",
                                value=token_streams.fitting_batch_size(lm.model.cfg, task, batches, batch_size))
    seed = cols[2].number_input("Seed of the batches", min_value=0, max_value=2**31 - 1, value=0, key=f"{key}_seed")
    stream = token_streams.task_stream(lm.model.cfg, task, int(n), int(size), int(seed))
    st.caption(f"{stream.label}; task {json.dumps(task)}")
    return stream


def outlier_stats_with_progress(lm: sources.LoadedModel, stream: TokenStream, sites: tuple) -> dict:
    """Outlier statistics of every batch of ``stream`` (each cached), merged, with a progress bar."""
    n = len(stream.batches)
    bar = st.progress(0.0, text=f"Tracing {n} batch{'es' if n > 1 else ''}…")
    stats = trace_stream(lm.model, stream, sites,
                         progress=lambda i, total: bar.progress(i / total, text=f"Traced {i} of {total} batches"),
                         trace_batch=lambda t: caching.outlier_batch(lm, tuple(map(tuple, t.tolist())), sites))
    bar.empty()
    return stats


def kfac_factors_with_progress(lm: sources.LoadedModel, stream: TokenStream, sites: tuple, labels: str,
                               seed: int) -> dict:
    """K-FAC factors of ``sites`` over ``stream``, collected once per session (with a progress bar)."""
    def collect() -> dict:
        n = len(stream.batches)
        bar = st.progress(0.0, text=f"Collecting K-FAC factors of {len(sites)} layers over {stream.n_tokens:,} "
                                    "tokens…")
        with lm.lock:
            factors = kfac_editing.collect_factors(
                lm.model, stream.tensors(), sites, labels, seed,
                progress=lambda i, total: bar.progress(i / total, text=f"K-FAC: {i} of {n} batches"))
        bar.empty()
        return factors

    return caching.per_session("kfac_factors", (lm.key, stream, sites, labels, seed), collect)


def edit_comparison_with_progress(lm: sources.LoadedModel, factors_key: tuple, factors: dict, rho: float,
                                  recite, held_out: TokenStream, prefix_len: int, suffix_len: int, budget: str):
    """:func:`kfac_editing.compare_edits`, once per session and settings (with a progress bar); returns
    ``(comparison, edited models)``. The edited models exist only in this session."""
    def compare():
        bar = st.progress(0.0, text="Editing the weights…")
        with lm.lock:
            out = kfac_editing.compare_edits(
                lm.model, factors, rho, recite, held_out, prefix_len, suffix_len, budget,
                progress=lambda i, total, what: bar.progress(i / total, text=f"{what} ({i} of {total})"))
        bar.empty()
        return out

    key = (lm.key, factors_key, rho, recite, held_out, prefix_len, suffix_len, budget)
    return caching.per_session("kfac_edits", key, compare)
