"""Label-noise methods (ELR, mixup); the noise itself is data/label_noise.py."""
