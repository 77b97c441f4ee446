"""Families on ultralytics (AGPL-3.0, an optional extra imported only inside `load`)."""
