"""Config entries for the models whose weights ship inside packages (no hub, no tiny build):
shared by the subprocess-server tests and the soak benchmark."""

from __future__ import annotations

from typing import Any


def cascade(file: str, label: str) -> dict[str, Any]:
    return {
        "model_id": f"opencv:{file}",
        "family": "opencv_cascade",
        "framework": "opencv",
        "options": {"label": label},
    }


def offline_models() -> dict[str, dict[str, Any]]:
    """hog, face, plate (OpenCV), mtcnn (facenet-pytorch), ocr (RapidOCR), hog-bytetrack."""
    return {
        "hog": {"model_id": "opencv:hog_people", "family": "opencv_hog", "framework": "opencv"},
        "face": cascade("haarcascade_frontalface_default.xml", "face"),
        "plate": cascade("haarcascade_russian_plate_number.xml", "plate"),
        "mtcnn": {"model_id": "facenet-pytorch:mtcnn", "family": "mtcnn"},
        "ocr": {
            "model_id": "rapidocr:ppocr",
            "family": "rapidocr",
            "framework": "onnx",
            "category": "ocr",
        },
        "hog-bytetrack": {
            "model_id": "builtin:bytetrack",
            "family": "detection_tracker",
            "category": "tracking",
            "options": {"detector": "hog"},
        },
    }
