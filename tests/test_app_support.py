"""The logic behind the Streamlit app (workbench.app_support), without Streamlit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench import CheckpointError, HookedFastWeightLM, ModelConfig, save
from workbench.app_support import attention_maps, edits, launch, predictions, probing, sequences, sources, trajectory
from workbench.paths import DEFAULT_CHECKPOINT, PACKAGE_DIR
from workbench.plots import per_head_over_positions

CONFIG_BYTES = (DEFAULT_CHECKPOINT / "config.json").read_bytes()
WEIGHTS_BYTES = (DEFAULT_CHECKPOINT / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def toy():
    lm = sources.load_shipped("toy-delta")
    seq = sequences.task_sequence(lm.model.cfg, sequences.default_task(lm.model.cfg, lm.task), 0)
    return lm, seq


def small(mixer: str = "delta", **kw) -> HookedFastWeightLM:
    return HookedFastWeightLM(ModelConfig.from_dict(dict(d_vocab=20, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=24,
                                          mixer=mixer, init_std=0.3, chunk_size=4, **kw)))


# ---------------------------------------------------------------------- sources
def test_shipped_checkpoints_are_listed_default_first_and_load_frozen(tmp_path, toy):
    lm, _ = toy
    assert sources.list_checkpoints()[0] == "toy-delta"
    assert lm.task["name"] == "mqar" and lm.key.startswith("shipped:toy-delta:")
    assert not lm.model.training and not any(p.requires_grad for p in lm.model.parameters())
    (tmp_path / "b").mkdir()
    save(small(), tmp_path / "a")
    assert sources.list_checkpoints(tmp_path) == ["a"]  # "b" holds no checkpoint
    assert sources.list_checkpoints(tmp_path / "nowhere") == []
    other = sources.load_shipped("a", tmp_path)
    assert other.task is None and other.label == "a"
    for bad in ("nope", "../toy-delta", "b"):
        with pytest.raises(CheckpointError, match="no checkpoint named"):
            sources.load_shipped(bad, tmp_path)


def test_upload_gives_the_same_model_and_bad_uploads_say_why(toy):
    lm, seq = toy
    up = sources.load_uploaded(CONFIG_BYTES, WEIGHTS_BYTES)
    assert up.key.startswith("upload:") and up.key == sources.load_uploaded(CONFIG_BYTES, WEIGHTS_BYTES).key
    assert torch.equal(up.model(list(seq.tokens)), lm.model(list(seq.tokens)))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        sources.load_uploaded(CONFIG_BYTES, b"these bytes are not a checkpoint")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        sources.load_uploaded(WEIGHTS_BYTES[:100], WEIGHTS_BYTES)
    wrong_keys = json.dumps({**json.loads(CONFIG_BYTES), "n_layer": 2}).encode()
    with pytest.raises(CheckpointError, match=r"unknown ModelConfig keys \['n_layer'\]"):
        sources.load_uploaded(wrong_keys, WEIGHTS_BYTES)
    other_shape = json.dumps({**json.loads(CONFIG_BYTES), "d_model": 32}).encode()
    with pytest.raises(CheckpointError, match="has shape"):
        sources.load_uploaded(other_shape, WEIGHTS_BYTES)
    huge = json.dumps({**json.loads(CONFIG_BYTES), "d_vocab": 10**7}).encode()
    with pytest.raises(ValueError, match="parameters; the app builds models up to"):
        sources.load_uploaded(huge, WEIGHTS_BYTES)


def test_fresh_models_are_seeded_and_bad_configs_say_why():
    text = sources.default_fresh_config()
    a, b = sources.build_fresh(text), sources.build_fresh(text)
    assert a.key == b.key and a.model.cfg.mixer.kind == "gated_delta"
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    reseeded = sources.build_fresh(json.dumps({**json.loads(text), "seed": 1}))
    assert reseeded.key != a.key
    with pytest.raises(ValueError, match=r"unknown ModelConfig keys \['heads'\]"):
        sources.build_fresh(json.dumps({**json.loads(text), "heads": 3}))
    with pytest.raises(ValueError, match="not valid JSON"):
        sources.build_fresh("{")
    with pytest.raises(ValueError, match="unknown mixer"):
        sources.build_fresh(json.dumps({**json.loads(text), "mixer": "lstm"}))
    with pytest.raises(ValueError, match="parameters"):
        sources.build_fresh(json.dumps({**json.loads(text), "d_model": 1024, "d_mlp": 8192, "n_layers": 8}))


@pytest.mark.parametrize("kw", [dict(mixer="softmax"), dict(mixer="linear", feature_map="dpfp", dpfp_nu=2),
                                dict(mixer="linear", feature_map="favor"), dict(mixer="delta", mlp="swiglu"),
                                dict(mixer="gated_delta", output_gate=True), dict(mixer="delta", positional="none")])
def test_parameter_estimate_bounds_the_real_count(kw):
    model = small(**kw)
    n = model.num_params()
    assert n <= sources.estimate_params(model.cfg) <= 2 * n


# ---------------------------------------------------------------------- sequences
def test_typed_sequences_parse_and_bad_ones_say_why(toy):
    lm, _ = toy
    assert sequences.parse_token_ids(" 3 17,5;\n0 ") == [3, 17, 5, 0]
    assert sequences.typed_sequence(lm.model, "1 2 3").tokens == (1, 2, 3)
    with pytest.raises(ValueError, match="the sequence is empty"):
        sequences.typed_sequence(lm.model, "  ,\n")
    with pytest.raises(ValueError, match=r"entry 1 \('x'\) is not a token id"):
        sequences.typed_sequence(lm.model, "1 x 3")
    with pytest.raises(ValueError, match="token id 64 is outside the vocabulary"):
        sequences.typed_sequence(lm.model, "1 64")
    with pytest.raises(ValueError, match="token id -1 is outside"):
        sequences.typed_sequence(lm.model, "-1 4")
    with pytest.raises(ValueError, match="longer than the model's n_ctx = 48"):
        sequences.typed_sequence(lm.model, " ".join(["1"] * 49))
    long_ok = small(positional="none")
    with pytest.raises(ValueError, match="the app shows at most 512"):
        sequences.typed_sequence(long_ok, " ".join(["1"] * 513))


def test_pairs_parse_and_bad_ones_say_why():
    assert sequences.parse_pairs("0:1, 2-3", 4) == ((0, 1), (2, 3))
    assert sequences.format_pairs(((0, 1), (2, 3))) == "0:1 2:3"
    with pytest.raises(ValueError, match="no pairs given"):
        sequences.parse_pairs(" ", 4)
    with pytest.raises(ValueError, match="'0_1' is not a pair"):
        sequences.parse_pairs("0_1", 4)
    with pytest.raises(ValueError, match="outside the sequence"):
        sequences.parse_pairs("0:4", 4)


def test_task_sequences_are_seeded_and_carry_what_the_task_scores(toy):
    lm, seq = toy
    cfg = lm.model.cfg
    task = sequences.default_task(cfg, lm.task)
    assert task == lm.task
    from workbench.tasks import task_from_dict

    batch = task_from_dict(task).sample(1, torch.Generator().manual_seed(0))
    assert seq.tokens == tuple(batch.tokens[0].tolist())
    assert seq.scored == tuple(batch.loss_mask[0].nonzero()[:, 0].tolist()) and len(seq.scored) == 6
    assert seq.pairs == tuple(batch.pairs[0]) and seq.seed == 0 and json.loads(seq.task_json) == task
    assert sequences.task_sequence(cfg, task, 1).tokens != seq.tokens
    with pytest.raises(ValueError, match="non-negative integer"):
        sequences.task_sequence(cfg, task, -1)
    with pytest.raises(ValueError, match="unknown task 'copy'"):
        sequences.fit_task(cfg, {"name": "copy"})
    with pytest.raises(ValueError, match="the task settings are not valid: .*num_pairs"):
        sequences.fit_task(cfg, {"name": "mqar", "num_pairs": 3})
    with pytest.raises(ValueError, match="uses 80 token ids but the model's vocabulary has 64"):
        sequences.fit_task(cfg, {"name": "associative_recall", "num_keys": 40, "num_values": 40})
    with pytest.raises(ValueError, match="take at most 48"):
        sequences.fit_task(cfg, {"name": "associative_recall", "num_pairs": 12, "num_queries": 13})
    with pytest.raises(ValueError, match="not valid JSON"):
        sequences.parse_task("{")
    with pytest.raises(ValueError, match="must be a JSON object"):
        sequences.parse_task("[1]")


def test_default_task_falls_back_to_an_mqar_sized_to_the_model():
    cfg = small().cfg  # vocab 20, n_ctx 24
    too_big = {"name": "mqar", "vocab_size": 64, "seq_len": 48, "num_kv_pairs": 6}
    task = sequences.default_task(cfg, too_big)
    assert task["name"] == "mqar" and task["vocab_size"] == 20 and task["seq_len"] == 18
    sequences.task_sequence(cfg, task, 0)  # runs
    with pytest.raises(ValueError, match="no synthetic task fits"):
        sequences.default_task(cfg.replace(d_vocab=4))


# ---------------------------------------------------------------------- computations
def test_predictions_table_and_recall_accuracy(toy):
    lm, seq = toy
    table = predictions.predictions(lm.model, list(seq.tokens), seq.scored)
    assert len(table) == len(seq) and table["next_token"].isna().tolist() == [False] * 47 + [True]
    logits = lm.model(list(seq.tokens))[0]
    assert table["predicted"].tolist() == logits.argmax(-1).tolist()
    assert predictions.recall_accuracy(table) == 1.0  # the shipped model solves its task
    assert predictions.recall_accuracy(predictions.predictions(lm.model, [1, 2, 3])) is None


@pytest.mark.parametrize("mixer", ["delta", "gated_delta", "linear"])
def test_trajectory_holds_the_states_and_the_writes_that_made_them(mixer):
    model = small(mixer)
    tokens = torch.randint(0, 20, (1, 11), generator=torch.Generator().manual_seed(1))
    traj = trajectory.fast_weight_trajectory(model, tokens, 1)
    assert torch.allclose(traj.W[[0, 5, 10]], model.fast_weights(tokens, 1, [0, 5, 10])[0])
    assert torch.equal(traj.before(0), torch.zeros_like(traj.W[0])) and torch.equal(traj.before(4), traj.W[3])
    assert torch.allclose(traj.singular_values(1)[7], torch.linalg.svdvals(traj.W[7, 1].double()).float())
    _, cache = model.run_with_cache(tokens)
    k = cache["blocks.1.attn.hook_k"][0]
    if mixer == "linear":
        assert traj.beta is None and traj.delta is None
        write = torch.einsum("phk,phv->phkv", k, cache["blocks.1.attn.hook_v"][0])  # sum rule: W_t − W_{t−1} = k vᵀ
    else:
        assert torch.equal(traj.beta, cache["blocks.1.attn.hook_beta"][0])
        decay = 1.0 if mixer == "delta" else cache["blocks.1.attn.hook_log_decay"][0].exp()[..., None, None]
        u = cache["blocks.1.attn.hook_delta"][0]
        write = torch.einsum("phk,phv->phkv", k, u)  # W_t = α_t W_{t−1} + k_t u_tᵀ
        traj_prev = torch.stack([traj.before(t) for t in range(11)])
        assert torch.allclose(traj.W, decay * traj_prev + write, atol=1e-5)
        return
    assert torch.allclose(traj.W - torch.stack([traj.before(t) for t in range(11)]), write, atol=1e-5)
    with pytest.raises(ValueError, match="softmax attention"):
        trajectory.fast_weight_trajectory(small("softmax"), tokens, 0)


def test_attention_maps_and_head_scores(toy):
    lm, seq = toy
    A = attention_maps.attention_maps(lm.model, list(seq.tokens), 1)
    _, cache = lm.model.run_with_cache(list(seq.tokens))
    z = torch.einsum("hqk,khd->qhd", A, cache["blocks.1.attn.hook_v"][0])
    assert torch.allclose(z, cache["blocks.1.attn.hook_z"][0], atol=1e-5)
    scores = attention_maps.head_score_table(lm.model, list(seq.tokens))
    assert list(scores.columns) == ["layer", "head", "previous_token", "induction"] and len(scores) == 4
    assert scores[["previous_token", "induction"]].apply(lambda c: c.between(0, 1)).all().all()


def test_probe_over_task_samples_reports_progress_and_numbers_the_samples(toy):
    lm, seq = toy
    calls = []
    df = probing.probe_samples(lm.model, lm.task, [0, 1, 2], 0, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)] and sorted(df["seq"].unique()) == [0, 1, 2]
    one = probing.probe_sequence(lm.model, seq, 0)
    assert one.equals(df[df["seq"] == 0].reset_index(drop=True))
    with pytest.raises(ValueError, match="needs .* pairs"):
        probing.probe_sequence(lm.model, sequences.typed_sequence(lm.model, "1 2 3"), 0)
    with pytest.raises(ValueError, match="no seeds"):
        probing.probe_samples(lm.model, lm.task, [], 0)


def test_edits_change_the_prediction_and_leave_the_model_alone(toy):
    lm, seq = toy
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    t, source = seq.scored[0], seq.scored[-1]
    out = edits.redirect_recall(lm.model, list(seq.tokens), 0, t, source)
    assert out.top_before == seq.tokens[t + 1]  # recalls its own pair …
    assert out.target == seq.tokens[source + 1] and out.top_after == out.target  # … and, edited, the other one
    assert t in out.changed["pos"].tolist() and abs(out.after["prob"].sum()) <= 1
    weak = edits.redirect_recall(lm.model, list(seq.tokens), 0, t, source, strength=0.0)
    assert weak.top_after == weak.top_before and weak.changed.empty
    wiped = edits.wipe_memory(lm.model, list(seq.tokens), 0, t, mode="readout")
    assert wiped.top_after != wiped.top_before and wiped.changed["pos"].tolist() == [t]  # readout: only t
    one_head = edits.wipe_memory(lm.model, list(seq.tokens), 0, t, head=1, mode="carry")
    assert one_head.position == t
    with pytest.raises(ValueError, match="head must be in"):
        edits.wipe_memory(lm.model, list(seq.tokens), 0, t, head=2)
    with pytest.raises(ValueError, match="outside the sequence"):
        edits.redirect_recall(lm.model, list(seq.tokens), 0, 48, 0)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert all(not hp._forward_hooks for hp in lm.model.hook_dict.values())
    assert all(block.attn.state_request is None for block in lm.model.blocks)


def test_probe_control_layer_choice_and_sample_bands(toy):
    lm, seq = toy
    written = probing.convention_pairs(seq.pairs, "written")
    assert written == tuple((b, b) for _, b in seq.pairs) and probing.convention_pairs(seq.pairs, "task") == seq.pairs
    assert probing.control_pairs([(1, 1), (3, 3), (5, 5)]) == ((1, 3), (3, 5)) and probing.control_pairs([(1, 1)]) == ()
    with pytest.raises(ValueError, match="convention must be"):
        probing.convention_pairs(seq.pairs, "keys")
    probes = {i: probing.with_control(lambda p, i=i: probing.probe_sequence(lm.model, seq, i, p), written)
              for i in (0, 1)}
    df, control = probes[0]
    assert control["n_stored"].min() == 2 and set(control["key_pos"]) == {b for _, b in seq.pairs[:-1]}
    summary = probing.layer_summary(probes)
    assert list(summary.columns) == ["layer", "head", "fidelity", "control_fidelity", "margin", "decodes"]
    row = summary[(summary.layer == 0) & (summary["head"] == 1)].iloc[0]
    assert row.margin == pytest.approx(df[df["head"] == 1].fidelity.mean() - control[control["head"] == 1].fidelity.mean())
    # layer 1's fidelity is higher but no higher than its control's: the pairs live in layer 0
    assert summary[summary.layer == 1].fidelity.max() > summary[summary.layer == 0].fidelity.max()
    assert probing.recall_layer(summary) == 0
    assert probing.with_control(lambda p: probing.probe_sequence(lm.model, seq, 0, p), written[:1])[1] is None
    many = probing.probe_samples(lm.model, lm.task, [0, 1, 2], 0)
    agg = probing.aggregate_samples(many, "n_stored")
    first = agg[(agg["head"] == 0) & (agg["n_stored"] == 1)].iloc[0]
    per_seq = [many[(many.seq == i) & (many["head"] == 0) & (many.n_stored == 1)].fidelity.mean() for i in range(3)]
    assert first.n_samples == 3 and first.fidelity == pytest.approx(sum(per_seq) / 3)
    assert first.fidelity_sem == pytest.approx(torch.tensor(per_seq).std().item() / 3 ** 0.5)


def test_roles_p_next_and_the_edit_table(toy):
    lm, seq = toy
    roles = predictions.position_roles(len(seq), seq.pairs, seq.scored)
    assert [roles[a] for a, _ in seq.pairs] == ["key"] * 6 and [roles[b] for _, b in seq.pairs] == ["value"] * 6
    assert [roles[t] for t in seq.scored] == ["query"] * 6 and roles.count("") == 48 - 18
    assert predictions.position_roles(3, (), (0, 1)) == ["scored", "scored", ""]
    table = predictions.predictions(lm.model, list(seq.tokens), seq.scored)
    probs = lm.model(list(seq.tokens))[0].softmax(-1)
    assert table["p_next"].iloc[:-1].tolist() == pytest.approx([float(probs[t, seq.tokens[t + 1]]) for t in range(47)])
    from workbench.plots import next_token_probability, prediction_change

    fig = next_token_probability(table, roles)
    assert [t.name for t in fig.data] == ["p(next token)", "key", "value", "query ★ (scored)"]
    assert list(fig.data[3].x) == list(seq.scored)
    out = edits.wipe_memory(lm.model, list(seq.tokens), 0, seq.scored[0], mode="readout")
    pos = out.positions
    assert len(pos) == 48 and pos["p_next_after"].isna().tolist() == [False] * 47 + [True]
    assert (pos["top_before"] != pos["top_after"]).sum() == len(out.changed)
    assert pos["p_next_before"].tolist()[:-1] == pytest.approx(table["p_next"].tolist()[:-1], abs=1e-6)
    fig = prediction_change(pos, seq.scored, seq.scored[0])
    assert list(fig.data[2].x) == list(seq.scored) and fig.layout.shapes[0].x0 == seq.scored[0]
    assert fig.data[2].marker.color[0] == "#d62728"  # the wiped query is wrong now


def test_fast_weight_heatmap_clips_at_a_quantile_and_log_axes_label_every_tick():
    from workbench.plots import fast_weight_heatmap
    from workbench.plots.outliers import log_axis

    W = torch.zeros(8, 8)
    W[:, 0] = 100.0
    W[:, 1:] = torch.linspace(-1, 1, 56).reshape(8, 7)
    assert fast_weight_heatmap(W).data[0].zmax == 100.0
    clipped = fast_weight_heatmap(W, clip=0.8).data[0]
    assert clipped.zmax == pytest.approx(float(W.abs().flatten().quantile(0.8))) and clipped.zmin == -clipped.zmax
    with pytest.raises(ValueError, match="clip must be a quantile"):
        fast_weight_heatmap(W, clip=1.5)
    import plotly.graph_objects as go

    axis = log_axis(go.Figure()).layout.yaxis
    assert (axis.type, axis.tickformat, axis.dtick) == ("log", "~g", "D2")


# ---------------------------------------------------------------------- launch and plots
def test_launch_command_line(tmp_path):
    script = launch.find_app_script()
    assert script == PACKAGE_DIR / "streamlit_app" / "main.py" and (script.parent / "app_pages").is_dir()
    argv = launch.streamlit_argv(script, port=8642, headless=True)
    assert argv[1:5] == ["-m", "streamlit", "run", str(script)]
    flags = dict(zip(argv[5::2], argv[6::2]))
    assert flags == {"--server.port": "8642", "--server.headless": "true", "--browser.serverAddress": "localhost",
                     **{f"--{k}": v for k, v in launch.APP_OPTIONS.items()}}
    assert flags["--server.fileWatcherType"] == "none" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "127.0.0.1"  # this machine only, unless asked
    exposed = launch.streamlit_argv(script, address="0.0.0.0")
    assert exposed.count("--server.address") == 1 and exposed[exposed.index("--server.address") + 1] == "0.0.0.0"
    assert exposed[exposed.index("--browser.serverAddress") + 1] == "localhost"
    with pytest.raises(ValueError, match="address must be a host name"):
        launch.streamlit_argv(script, address="0.0.0.0 --server.port 1")
    assert int(flags["--server.maxUploadSize"]) == sources.MAX_UPLOAD_MB
    assert sources.MAX_UPLOAD_BYTES["model.safetensors"] >= 4 * sources.MAX_PARAMS + (1 << 20)  # fp32 + header
    with pytest.raises(ValueError, match="port must be"):
        launch.streamlit_argv(script, port=70000)
    with pytest.raises(FileNotFoundError, match="package data of workbench"):
        launch.find_app_script(tmp_path / "app.py")


def test_launch_options_match_the_checkouts_streamlit_config():  # `streamlit run app.py` == `workbench app`
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
            for section, options in config.items() for key, value in options.items()}
    assert flat == {**launch.APP_OPTIONS, "browser.serverAddress": "localhost"}


def test_per_head_curves_mark_the_position():
    fig = per_head_over_positions(torch.rand(7, 3), position=4, title="β")
    assert len(fig.data) == 3 and fig.layout.shapes[0].x0 == 4
    assert not per_head_over_positions(torch.rand(7, 3)).layout.shapes
    with pytest.raises(ValueError, match=r"\[pos, head\]"):
        per_head_over_positions(torch.rand(7))


def test_workbench_app_command_help_and_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["app", "--help"])
    assert res.exit_code == 0 and "--port" in res.output and "--headless" in res.output
    assert "127.0.0.1" in res.output and "--address 0.0.0.0" in res.output  # says how to expose it
    res = runner.invoke(app, ["app", "--port", "0"])
    assert res.exit_code == 2 and "port must be an int in [1, 65535]" in res.output
    monkeypatch.setattr(launch, "APP_SCRIPT", tmp_path / "main.py")  # as in a broken install
    res = runner.invoke(app, ["app"])
    assert res.exit_code == 2 and "package data of workbench" in res.output


def test_workbench_app_binds_to_this_machine_unless_told_otherwise(monkeypatch):
    from typer.testing import CliRunner

    from workbench.cli import app

    served = []
    monkeypatch.setattr("os.execv", lambda path, argv: served.append(argv))  # record the server, do not become it
    runner = CliRunner()
    res = runner.invoke(app, ["app", "--headless"])
    assert res.exit_code == 0, res.output
    argv = served[-1]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1" and "this machine only" in res.output
    assert "warning" not in res.output
    res = runner.invoke(app, ["app", "--headless", "--address", "0.0.0.0"])
    argv = served[-1]
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"
    assert "warning: serving on 0.0.0.0" in res.output and "no login" in res.output
    assert launch.exposure_warning("localhost") is None and launch.exposure_warning("::1") is None
    assert "192.168.1.5" in launch.exposure_warning("192.168.1.5")


def test_uploads_are_refused_above_the_size_limit_and_parsed_in_memory(monkeypatch):
    from workbench.paths import DEFAULT_CHECKPOINT

    config = (DEFAULT_CHECKPOINT / "config.json").read_bytes()
    weights = (DEFAULT_CHECKPOINT / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"the uploaded config.json is 1.0 MB; the app reads at most 1 MB"):
        sources.load_uploaded(config + b" " * (1 << 20), weights)
    with pytest.raises(ValueError, match=r"uploaded model.safetensors \('big.safetensors'\) is 100.0 MB.*at most 100 MB"):
        sources.check_upload_size("model.safetensors", (100 << 20) + 1, "big.safetensors")
    sources.check_upload_size("model.safetensors", 100 << 20)  # the limit itself is allowed

    def no_disk(*args, **kwargs):
        raise AssertionError(f"an upload touched the file system: {args}")

    import builtins
    import tempfile

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, no_disk)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, mode="r", *a, **k: no_disk(file, mode) if any(c in mode for c in "wax+")
                        else real_open(file, mode, *a, **k))
    lm = sources.load_uploaded(config, weights, "up")
    assert lm.key.startswith("upload:") and lm.model.cfg.n_layers == 2
