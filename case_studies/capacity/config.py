"""The capacity study as data: which models, which S, which protocol (Schlag, Irie & Schmidhuber 2021, Sec. 6.1).

A :class:`Study` is a protocol plus a list of :class:`Run` s (setting, S, model); ``FULL`` is what the README
reports, ``QUICK`` the seconds-long version the tests run. Everything is frozen and JSON-serialisable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from workbench.retrieval.model import RetrieverConfig
from workbench.retrieval.training import RetrieverTrainConfig


@dataclass(frozen=True)
class Model:
    """One curve of the paper's figures: φ (``feature_map``, ``dpfp_nu``, ``favor_features``, ``favor_redraw``;
    ``favor_orthogonal`` and ``favor_scale`` set FAVOR+'s other two choices, see ``RetrieverConfig``) and the
    update."""

    feature_map: str
    update: str = "sum"
    dpfp_nu: int = 1
    favor_features: int = 64
    favor_redraw: bool = False
    favor_orthogonal: Optional[bool] = None
    favor_scale: Optional[bool] = None

    def retriever(self, num_keys: int, seed: int) -> RetrieverConfig:
        return RetrieverConfig.paper(num_keys, feature_map=self.feature_map, update=self.update,
                                     dpfp_nu=self.dpfp_nu, favor_features=self.favor_features,
                                     favor_redraw=self.favor_redraw, favor_orthogonal=self.favor_orthogonal,
                                     favor_scale=self.favor_scale, seed=seed)

    @property
    def label(self) -> str:
        return self.retriever(2, 0).label

    @property
    def name(self) -> str:
        """e.g. ``dpfp2-delta``, ``favor64-redraw-sum``, ``favor64-fixed-orth-unscaled-sum``."""
        favor = f"{self.favor_features}{'-redraw' if self.favor_redraw else ''}"
        if self.favor_orthogonal is not None or self.favor_scale is not None:
            redraw, orthogonal, scale = self.retriever(2, 0).favor_choices
            favor = (f"{self.favor_features}-{'redraw' if redraw else 'fixed'}-{'orth' if orthogonal else 'gauss'}"
                     f"-{'scaled' if scale else 'unscaled'}")
        suffix = {"dpfp": str(self.dpfp_nu), "favor": favor}.get(self.feature_map, "")
        return f"{self.feature_map}{suffix}-{self.update}"


@dataclass(frozen=True)
class Run:
    """``seed`` (model init, FAVOR+ features and training data) replaces the study's ``seed`` when given."""

    setting: int
    num_keys: int
    model: Model
    seed: Optional[int] = None

    @property
    def name(self) -> str:
        return f"s{self.setting}-S{self.num_keys}-{self.model.name}" + ("" if self.seed is None else f"-seed{self.seed}")


@dataclass(frozen=True)
class Study:
    """``train``: the paper's protocol with our step cap; each run is seeded with ``seed`` (model init, FAVOR+
    features, training data); the probe reads ``probe_sequences`` fresh sequences drawn from ``seed``."""

    runs: tuple[Run, ...]
    train: RetrieverTrainConfig = field(default_factory=RetrieverTrainConfig)
    probe_sequences: int = 20
    seed: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


LINEAR = Model("elu1")  # the paper's "Linear" (Katharopoulos et al.'s elu+1), d_dot = 64
DPFP = [Model("dpfp", dpfp_nu=nu) for nu in (1, 2, 3)]  # d_dot = 128, 256, 384
FAVOR = [Model("favor", favor_features=m) for m in (64, 128, 512)]  # d_dot = 128, 256, 1024; features fixed
FAVOR_PAPER = [Model("favor", favor_features=m, favor_redraw=True) for m in (64, 128, 512)]  # redrawn per call
SOFTMAX = Model("softmax")
SETTING1_MODELS = (LINEAR, *DPFP, *FAVOR, *FAVOR_PAPER, SOFTMAX)
SETTING2_MODELS = tuple(Model(m.feature_map, update, m.dpfp_nu) for m in (LINEAR, DPFP[0], DPFP[1])
                        for update in ("sum", "delta"))
# The paper's baseline in setting 2 (its Figure 3): the update rule of Fast Weight Memory (Schlag, Munkhdalai &
# Schmidhuber 2021) as its code runs it (RetrieverConfig(update="fwm")); appended so the earlier runs keep their order.
FWM_MODELS = tuple(Model(m.feature_map, "fwm", m.dpfp_nu) for m in (LINEAR, DPFP[0], DPFP[1]))

# The S grids and the 2000-step cap fit a ~50-minute single-thread budget on a 2-core CPU (see README); the
# paper swept S in steps of 20 up to 600 (setting 1) and 200 (setting 2) with up to 100k steps on a GPU.
SETTING1_S = (20, 40, 60, 120, 240)
SETTING1_S_BY_MODEL = {
    **{m: (20, 40, 60, 120) for m in FAVOR},  # the paper's FAVOR+ loss is 0.5 (nothing learned) from S = 80 on
    **{m: (20, 40, 60) for m in FAVOR_PAPER},
    **{m: SETTING1_S + (360,) for m in (DPFP[1], DPFP[2], SOFTMAX)},  # 360: between DPFP-2's and DPFP-3's capacity
}
SETTING2_S = (20, 40, 80)

FULL = Study(
    runs=tuple(Run(1, S, m) for m in SETTING1_MODELS for S in SETTING1_S_BY_MODEL.get(m, SETTING1_S))
    + tuple(Run(2, S, m) for m in SETTING2_MODELS for S in SETTING2_S)
    + tuple(Run(2, S, m) for m in FWM_MODELS for S in SETTING2_S),
    train=RetrieverTrainConfig(max_steps=2000, seed=1),
)

