"""Poisoning-robust contrastive pre-training: CLIP losses, RoCLIP pool, SafeCLIP split,
CleanCLIP objective, optimiser pieces and augmentations."""
