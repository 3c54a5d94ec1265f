"""Tests of the contrastive (CLIP poisoning/defense) kernels."""
