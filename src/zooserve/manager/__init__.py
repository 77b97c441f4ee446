"""The model manager: the one owner of loaded models (see core.py), its scheduler
(scheduler.py, policy.py) and its claims ledger (claims.py)."""

from zooserve.manager.claims import Claim, Ledger, Reclaim
from zooserve.manager.core import ModelManager, default_adapter_factory
from zooserve.manager.state import ModelState, Status

__all__ = [
    "Claim",
    "Ledger",
    "ModelManager",
    "ModelState",
    "Reclaim",
    "Status",
    "default_adapter_factory",
]
