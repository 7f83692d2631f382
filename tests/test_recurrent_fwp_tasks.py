"""The code-execution and ListOps generators against interpreters written here, independently of theirs."""

from __future__ import annotations

import pytest
import torch

from workbench.tasks import CodeExecution, ListOps, task_from_dict
from workbench.tasks.listops import running_states


# --- independent interpreters -------------------------------------------------------------------------

def exec_python(words: list[str]) -> dict[str, int]:
    """Run the program as Python: each statement becomes a line of Python source."""
    source, statement = [], []
    for w in words:
        statement.append(w)
        if w != ";":
            continue
        if statement[0] == "if":  # if v < n : body ;
            cond, body = statement[1:4], statement[5:-1]
            source.append(f"if {' '.join(cond)}: {_py(body)}")
        else:
            source.append(_py(statement[:-1]))
        statement = []
    env: dict = {}
    exec("\n".join(source), {}, env)  # noqa: S102 — a program this test just generated
    return {k: v for k, v in env.items() if not k.startswith("_")}


def _py(body: list[str]) -> str:
    if body[0] == "print":
        return "pass"
    if body[1] == "=":
        return f"{body[0]} = {body[2]}"
    return f"{body[0]} += {1 if body[1] == '++' else -1}"


def listops_value(words: list[str]) -> int:
    """Evaluate by recursion on the token list (the generator evaluates with a stack)."""
    def parse(i: int) -> tuple[int, int]:
        op, args, i = words[i][1:], [], i + 1
        while words[i] != "]":
            if words[i].startswith("["):
                v, i = parse(i)
            else:
                v, i = int(words[i]), i + 1
            args.append(v)
        s = sorted(args)
        value = {"MAX": max(args), "MIN": min(args), "SM": sum(args) % 10, "FIRST": args[0], "LAST": args[-1],
                 "MED": int(torch.tensor(s, dtype=torch.float64).median().item()) if len(s) % 2 else
                 int((s[len(s) // 2 - 1] + s[len(s) // 2]) / 2)}[op]
        return value, i + 1
    value, end = parse(0)
    assert end == len(words)
    return value


def split_code(task: CodeExecution, ids: torch.Tensor) -> tuple[list[str], list[tuple[str, str]]]:
    """(program words, [(queried variable, answer), …]) of one sequence."""
    words = task.program_tokens(ids)
    queries = []
    while len(words) >= 4 and words[-4] == "print" and words[-2] == ";" and words[-1].lstrip("-").isdigit():
        queries.insert(0, (words[-3], words[-1]))
        words = words[:-4]
    return words, queries


# --- code execution -----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_vars,seq_len", [(3, 48), (5, 96), (1, 30)])
def test_code_execution_answers_match_python(num_vars, seq_len):
    task = CodeExecution(num_vars=num_vars, seq_len=seq_len)
    batch = task.sample(200, torch.Generator().manual_seed(1))
    assert batch.tokens.shape == (200, seq_len)
    n_checked = 0
    for b in range(200):
        program, queries = split_code(task, batch.tokens[b])
        env = exec_python(program)
        assert sorted(v for v, _ in queries) == sorted(env), "one query per assigned variable"
        for var, answer in queries:
            assert env[var] == int(answer)
            assert task.min_value <= env[var] <= task.max_value
            n_checked += 1
        # scored positions: the ";" of each query, predicting its answer
        scored = batch.loss_mask[b].nonzero().flatten().tolist()
        assert len(scored) == len(queries)
        for t in scored:
            assert task.decode([batch.tokens[b, t]]) == [";"]
            assert task.decode([batch.tokens[b, t - 2]]) == ["print"]
    assert n_checked >= 200


def test_code_execution_conditionals_and_steps_occur():
    task = CodeExecution(num_vars=3, seq_len=96)
    words = task.decode(task.sample(64, torch.Generator().manual_seed(0)).tokens.flatten())
    for w in ("if", "<", ">", "++", "--", "print", "="):
        assert w in words


def test_code_execution_run_tracks_values():
    task = CodeExecution(num_vars=2)
    words = "x = 3 ; if x > 2 : y = 7 ; x ++ ; if y < 5 : x = 0 ; print x ;".split()
    states = task.run(words)
    assert states[3] == {"x": 3, "y": None}
    assert states[-1] == {"x": 4, "y": 7}
    assert exec_python(words) == {"x": 4, "y": 7}


def test_code_execution_is_seeded_and_round_trips():
    task = CodeExecution(num_vars=3, seq_len=40)
    a = task.sample(16, torch.Generator().manual_seed(7))
    b = task.sample(16, torch.Generator().manual_seed(7))
    c = task.sample(16, torch.Generator().manual_seed(8))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.loss_mask, b.loss_mask)
    assert not torch.equal(a.tokens, c.tokens)
    assert task_from_dict(task.to_dict()) == task


@pytest.mark.parametrize("kwargs", [dict(num_vars=0), dict(num_vars=11), dict(seq_len=10), dict(min_value=0),
                                    dict(max_value=5)])
def test_code_execution_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        CodeExecution(**kwargs)


# --- ListOps ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,max_args,ops", [(3, 5, ("MAX", "MIN", "MED", "SM")), (2, 3, ("FIRST", "LAST", "MED")),
                                                (1, 4, ("SM",))])
def test_listops_answers_match_recursive_evaluation(depth, max_args, ops):
    task = ListOps(depth=depth, max_args=max_args, min_length=4 * depth, max_length=12 * depth + 8, operators=ops)
    batch = task.sample(200, torch.Generator().manual_seed(2))
    assert batch.tokens.shape == (200, task.seq_len)
    assert batch.loss_mask[:, -1].all() and batch.loss_mask.sum() == 200
    for b in range(200):
        words = task.expression_tokens(batch.tokens[b])
        expr, answer = words[:-1], int(words[-1])
        assert listops_value(expr) == answer
        assert task.min_length <= len(expr) <= task.max_length
        assert {w[1:] for w in expr if w.startswith("[")} <= set(ops)
        depths = [d for d, _ in running_states(expr)]
        assert max(depths) == depth and depths[-1] == 0


def test_listops_median_is_numpy_int_median():
    from workbench.tasks.listops import apply
    assert apply("MED", [1, 2]) == 1 and apply("MED", [3, 8, 1]) == 3 and apply("MED", [2, 9, 4, 7]) == 5


def test_listops_is_seeded_and_round_trips():
    task = ListOps(depth=2, max_length=20, min_length=8)
    a = task.sample(8, torch.Generator().manual_seed(3)).tokens
    assert torch.equal(a, task.sample(8, torch.Generator().manual_seed(3)).tokens)
    assert not torch.equal(a, task.sample(8, torch.Generator().manual_seed(4)).tokens)
    assert task_from_dict(task.to_dict()) == task


@pytest.mark.parametrize("kwargs", [dict(max_args=1), dict(operators=("POW",)), dict(operators=()),
                                    dict(depth=5, max_length=12), dict(list_p=1.5)])
def test_listops_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        ListOps(**kwargs)
