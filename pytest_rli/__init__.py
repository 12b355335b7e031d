"""pytest-rli: interpretability assertions for RL policies as pytest tests (the plugin over :mod:`rli`)."""
