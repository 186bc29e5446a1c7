"""Finding and loading models: backbones by name, folder or hub id; saved encoders; caches.

``resolve`` turns what a user typed (``default``, ``smollm2-135m``, ``org/name``, a folder)
into a backbone plus adapters; ``backbone`` loads safetensors weights (never pickle);
``converted`` and ``merged`` build the on-disk caches that make warm loads fast, and
``cache`` describes every cache key in one place.
"""
