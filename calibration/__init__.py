"""Calibration and evaluation data plumbing, fidelity gate and INT8 calibrators."""
