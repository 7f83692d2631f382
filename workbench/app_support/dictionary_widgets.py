"""The Dictionaries page's long computations, each once per browser session and settings (:func:`caching.per_session`:
a trained dictionary is this session's, as an edited model is) and behind a progress bar; and the upload picker."""

from __future__ import annotations

import hashlib
from typing import Optional, Union

import pandas as pd
import streamlit as st

from ..analysis.dictionaries import SAEConfig, WriteSAEConfig
from . import caching, dictionaries, sources
from .dictionaries import Dictionary, DictionaryReport, Site
from .token_streams import TokenStream

KEPT = 4  # dictionaries (and their substitution tests) a session keeps


def _bar_callback(bar, what: str, total: int):
    every = max(1, total // 50)  # a few dozen updates, not one per step

    def update(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            bar.progress(done / total, text=f"{what}: {done} of {total}")
    return update


def trained(lm: sources.LoadedModel, stream: TokenStream, site: Site, cfg: Union[WriteSAEConfig, SAEConfig]
            ) -> DictionaryReport:
    """A dictionary trained at ``site`` on ``stream`` (with a progress bar), and its report."""
    def train() -> DictionaryReport:
        bar = st.progress(0.0, text=f"Training a {site.kind} on {stream.label}…")
        with lm.lock:
            report = dictionaries.train(lm.model, stream, site, cfg,
                                        on_step=_bar_callback(bar, f"Training the {site.kind} (steps)", cfg.steps))
        bar.empty()
        return report

    return caching.per_session("dictionaries", (lm.key, stream, site, cfg), train, max_entries=KEPT)


def uploaded() -> Optional[tuple[str, Dictionary]]:
    """The file picker for a saved dictionary: (its digest, the dictionary), or None before a file is given.
    ValueError (shown by ``widgets.errors_shown``) when the file is too big or not a dictionary."""
    upload = st.file_uploader("Dictionary (.safetensors, written by save_dictionary or this page's download)",
                              key="dict_upload")
    if upload is None:
        return None
    dictionaries.check_dictionary_size(upload.size, upload.name)  # before reading it (Streamlit keeps it in memory)
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    module = caching.per_session("dictionary_uploads", digest, lambda: dictionaries.read_dictionary(data, upload.name),
                                 max_entries=KEPT)
    return digest, module


def measured(lm: sources.LoadedModel, stream: TokenStream, site: Site, digest: str, module: Dictionary
             ) -> DictionaryReport:
    """The report of an uploaded dictionary at ``site`` on ``stream``."""
    def measure() -> DictionaryReport:
        with lm.lock, st.spinner(f"Measuring the {site.kind} on {stream.label}…"):
            return dictionaries.evaluate(lm.model, stream, site, module)

    return caching.per_session("dictionary_reports", (lm.key, stream, site, digest), measure, max_entries=KEPT)


def substitution(lm: sources.LoadedModel, report_key: tuple, report: DictionaryReport, stream: TokenStream,
                 n_firings: int, seed: int) -> pd.DataFrame:
    """The substitution test of a WriteSAE on ``stream`` (with a progress bar); ``report_key`` names the report."""
    def run() -> pd.DataFrame:
        bar = st.progress(0.0, text=f"Substitution test: installing atoms at {n_firings} firings…")
        with lm.lock:
            out = dictionaries.substitution(lm.model, report, stream, n_firings, seed,
                                            progress=_bar_callback(bar, "Substitution test (firings)", n_firings))
        bar.empty()
        return out

    return caching.per_session("dictionary_substitution", (report_key, n_firings, seed), run, max_entries=KEPT)


def download_bytes(report_key: tuple, module: Dictionary) -> bytes:
    return caching.per_session("dictionary_files", report_key, lambda: dictionaries.dictionary_bytes(module),
                               max_entries=KEPT)
