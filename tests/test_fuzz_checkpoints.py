"""Fuzzed checkpoints and uploads: every damaged file is refused with a clear, documented error.

Inputs are derived deterministically (random.Random(0)) from small saved models: truncated and byte-flipped
weights, oversized and malformed safetensors headers, wrong dtypes, NaN/Inf weights, missing, extra and
mis-shaped tensors, path-like tensor names, configs with absurd sizes, bad JSON, broken tokenizer files. Each goes
through every way a checkpoint is read: ``load`` (a directory), ``load_from_bytes`` and the app's
``load_uploaded`` and ``build_fresh``. Allowed outcomes: a loaded model whose weights are finite (a flipped byte
inside the tensor data is indistinguishable from other weights: the format has no checksum), or
``CheckpointError`` (``load``, ``load_from_bytes``) / ``ValueError`` (the app). Anything else — another exception,
more than a few seconds, a large allocation — is a failure. The test prints the count tried and refused.
"""

from __future__ import annotations

import json
import random
import resource
import struct
import time
from pathlib import Path

import torch
from safetensors.torch import save as save_bytes

from workbench import save
from workbench.app_support import sources
from workbench.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, load, load_from_bytes
from workbench.config import ModelConfig
from workbench.model import HookedFastWeightLM
from workbench.text.hf_tokenizer import FILE_NAME as TOKENIZER_FILE

MAX_SECONDS = 5.0  # per input: a hang (or a huge allocation being filled) shows up here
MAX_RSS_GROWTH_MB = 1500  # over the whole file: nothing the size of an absurd config was allocated


def _model(mixer: str) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=12, d_model=8, n_layers=2, n_heads=2, d_head=4, d_mlp=16, n_ctx=16, mixer=mixer)
    return HookedFastWeightLM(cfg)


def _files(model: HookedFastWeightLM, tmp: Path) -> dict[str, bytes]:
    d = save(model, tmp)
    return {f.name: f.read_bytes() for f in d.iterdir()}


