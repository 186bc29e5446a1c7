"""Adapters that let other frameworks use ragkit encoders and indexes."""
