"""workbench.mixers.hook_edits: the one test of whether a hook patched what it was given."""

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from workbench.mixers.hook_edits import fire, read_only


def hook_with(fn):
    h = HookPoint()
    h.name = "blocks.0.attn.hook_x"
    h.add_hook(lambda x, hook: fn(x))
    return h


def test_fire_tells_a_patch_from_a_read():
    x = torch.arange(4.0)
    out, edited = fire(HookPoint(), x)  # no hook: the tensor itself, not a patch
    assert out is x and not edited
    out, edited = fire(hook_with(lambda t: None), x)  # a hook that only reads
    assert out is x and not edited
    out, edited = fire(hook_with(lambda t: t * 2), x)  # a new tensor
    assert edited and torch.equal(out, 2 * torch.arange(4.0))
    y = torch.arange(4.0)
    out, edited = fire(hook_with(lambda t: t.mul_(0)), y)  # edited in place, the same object returned
    assert out is y and edited


def test_read_only_names_the_hook_and_says_why():
    read_only(hook_with(lambda t: None), torch.ones(2), "is computed inside")  # reading is fine
    with pytest.raises(ValueError, match=r"^blocks\.0\.attn\.hook_x is computed inside; patch hook_y$"):
        read_only(hook_with(lambda t: t + 1), torch.ones(2), "is computed inside; patch hook_y")
    with pytest.raises(ValueError, match="hook_x is computed inside"):
        read_only(hook_with(lambda t: t.add_(1)), torch.ones(2), "is computed inside")
