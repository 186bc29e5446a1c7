"""Training with LoRA: MNTP, SimCSE and the supervised contrastive stage.

Adapters it produces are stored with :mod:`ragkit.encoder.adapters`.
"""
