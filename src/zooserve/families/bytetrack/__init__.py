"""Weightless trackers that link another model's detections (ByteTrack from `trackers`)."""
