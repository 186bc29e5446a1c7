"""MNTP and SimCSE training with LoRA (issue #4; not built yet).

Adapters it produces are stored with :mod:`ragkit.encoder.adapters`.
"""
