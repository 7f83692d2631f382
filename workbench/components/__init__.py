"""The parts models and mixers are built from (norms, MLPs, embeddings, short convolutions, feature maps),
one concept per file; they import nothing of the workbench but each other. The mixers are in
:mod:`workbench.mixers`, the block that combines a mixer and an MLP in :mod:`workbench.block`."""
