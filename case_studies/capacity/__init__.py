"""Capacity of fast-weight memories: the synthetic retrieval study of Schlag, Irie & Schmidhuber (2021),
plus a probe of the memory W beside the model's own accuracy. Run: ``python -m case_studies.capacity``."""
