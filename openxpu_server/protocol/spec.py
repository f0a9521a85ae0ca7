"""The normalized job spec that the protocol layer hands to the rest of the engine.

`protocol.parse_job` turns a user's YAML/JSON into a `JobSpec`: schema-checked, defaults applied,
deployments merged and `<% $... %>` references rendered. Everything downstream (store, scheduler,
controller, backends) reads this, never the raw protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Priority classes of extras.hivedScheduler.jobPriorityClass and their numeric value (openpai.md §1.5).
PRIORITY_VALUES: dict[str, int] = {"crit": 120, "prod": 100, "test": 10, "oppo": -1}
DEFAULT_PRIORITY_CLASS = "test"


@dataclass
class TaskRoleSpec:
    name: str
    instances: int
    # Effective completion thresholds, FC semantics: -1 disables the threshold.
    # The protocol's null/0 defaults are already applied (minFailed -> 1, minSucceeded -> instances).
    min_failed_instances: int
    min_succeeded_instances: int
    task_retry_count: int
    docker_image: str  # the prerequisite's uri (recorded and shown; the local backend runs on the host)
    cpu: int
    memory_mb: int
    gpu: int
    ports: dict[str, int]  # label -> count; always includes "ssh" and "http"
    shm_mb: int
    commands: list[str]  # rendered, with the deployment's pre/post commands merged
    prerequisites: list[str] = field(default_factory=list)
    hived: dict[str, Any] = field(default_factory=dict)  # extras.hivedScheduler.taskRoles.<role>


@dataclass
class JobSpec:
    name: str
    virtual_cluster: str
    priority_class: str  # prod | test | oppo | crit
    job_retry_count: int  # -2 disables the fancy retry policy
    gang_allocation: bool
    task_roles: dict[str, TaskRoleSpec]
    docker_images: dict[str, str]  # role -> image uri
    parameters: dict[str, Any]
    secrets: dict[str, Any]
    extras: dict[str, Any]
    protocol: dict[str, Any]  # the validated protocol with defaults applied (secrets intact)

    @property
    def priority(self) -> int:
        return PRIORITY_VALUES[self.priority_class]

    @property
    def total_tasks(self) -> int:
        return sum(r.instances for r in self.task_roles.values())

    @property
    def total_gpus(self) -> int:
        return sum(r.instances * r.gpu for r in self.task_roles.values())


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    """A JSON-safe form of the spec, as kept in the store."""
    from dataclasses import asdict

    return asdict(spec)


def spec_from_json(data: dict[str, Any]) -> JobSpec:
    roles = {name: TaskRoleSpec(**r) for name, r in data["task_roles"].items()}
    return JobSpec(**{**data, "task_roles": roles})
