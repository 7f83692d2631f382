"""Paulo et al. 2024's three questions ("Does transformer interpretability transfer to RNNs?") at CPU scale:
tuned vs logit lens, CAA steering on the residual vs the state, a latent-knowledge probe on a quirky task.
``python -m case_studies.transfer``."""