def _split(blob: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _join(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def weight_cases(blob: bytes, model: HookedFastWeightLM, rng: random.Random) -> list[tuple[str, bytes]]:
    """(label, damaged model.safetensors) pairs."""
    header, data = _split(blob)
    names = [k for k in header if k != "__metadata__"]
    n = len(blob) - len(data)  # where the data starts
    cases = [("empty", b""), ("seven bytes", blob[:7]), ("header only", blob[:n]), ("one byte short", blob[:-1]),
             ("one byte extra", blob + b"\0"), ("not safetensors", b"PK\x03\x04" + bytes(64)),
             ("pickle bytes", b"\x80\x04\x95" + bytes(40) + b"."), ("text", b"hello world, not a model\n" * 3)]
    cases += [(f"truncated at {i}", blob[:i]) for i in sorted(rng.sample(range(1, len(blob)), 25))]
    for i in sorted(rng.sample(range(len(blob)), 40)):
        flipped = bytearray(blob)
        flipped[i] ^= 1 << rng.randrange(8)
        cases.append((f"bit flip at {i} ({'header' if i < n else 'data'})", bytes(flipped)))
    for length in (0, 1, n - 9, n - 7, len(blob), 2**31, 2**40, 2**63, 2**64 - 1):
        cases.append((f"header length {length}", struct.pack("<Q", length) + blob[8:]))
    junk = [b"{", b"[]", b"null", b'"x"', b"{}" + b" " * 10, b"\xff\xfe{}", b"{" * 100_000, b"[" * 100_000,
            json.dumps({"a": "b" * 1000}).encode()]
    cases += [(f"header {raw[:12]!r}", _join(raw, data)) for raw in junk]
    first = names[0]

    def edited(label, fn):
        h = json.loads(json.dumps(header))
        fn(h)
        cases.append((label, _join(h, data)))

    for dtype in ("F99", "I64", "BOOL", "U8", "F8_E4M3", "", None, 3):
        edited(f"dtype {dtype!r}", lambda h, d=dtype: h[first].__setitem__("dtype", d))
    for shape in ([], [0], [-1], [10**12, 10**12], [2**62], ["8"], None, [1.5]):
        edited(f"shape {shape!r}", lambda h, s=shape: h[first].__setitem__("shape", s))
    for offsets in ([0, 0], [0, 2**62], [5, 3], [-8, 0], [0, len(data) + 8], None, [0]):
        edited(f"offsets {offsets!r}", lambda h, o=offsets: h[first].__setitem__("data_offsets", o))
    edited("two tensors share bytes", lambda h: h[names[1]].__setitem__("data_offsets", h[first]["data_offsets"]))
    edited("newer format version", lambda h: h.__setitem__("__metadata__", {"format": "workbench", "version": "9"}))
    edited("metadata not a dict", lambda h: h.__setitem__("__metadata__", [1, 2]))
    edited("metadata values not strings", lambda h: h.__setitem__("__metadata__", {"format": 1}))

    # well-formed files that do not belong to the config
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    variants = {
        "missing tensor": {k: v for k, v in state.items() if k != first},
        "extra tensor": {**state, "blocks.9.attn.W_Q": torch.zeros(2, 2)},
        "mis-shaped tensor": {**state, first: torch.zeros(*state[first].shape[:-1], state[first].shape[-1] + 1)},
        "transposed tensor": {**state, first: state[first].transpose(0, -1).contiguous()},
        "int64 tensor": {**state, first: state[first].long()},
        "bool tensor": {**state, first: state[first] > 0},
        "uint8 tensor": {**state, first: state[first].to(torch.uint8)},
        "NaN weight": {**state, first: state[first].clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan")))},
        "Inf weight": {**state, names[-1]: state[names[-1]].clone().fill_(float("inf"))},
        "-Inf weight": {**state, names[1]: state[names[1]].clone().fill_(-float("inf"))},
        "no tensors": {},
        "path-like name ../../etc/passwd": {**state, "../../etc/passwd": torch.zeros(1)},
        "path-like name /abs/path": {**state, "/abs/path": torch.zeros(1)},
        "renamed to a path": {("../" + k if k == first else k): v for k, v in state.items()},
        "name with a NUL": {**state, "embed.W_E\0x": torch.zeros(1)},
    }
    cases += [(label, save_bytes(tensors)) for label, tensors in variants.items()]
    cases.append(("float16 weights (accepted: cast on load)", save_bytes({k: v.half() for k, v in state.items()})))
    cases.append(("bfloat16 weights (accepted: cast on load)", save_bytes({k: v.bfloat16() for k, v in state.items()})))
    return cases


ABSURD = {"d_model": 10**9, "d_vocab": 10**12, "n_layers": 10**9, "n_ctx": 10**9, "n_heads": 10**7,
          "d_head": 10**8, "d_mlp": 10**11, "chunk_size": 10**12, "seed": 2**80}


def config_cases(text: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """(label, damaged config.json) pairs."""
    data = json.loads(text)
    cases = [(f"{field}={value:.0e}" if isinstance(value, int) and value > 10**6 else f"{field}={value}",
              json.dumps({**data, field: value}).encode()) for field, value in ABSURD.items()]
    cases += [("d_model=1e9 and n_layers=1e9", json.dumps({**data, "d_model": 10**9, "n_layers": 10**9}).encode())]
    for field, value in [("d_model", -8), ("d_model", 8.5), ("d_model", "8"), ("d_model", None), ("mixer", "../x"),
                         ("mixer", {"kind": "delta", "conv_size": 10**9}), ("mixer", {"kind": "/etc/passwd"}),
                         ("mixer", [None, None]), ("norm", {"$ref": "x"}), ("block_kinds", ["mlp"] * 10**5),
                         ("post_norm_layers", list(range(10**5))), ("d_model", float("nan")), ("d_model", 1e309)]:
        cases.append((f"{field}={str(value)[:30]}", json.dumps({**data, field: value}).encode()))
    cases += [("not JSON", b"{not json"), ("empty", b""), ("a list", b"[]"), ("null", b"null"),
              ("not UTF-8", b"\xff\xfe\x00{"), ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
              ("deeply nested dict", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
              ("unknown key", json.dumps({**data, "evil": "__import__('os')"}).encode()),
              ("missing d_vocab", json.dumps({k: v for k, v in data.items() if k != "d_vocab"}).encode()),
              ("huge number", text.replace(b'"d_model": 8', b'"d_model": 1' + b"0" * 5000))]
    for i in sorted(rng.sample(range(len(text)), 20)):
        flipped = bytearray(text)
        flipped[i] = rng.choice(b'{}[]",:0123456789-eE.x \xff')
        cases.append((f"config byte {i} -> {bytes([flipped[i]])!r}", bytes(flipped)))
    cases += [(f"config truncated at {i}", text[:i]) for i in sorted(rng.sample(range(len(text)), 10))]
    return cases


def _attempt(fn, allowed: type[Exception]) -> str:
    """'loaded', 'refused' or 'FAILED: ...'."""
    start = time.perf_counter()
    try:
        model = fn()
        model = getattr(model, "model", model)  # the app's LoadedModel
        ok = all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point())
        outcome = "loaded" if ok else "FAILED: loaded non-finite weights"
    except allowed as e:
        outcome = "refused" if str(e).strip() else "FAILED: an empty message"
    except BaseException as e:  # noqa: BLE001  (RecursionError, MemoryError, RuntimeError, ...: all failures)
        outcome = f"FAILED: {type(e).__name__}: {str(e)[:200]}"
    if time.perf_counter() - start > MAX_SECONDS:
        outcome = f"FAILED: took {time.perf_counter() - start:.1f} s ({outcome})"
    return outcome


def _valid_config(text: bytes) -> bool:
    try:
        ModelConfig.from_json(text.decode("utf-8"))
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_fuzzed_checkpoints_and_uploads_are_refused_cleanly(tmp_path, capsys):
    rng = random.Random(0)
    rss0 = _rss_mb()
    results: list[tuple[str, str, str]] = []  # (input, path, outcome)
    valid_configs: set[str] = set()
    for mixer in ("delta", "softmax", "gated_delta"):
        model = _model(mixer)
        files = _files(model, tmp_path / f"clean-{mixer}")
        config, weights = files[CONFIG_FILE], files[WEIGHTS_FILE]
        assert _attempt(lambda: load_from_bytes(config, weights), CheckpointError) == "loaded"
        cases = [(f"weights: {label}", config, blob) for label, blob in weight_cases(weights, model, rng)]
        cases += [(f"config: {label}", text, weights) for label, text in config_cases(config, rng)]
        for i, (label, cfg_bytes, blob) in enumerate(cases):
            label = f"{mixer} {label}"
            if _valid_config(cfg_bytes):
                valid_configs.add(label)
            results.append((label, "load_from_bytes", _attempt(lambda: load_from_bytes(cfg_bytes, blob), CheckpointError)))
            results.append((label, "app upload", _attempt(lambda: sources.load_uploaded(cfg_bytes, blob), ValueError)))
            if label.split(" ", 1)[1].startswith("config:"):
                text = cfg_bytes.decode("utf-8", "replace")
                results.append((label, "app fresh model", _attempt(lambda: sources.build_fresh(text), ValueError)))
            if i % 4 == 0:  # the directory loader reads the same bytes; every fourth input keeps the file fast
                d = tmp_path / f"{mixer}-{i}"
                d.mkdir()
                (d / CONFIG_FILE).write_bytes(cfg_bytes)
                (d / WEIGHTS_FILE).write_bytes(blob)
                results.append((label, "load(dir)", _attempt(lambda: load(d), CheckpointError)))
        # broken tokenizer files next to good weights
        for label, tok in [("not JSON", b"{"), ("a list", b"[]"), ("unknown kind", b'{"kind": "pickle"}'),
                           ("bpe without merges", b'{"kind": "bpe"}'), ("vocabulary of numbers", b'{"kind": "vocabulary", "tokens": 3}'),
                           ("not UTF-8", b"\xff\xfe"), ("deeply nested", b"[" * 100_000)]:
            d = tmp_path / f"{mixer}-tok-{len(results)}"
            d.mkdir()
            (d / CONFIG_FILE).write_bytes(config)
            (d / WEIGHTS_FILE).write_bytes(weights)
            (d / TOKENIZER_FILE).write_bytes(tok)
            results.append((f"{mixer} tokenizer: {label}", "load(dir)", _attempt(lambda: load(d), CheckpointError)))
    # names of shipped checkpoints that look like paths
    for name in ("../../etc", "/etc/passwd", "toy-delta/../../..", "", "toy-delta\0"):
        results.append((f"shipped name {name!r}", "app shipped", _attempt(lambda: sources.load_shipped(name), ValueError)))

    failed = [r for r in results if r[2].startswith("FAILED")]
    refused = sum(r[2] == "refused" for r in results)
    loaded = [r for r in results if r[2] == "loaded"]
    growth = _rss_mb() - rss0
    with capsys.disabled():
        print(f"\nfuzzed checkpoints: {len(results)} loads of {len({r[0] for r in results})} damaged inputs; "
              f"{refused} refused with a clear error, {len(loaded)} loaded finite weights (flipped data bytes, "
              f"half-precision files), {len(failed)} failed otherwise; peak RSS grew {growth:.0f} MB")
    assert not failed, "\n".join(f"{label} [{path}]: {outcome}" for label, path, outcome in failed)
    # only inputs that are valid checkpoints may load: data-byte flips, half-precision files, and config edits that
    # leave a valid config (a huge chunk_size or seed, a flipped space)
    assert all("(data)" in label or "accepted" in label or label in valid_configs for label, _, _ in loaded), loaded
    assert growth < MAX_RSS_GROWTH_MB
