"""Benchmarks of zooserve, kept outside the service package and off its request path.

`zooserve bench` imports these lazily: models (memory, load, s/frame, unload recovery, adapter vs
pipeline vs HTTP), zoo (every enabled zoo model; model-major vs naive order), track (tracked
frames/s and session memory per tracker); report holds the tables they share.
"""
