"""The engine: run configuration and presets, the training loop, evaluation, pretraining,
the run store and the sweeps (see DESIGN.md, "Layers")."""
