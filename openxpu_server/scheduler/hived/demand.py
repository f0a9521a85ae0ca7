"""What a gang asks for, in leaf cells: request parsing shared by `check` and `schedule`.

OpenPAI's rest-server turns a task role into a HiveD pod spec: `skuNum` leaf cells of `skuType` when
given, else enough leaf cells of the chosen SKU to cover the task's GPUs, CPUs and memory. The same
rule is applied per chain here, because without `skuType` every chain is a candidate and each may
have a different SKU.
"""

from __future__ import annotations

import math

from ..base import TaskRequest
from ..layout_model import SkuType


def leaves_for(task: TaskRequest, sku: SkuType, sku_num: int | None) -> int | None:
    """Leaf cells of `sku` one task needs (at least 1), or None when the SKU cannot serve it at all.

    Like OpenPAI's rest-server, the count is recomputed from the task's resources; an explicit
    `skuNum` can ask for more cells, never for fewer than the resources need.
    """
    if task.gpu > 0 and sku.gpu <= 0:
        return None
    n = 1
    if task.gpu > 0:
        n = max(n, math.ceil(task.gpu / sku.gpu))
    if task.cpu > 0 and sku.cpu > 0:
        n = max(n, math.ceil(task.cpu / sku.cpu))
    if task.memory_mb > 0 and sku.memory_mb > 0:
        n = max(n, math.ceil(task.memory_mb / sku.memory_mb))
    return max(n, sku_num) if sku_num is not None else n


def role_spec(hived: dict | None, role: str) -> dict:
    """`extras.hivedScheduler.taskRoles.<role>` as a dict ({} when absent or malformed)."""
    roles = (hived or {}).get("taskRoles") if isinstance(hived, dict) else None
    spec = roles.get(role) if isinstance(roles, dict) else None
    return spec if isinstance(spec, dict) else {}
