"""The papers' numbers this study is set beside (from ../shared/REFERENCE.md; see the README for sources).

Merullo, Vatsavaya, Bushnaq & Lewis (2025), OLMo-2 7B, edit of the up and gate projections of layers
23–25 at ρ = 0.6: strict / loose recitation (64-token prefix, 48-token suffix, greedy) and perplexity.
Xu, Bosselut & Schlag (2025): Rouge-L of the recited suffix by prefix offset, 8B model, sequences seen
128 times (≈ 0.18 is chance).
"""

from __future__ import annotations

MERULLO_SOURCE = "Merullo et al. 2025 (OLMo-2 7B, layers 23–25 up+gate, ρ = 0.6)"
MERULLO = [  # method, strict, loose, perplexity
    {"method": "none", "strict": 0.999, "loose": 1.0, "ppl": 19.04},
    {"method": "K-FAC", "strict": 0.034, "loose": 0.088, "ppl": 22.84},
    {"method": "SVD", "strict": 0.030, "loose": 0.068, "ppl": 22.49},
    {"method": "BalancedSubnet", "strict": 0.060, "loose": 0.110, "ppl": 23.59},
]
MERULLO_BASE_PPL = 19.04

XU_SOURCE = "Xu, Bosselut & Schlag 2025 (8B, frequency 128, Rouge-L)"
XU_ROUGE_BY_OFFSET = {0: 0.965, 8: 0.864, 32: 0.652, 128: 0.330, 512: 0.208, 2048: 0.192}
XU_CHANCE = 0.18
