"""Families that run ONNX models on ONNX Runtime (OSNet re-id, RapidOCR's PP-OCR)."""
