"""The LSTM of the Fast Weight Memory's slow net (Schlag et al. 2021), one position at a time.

As the authors' ``LSTMCell`` (ischlag/Fast-Weight-Memory-public, ``catbAbI/models/lm_fwm.py``): gates
in the order i, f, z, o, and a constant +1 on the forget gate's pre-activation:

    i, f, z, o = split(x_t W_ih + h_{t-1} W_hh + b)
    c_t = σ(f + 1) ⊙ c_{t-1} + σ(i) ⊙ tanh(z);   h_t = σ(o) ⊙ tanh(c_t)        (h_{-1} = c_{-1} = 0)
"""

from __future__ import annotations

from typing import Optional

import torch


def lstm_scan(gates_x: torch.Tensor, W_hh: torch.Tensor,
              initial: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gates_x = x W_ih + b`` ``[batch, pos, 4·d]`` and ``W_hh [d, 4·d]`` → (h, c), each ``[batch, pos, d]``;
    ``initial``: (h, c) ``[batch, d]`` before the first position (None: zeros)."""
    b, n, four_d = gates_x.shape
    d = four_d // 4
    h, c = (gates_x.new_zeros(b, d), gates_x.new_zeros(b, d)) if initial is None else initial
    hs, cs = [], []
    for t in range(n):
        i, f, z, o = (gates_x[:, t] + h @ W_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f + 1) * c + torch.sigmoid(i) * torch.tanh(z)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, dim=1), torch.stack(cs, dim=1)
