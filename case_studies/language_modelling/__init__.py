"""Language modelling with fast weight programmers (Schlag, Irie & Schmidhuber 2021) at CPU scale:
``python -m case_studies.language_modelling [--quick]``. See README.md."""
