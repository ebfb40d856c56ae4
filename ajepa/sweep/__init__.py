"""Ablation sweeps: spec (YAML -> trials), tracking (MLflow), runner (Ray Tune), cli.

Nothing is imported here so that ``ajepa.sweep.spec`` stays free of Ray, MLflow and torch.
"""
