"""Poisoning attacks: backdoor triggers and targeted/backdoor caption poisoning for CLIP."""
