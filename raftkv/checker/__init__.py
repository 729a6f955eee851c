"""History checkers for raftkv (TESTING.md §5): oracle A (WGL linearizability per key) and
oracle B (revision-order replay).

Owns nothing itself: it re-exports the public names of the submodules. The package is stdlib
only and imports nothing from the rest of raftkv, so it can judge any implementation.
"""

from raftkv.checker.history import (
    CasIn,
    CasOut,
    DeleteIn,
    DeleteOut,
    HistoryBuilder,
    Input,
    Kind,
    Op,
    Outcome,
    Output,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    load_jsonl,
    save_jsonl,
)
from raftkv.checker.models import KeyState, RegisterModel
from raftkv.checker.revorder import Anomaly, AnomalyKind, check_revision_order
from raftkv.checker.wgl import CheckResult, Model, PartitionResult, Verdict, check, check_partition

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "CasIn",
    "CasOut",
    "CheckResult",
    "DeleteIn",
    "DeleteOut",
    "HistoryBuilder",
    "Input",
    "KeyState",
    "Kind",
    "Model",
    "Op",
    "Outcome",
    "Output",
    "PartitionResult",
    "PutIn",
    "PutOut",
    "ReadIn",
    "ReadOut",
    "RegisterModel",
    "Verdict",
    "check",
    "check_partition",
    "check_revision_order",
    "load_jsonl",
    "save_jsonl",
]
