"""Ablation sweeps: spec (YAML -> trials), tracking (MLflow), runner (Ray Tune); the command is ajepa.cli.sweep.

Nothing is imported here so that ``ajepa.sweep.spec`` stays free of Ray, MLflow and torch.
"""
