"""Evaluations: classification, worst-group, attack success, zero-shot, linear probe."""
