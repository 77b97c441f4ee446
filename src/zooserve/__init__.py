"""zooserve: serve a zoo of vision and language models for video analysis within a memory budget."""

__version__ = "0.1.0"
