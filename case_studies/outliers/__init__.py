"""Outlier features over training — pre-norm vs Outlier Protected block, AdamW vs SOAP, softmax vs delta
rule — and what they cost under W8A8 quantisation. ``python -m case_studies.outliers [--quick]``."""
