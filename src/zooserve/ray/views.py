"""Cluster-wide /health and /models/info: each replica's own answer, merged.

Every replica reports what its in-process app answers (detailed: the key is held) to the
directory (directory.py) twice a second; the ingress merges the fresh reports. Totals are
sums over replicas; `replicas` says which replica holds what, with its budget and use. A
caller without the API key (when one is configured) sees the public fields only.
"""

from __future__ import annotations

from typing import Any

from zooserve.api.schemas import PublicHealthResponse

#: /health's fields a caller without the key may see: those of the single server's answer.
PUBLIC_HEALTH = tuple(PublicHealthResponse.model_fields)


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _devices(views: list[dict[str, Any]]) -> str:
    return ",".join(dict.fromkeys(str(v.get("device")) for v in views)) or "none"


def merge_health(reports: list[dict[str, Any]], detailed: bool) -> dict[str, Any]:
    """One /health for the cluster: `status` is healthy while any replica reports."""
    views = [r["health"] for r in reports]
    merged: dict[str, Any] = {
        "status": "healthy" if views else "unavailable",
        "device": _devices(views),
        "gpu_memory_allocated": _sum([v.get("gpu_memory_allocated") for v in views]),
        "gpu_memory_reserved": _sum([v.get("gpu_memory_reserved") for v in views]),
        "memory_budget_mb": _sum([v.get("memory_budget_mb") for v in views]) or 0.0,
        "memory_used_mb": _sum([v.get("memory_used_mb") for v in views]) or 0.0,
        "process_rss_mb": _sum([v.get("process_rss_mb") for v in views]) or 0.0,
        "nvml": None,
    }
    replicas = []
    for report in reports:
        view = report["health"]
        entry = {
            "replica": report["replica"],
            "device": view.get("device"),
            "memory_budget_mb": view.get("memory_budget_mb"),
            "memory_used_mb": view.get("memory_used_mb"),
        }
        if detailed:
            entry |= {
                "node": report.get("node"),
                "pid": report.get("pid"),
                "models_loaded": view.get("models_loaded", []),
                "ray_model_ids": report.get("ray_model_ids", []),
                "scheduler": view.get("scheduler"),
                "nvml": view.get("nvml"),
            }
        replicas.append(entry)
    merged["replicas"] = replicas
    if detailed:
        merged["models_loaded"] = sorted({m for v in views for m in v.get("models_loaded", [])})
        merged["engines"] = next((v["engines"] for v in views if v.get("engines")), None)
        merged["scheduler"] = None  # one queue per replica: see replicas[].scheduler
    return merged


def merge_models_info(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One /models/info: a model's `status` is its best status on any replica, and
    `replicas` names where it is loaded; events are tagged with their replica."""
    infos = [r["models_info"] for r in reports]
    models: dict[str, dict[str, Any]] = {}
    rank = {"loaded": 3, "loading": 2, "unloading": 1}
    for report, info in zip(reports, infos, strict=True):
        for name, model in info.get("models", {}).items():
            merged = models.setdefault(name, {**model, "replicas": []})
            if model.get("status") == "loaded":
                merged["replicas"].append(report["replica"])
            if rank.get(str(model.get("status")), 0) > rank.get(str(merged.get("status")), 0):
                merged |= {k: v for k, v in model.items() if k != "replicas"}
    events = sorted(
        (
            {**e, "replica": r["replica"]}
            for r, i in zip(reports, infos, strict=True)
            for e in i.get("events", [])
        ),
        key=lambda e: e.get("time") or 0,
    )
    first = infos[0] if infos else {}
    return {
        "available_models": first.get("available_models", {}),
        "loaded_models": sorted({m for i in infos for m in i.get("loaded_models", [])}),
        "device": _devices(infos),
        "memory_budget_mb": _sum([i.get("memory_budget_mb") for i in infos]) or 0.0,
        "memory_used_mb": _sum([i.get("memory_used_mb") for i in infos]) or 0.0,
        "models": models,
        "events": events,
        "engines": first.get("engines"),
        "replicas": [
            {
                "replica": r["replica"],
                "device": i.get("device"),
                "memory_budget_mb": i.get("memory_budget_mb"),
                "memory_used_mb": i.get("memory_used_mb"),
                "loaded_models": i.get("loaded_models", []),
            }
            for r, i in zip(reports, infos, strict=True)
        ],
    }


def public_health(merged: dict[str, Any]) -> dict[str, Any]:
    return {k: merged[k] for k in (*PUBLIC_HEALTH, "replicas")}
