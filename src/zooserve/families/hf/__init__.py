"""Families whose model is a transformers checkpoint (plus sentence-transformers, built on it).

Each file is one family over `adapter.TransformersAdapter` and one kind's contract.
"""
