"""The names of the training recipes (workbench/training/recipes.py), importable without torch, so that
``workbench train-recipe --help`` can list them; recipes.py checks at import that the two agree."""

RECIPE_NAMES = ("toy-delta", "toy-gated-delta", "toy-linear", "toy-softmax", "toy-rec-delta", "toy-delta-rnn",
                "toy-delta-lstm", "toy-srwm", "toy-fwm")
