"""Datasets, the training loop (single device and torchrun DDP) and evaluation."""
