"""WriteSAE on a bundled checkpoint: rank-one dictionaries of a head's state writes, the substitution test, and an
ordinary SAE on a hook. ``python -m case_studies.write_sae``."""