QUICK = Study(
    runs=(Run(1, 6, LINEAR), Run(1, 12, LINEAR), Run(1, 12, DPFP[1]), Run(1, 12, FAVOR[0]), Run(1, 12, FAVOR_PAPER[0]),
          Run(1, 12, SOFTMAX),
          Run(2, 6, Model("elu1", "sum")), Run(2, 6, Model("elu1", "delta")), Run(2, 6, Model("elu1", "fwm"))),
    train=RetrieverTrainConfig(max_steps=200, eval_every=50, eval_sequences=4, seed=1),
    probe_sequences=4,
)


# Part "favor" (issue 18; its own results in results/favor/): which of the three things that differ between
# "FAVOR+ (m)" and "FAVOR+ (m, redrawn)" matters? {redrawn, fixed} × {orthogonal, Gaussian} features with the
# input unscaled, as the paper's code runs it; then the same 2 × 2 with the input scaled by d^-¼ (the third
# factor, run last). m = 64 (d_dot = 128); S = 20 (where redrawn FAVOR+ already fails), 60 (where fixed FAVOR+
# still succeeds) and 120 (where it fails); seeds 1–3 (seed 1 of the redrawn-orthogonal-unscaled cell is the
# main study's s1-S*-favor64-redraw-sum run again). Fixed before any of these runs was made.
FAVOR_PART_S = (20, 60, 120)
FAVOR_PART_SEEDS = (1, 2, 3)
FAVOR_CELLS = tuple(Model("favor", favor_features=64, favor_redraw=redraw, favor_orthogonal=orthogonal,
                          favor_scale=scale)
                    for scale in (False, True) for redraw in (True, False) for orthogonal in (True, False))
FAVOR_PART = Study(
    runs=tuple(Run(1, S, m, seed) for m in FAVOR_CELLS for seed in FAVOR_PART_SEEDS for S in FAVOR_PART_S),
    train=FULL.train,
)
FAVOR_PART_QUICK = Study(
    runs=tuple(Run(1, 8, m, seed) for m in FAVOR_CELLS[:4] for seed in (1, 2)),
    train=RetrieverTrainConfig(max_steps=100, eval_every=50, eval_sequences=4, seed=1),
    probe_sequences=4,
)

# Part "uncapped" (issue 18; its own results in results/uncapped/): setting 1 near each capacity, trained to the
# paper's stopping rule (eval loss ≤ 0.001, 10 evaluations without a new best, or 100 000 steps) instead of our
# 2000-step cap, on a 20-step S grid, seeds 1–3. The grid spans each model's capacity in the paper (Linear 40,
# DPFP-1 120, DPFP-2 260, DPFP-3 380; its Sec. 6.1) and in our capped main study (40, 60, 120, 240), up to
# one or two steps past the paper's first failure: where our capacity lands cannot be outside it unless a
# model fails at its lowest S or succeeds at its highest, which the tables say. Fixed before any run was made.
UNCAPPED_GRID = {
    LINEAR: tuple(range(40, 81, 20)),      # paper: 40 (fails at 60); ours capped: 40
    DPFP[0]: tuple(range(60, 161, 20)),    # paper: 120; ours capped: 60 (S = 120 at 0.0128 after 2000 steps)
    DPFP[1]: tuple(range(120, 301, 20)),   # paper: 260; ours capped: 120 (S = 240 at 0.0174)
    DPFP[2]: tuple(range(240, 421, 20)),   # paper: 380; ours capped: 240 (S = 360 at 0.0458)
}
UNCAPPED_BOUNDARY = {LINEAR: 50, DPFP[0]: 130, DPFP[1]: 270, DPFP[2]: 390}  # between the paper's last success and first failure
UNCAPPED_SEEDS = (1, 2, 3)


def uncapped_order(grid: dict[Model, tuple[int, ...]], boundary: dict[Model, int],
                   seeds: tuple[int, ...]) -> tuple[Run, ...]:
    """Seed by seed; within a seed the cells nearest the paper's capacity boundary first (the ones that decide
    each capacity), then outwards one 20-step ring at a time, and within a ring the cheapest model first."""
    rank = {m: i for i, m in enumerate(grid)}  # LINEAR, DPFP-1, -2, -3: cost per step grows with d_dot and S
    return tuple(Run(1, S, m, seed) for seed in seeds
                 for S, m in sorted(((S, m) for m in grid for S in grid[m]),
                                    key=lambda c: (abs(c[0] - boundary[c[1]]) // 20, rank[c[1]], c[0])))


UNCAPPED_PART = Study(
    runs=uncapped_order(UNCAPPED_GRID, UNCAPPED_BOUNDARY, UNCAPPED_SEEDS),
    train=RetrieverTrainConfig(max_steps=100_000, seed=1),  # the paper's protocol, cap included
)
UNCAPPED_PART_QUICK = Study(
    runs=uncapped_order({LINEAR: (6, 12), DPFP[0]: (6, 12)}, {LINEAR: 9, DPFP[0]: 9}, (1, 2)),
    train=RetrieverTrainConfig(max_steps=300, eval_every=50, eval_sequences=4, patience=3, seed=1),
    probe_sequences=4,
)
PARTS = {"main": (FULL, QUICK), "favor": (FAVOR_PART, FAVOR_PART_QUICK), "uncapped": (UNCAPPED_PART, UNCAPPED_PART_QUICK)}
