"""MQAR (Zoology): DeltaNet vs linear attention vs softmax attention, and where recall breaks.

    python -m case_studies.mqar [--quick] [--out DIR] [--checkpoints DIR]

See ``README.md`` in this directory for the protocol, the deviations from Zoology and the results.
"""
