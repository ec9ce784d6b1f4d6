"""The reports' experiments as runnable specs (``python -m coursework.mlp_cw2 list``)."""
