"""Task pipelines: turn a request into model work through the manager."""
