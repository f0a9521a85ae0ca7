"""Job business rules behind the REST v2 jobs API and the CLI's embedded mode.

Shapes follow OpenPAI's rest-server (openpai.md §2.3-2.5) field for field, so OpenPAI clients work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..backends.base import Backend, TaskHandle
from ..controller.controller import add_event, gang_request, new_attempt
from ..controller.states import STOP_CODES, FState, pai_attempt_state, pai_job_state, pai_states_to_fc
from ..errors import (
    ConflictJobError,
    ForbiddenUserError,
    InvalidParametersError,
    InvalidProtocolError,
    NoJobConfigError,
    NoJobError,
    NoTagError,
    NoTaskError,
    NoTaskLogError,
)
from ..protocol import masked_config_text, parse_job
from ..protocol.spec import spec_from_json, spec_to_json
from ..runtime import exit_spec
from ..scheduler.base import Scheduler, SchedulerError
from ..store.db import Store, now_ms
from ..store.models import Event, Job, JobAttempt, JobTag, Task, TaskAttempt
from .authz import NOT_SHARING_GROUPS, Caller, can_change_job, can_see_job

MAX_LIMIT = 50000
DEFAULT_LIMIT = 5000
ORDER_FIELDS = {
    "jobName": Job.name,
    "submissionTime": Job.submission_time,
    "username": Job.username,
    "vc": Job.virtual_cluster,
    "retries": Job.retries,
    "totalTaskNumber": Job.total_tasks,
    "totalGpuNumber": Job.total_gpus,
    "state": Job.state,
    "completionTime": Job.completed_time,
    "jobPriority": Job.priority,
}
LOG_NAMES = ("stdout", "stderr", "all")
SUBMISSION_LIMIT_BYTES = 1024 * 1024


@dataclass
class ListQuery:
    username: list[str] | None = None
    vc: list[str] | None = None
    state: list[str] | None = None
    keyword: str | None = None
    tags_contain: list[str] | None = None
    tags_not_contain: list[str] | None = None
    job_priority: list[str] | None = None
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    order: str = "submissionTime,DESC"
    with_total_count: bool = False


def _csv(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidParametersError(f"{name}: must be an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise InvalidParametersError(f"{name}: must be between {lo} and {hi}, got {n}")
    return n


def parse_list_query(args: dict[str, str | None]) -> ListQuery:
    """Query-string arguments of GET jobs -> ListQuery, with 400s that name the parameter."""
    q = ListQuery(
        username=_csv(args.get("username")),
        vc=_csv(args.get("vc")),
        state=_csv(args.get("state")),
        keyword=args.get("keyword") or None,
        tags_contain=_csv(args.get("tagsContain")),
        tags_not_contain=_csv(args.get("tagsNotContain")),
        job_priority=_csv(args.get("jobPriority")),
        offset=_int("offset", args.get("offset"), 0, 0, 2**31 - 1),
        limit=_int("limit", args.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        order=args.get("order") or "submissionTime,DESC",
        with_total_count=(args.get("withTotalCount") or "").lower() == "true",
    )
    for s in q.state or []:
        if s not in ("WAITING", "RUNNING", "STOPPING", "STOPPED", "SUCCEEDED", "FAILED", "UNKNOWN"):
            raise InvalidParametersError(
                f"state: unknown state {s!r} (use WAITING, RUNNING, STOPPING, STOPPED, SUCCEEDED, FAILED)"
            )
    field, _, direction = q.order.partition(",")
    if field not in ORDER_FIELDS:
        raise InvalidParametersError(f"order: unknown field {field!r} (one of {', '.join(ORDER_FIELDS)})")
    if direction.upper() not in ("", "ASC", "DESC"):
        raise InvalidParametersError(f"order: direction must be ASC or DESC, got {direction!r}")
    return q


def _debug_id(key: str) -> str:
    return hashlib.md5(key.encode()).hexdigest()


class JobService:
    def __init__(
        self,
        store: Store,
        *,
        scheduler: Scheduler | None = None,
        backend: Backend | None = None,
        wake: Callable[[], None] | None = None,
    ):
        self.store = store
        self.scheduler = scheduler
        self.backend = backend
        self.wake = wake or (lambda: None)
        # Set by the server (app.py); the CLI's embedded engine has one local user and no checks.
        self.accounts: Any = None  # AccountService
        self.storages: Any = None  # StorageService
        self.visibility = "all"  # all | group | own (c.OpenXPU.job_visibility)

    # ------------------------------------------------------------------ authorization
    def authorize(self, key: str, caller: Caller, *, change: bool = False) -> None:
        """404 when the caller may not see the job (its existence is not revealed), 403 when it may
        see it but not stop or tag it (owner or admin only)."""
        owner = self.owner(key)
        owner_groups = self.accounts.groups_of(owner) if self.accounts and self.visibility == "group" else frozenset()
        if not can_see_job(caller, owner, owner_groups, self.visibility):
            raise NoJobError(f"Job {key} is not found.")
        if change and not can_change_job(caller, owner):
            raise ForbiddenUserError(f"Only {owner} or an admin may change job {key}.")

    def visible_users(self, caller: Caller) -> set[str] | None:
        """Owners whose jobs the caller sees in lists; None = everyone's."""
        if caller.admin or self.visibility == "all":
            return None
        if self.visibility == "group" and self.accounts is not None:
            return self.accounts.users_sharing_groups(caller, NOT_SHARING_GROUPS)
        return {caller.username}

    # ------------------------------------------------------------------ submit
    def submit(
        self,
        username: str,
        source: str | bytes | dict,
        *,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        caller: Caller | None = None,
    ) -> str:
        """Validate, store as WAITING with attempt 0, and wake the engine. Returns `user~name`.

        `parameters` override the job's `parameters:` entries and `name` its name (CLI `-p`, `run`).
        With a `caller` (the API), the job's VC must be granted to one of the caller's groups (403)
        and its `extras.storages` are checked and set up in every task (services/storage.py).
        """
        if isinstance(source, (str, bytes)) and len(source) > SUBMISSION_LIMIT_BYTES:
            raise InvalidProtocolError("", f"job config is larger than {SUBMISSION_LIMIT_BYTES} bytes")
        if parameters or name:
            source = _override(source, parameters or {}, name)
        spec = parse_job(source)
        if caller is not None and self.accounts is not None:
            granted = self.accounts.granted_vcs(caller)
            if granted is not None and spec.virtual_cluster not in granted:
                raise ForbiddenUserError(
                    f"virtualCluster: {spec.virtual_cluster} is not granted to any of your groups "
                    f"(yours: {', '.join(sorted(granted)) or 'none'})"
                )
        if caller is not None and self.storages is not None:
            setup = self.storages.setup_commands(self.storages.job_mounts(caller, spec.extras))
            for role in spec.task_roles.values():
                role.commands = [*setup, *role.commands]
        if isinstance(source, bytes):
            config_text = source.decode("utf-8", "replace")
        elif isinstance(source, str):
            config_text = source
        else:
            config_text = yaml.safe_dump(source, sort_keys=False)
        t = now_ms()
        job = Job(
            username=username,
            name=spec.name,
            virtual_cluster=spec.virtual_cluster,
            priority_class=spec.priority_class,
            priority=spec.priority,
            config_text=config_text,
            spec=spec_to_json(spec),
            execution_type="START",
            state=FState.CREATION_PENDING.value,
            submission_time=t,
            total_gpus=spec.total_gpus,
            total_tasks=spec.total_tasks,
            total_task_roles=len(spec.task_roles),
        )
        if self.scheduler is not None:
            try:
                self.scheduler.check(gang_request(job, spec))
            except SchedulerError as e:
                field, _, rule = str(e).partition(": ")
                raise InvalidProtocolError(field if rule else "", rule or str(e)) from None
        with self.store.session() as s:
            if s.scalar(select(Job.id).where(Job.username == username, Job.name == spec.name)) is not None:
                raise ConflictJobError(f"Job name {spec.name} already exists.")
            s.add(job)
            new_attempt(job, 0, spec, t)
            s.flush()
            add_event(
                s, job, "Submitted", f"job submitted to vc {spec.virtual_cluster} ({spec.total_tasks} task(s))"
            )
        self.wake()
        return job.key

    # ------------------------------------------------------------------ read
    def _job(self, s: Session, key: str) -> Job:
        user, sep, name = key.partition("~")
        if not sep or not user or not name:
            raise NoJobError(f"Job {key} is not found (job ids look like <user>~<name>).")
        job = s.scalar(select(Job).where(Job.username == user, Job.name == name))
        if job is None:
            raise NoJobError(f"Job {key} is not found.")
        return job

    def owner(self, key: str) -> str:
        with self.store.session() as s:
            return self._job(s, key).username

    def list(self, q: ListQuery, *, visible: set[str] | None = None) -> list[dict] | dict:
        """Jobs matching `q`; only those of the owners in `visible` when given."""
        with self.store.session() as s:
            stmt = select(Job)
            conds = []
            if visible is not None:
                conds.append(Job.username.in_(visible))
            if q.username:
                conds.append(Job.username.in_(q.username))
            if q.vc:
                conds.append(Job.virtual_cluster.in_(q.vc))
            if q.keyword:
                kw = q.keyword
                conds.append(
                    or_(
                        Job.name.contains(kw, autoescape=True),
                        Job.username.contains(kw, autoescape=True),
                        Job.virtual_cluster.contains(kw, autoescape=True),
                    )
                )
            if q.job_priority:
                conds.append(Job.priority_class.in_([p for p in q.job_priority if p != "default"]))
            if q.state:
                conds.append(or_(*[_state_condition(st) for st in q.state]))
            if q.tags_contain:  # any of the tags, as OpenPAI's rest-server does
                conds.append(Job.tags.any(JobTag.tag.in_(q.tags_contain)))
            for tag in q.tags_not_contain or []:
                conds.append(~Job.tags.any(JobTag.tag == tag))
            if conds:
                stmt = stmt.where(and_(*conds))
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) if q.with_total_count else None
            field, _, direction = q.order.partition(",")
            col = ORDER_FIELDS[field]
            order = col.asc() if direction.upper() == "ASC" else col.desc()
            stmt = stmt.order_by(order, Job.id.desc()).offset(q.offset).limit(q.limit)
            jobs = list(s.scalars(stmt))
            attempts = _current_attempts(s, jobs)
            data = [self._summary(j, attempts.get(j.id)) for j in jobs]
        if q.with_total_count:
            return {"totalCount": total, "data": data}
        return data

    def _summary(self, job: Job, attempt: JobAttempt | None) -> dict:
        code = attempt.exit_code if attempt else None
        return {
            "debugId": _debug_id(job.key),
            "name": job.name,
            "username": job.username,
            "state": pai_job_state(job.state, job.exit_code if job.state == FState.COMPLETED else code),
            "subState": job.state,
            "executionType": job.execution_type,
            "tags": sorted(t.tag for t in job.tags),
            "retries": job.retries,
            "retryDetails": {
                "user": job.accountable_retries,
                "platform": job.retries - job.accountable_retries,
                "resource": 0,
            },
            "retryDelayTime": 0,
            "submissionTime": job.submission_time,
            "createdTime": job.submission_time,
            "launchedTime": job.launched_time,
            "completedTime": job.completed_time,
            "appExitCode": job.exit_code if job.state == FState.COMPLETED else code,
            "virtualCluster": job.virtual_cluster,
            "totalGpuNumber": job.total_gpus,
            "totalTaskNumber": job.total_tasks,
            "totalTaskRoleNumber": job.total_task_roles,
            "jobPriority": job.priority_class,
        }

    def detail(self, key: str, attempt_id: int | None = None) -> dict:
        with self.store.session() as s:
            job = self._job(s, key)
            if attempt_id is None:
                attempt = next(a for a in job.attempts if a.attempt_id == job.attempt_id)
            else:
                attempt = next((a for a in job.attempts if a.attempt_id == attempt_id), None)
                if attempt is None:
                    raise NoJobError(f"Job {key} has no attempt {attempt_id} (attempts 0..{job.attempt_id}).")
            spec = spec_from_json(job.spec)
            latest = attempt.attempt_id == job.attempt_id
            code = attempt.exit_code
            state = pai_job_state(job.state, code) if latest else pai_attempt_state(attempt.state, code)
            summary = self._summary(job, attempt)
            exit_spec_dict = exit_spec.lookup(code).to_dict() if code is not None else None
            trigger_task = None
            if attempt.trigger_role is not None:
                trigger_task = next(
                    (t for t in attempt.tasks if (t.role, t.index) == (attempt.trigger_role, attempt.trigger_index)),
                    None,
                )
            status = {
                "username": job.username,
                "state": state,
                "subState": job.state if latest else attempt.state,
                "executionType": job.execution_type,
                "retries": job.retries,
                "retryDetails": summary["retryDetails"],
                "retryDelayTime": 0,
                "submissionTime": job.submission_time,
                "createdTime": job.submission_time,
                "launchedTime": job.launched_time,
                "completedTime": job.completed_time if latest else attempt.completed_time,
                "attemptId": attempt.attempt_id,
                "attemptState": pai_attempt_state(attempt.state, code),
                "appId": f"{_debug_id(job.key)}-attempt-{attempt.attempt_id}",
                "appProgress": None,
                "appTrackingUrl": "",
                "appCreatedTime": attempt.created_time,
                "appLaunchedTime": attempt.launched_time,
                "appCompletedTime": attempt.completed_time,
                "appExitCode": code,
                "appExitSpec": exit_spec_dict,
                "appExitDiagnostics": attempt.exit_diagnostics,
                "appExitMessages": {
                    "container": None,
                    "runtime": (attempt.exit_messages or {}).get("runtime"),
                    "launcher": attempt.trigger_message,
                },
                "appExitTriggerMessage": attempt.trigger_message,
                "appExitTriggerTaskRoleName": attempt.trigger_role,
                "appExitTriggerTaskIndex": attempt.trigger_index,
                "appExitType": exit_spec_dict["type"] if exit_spec_dict else None,
                "virtualCluster": job.virtual_cluster,
                # OpenXPU extras: why a WAITING job waits, and where it queues.
                "waitReason": attempt.wait_reason,
                "dockerImages": spec.docker_images,
            }
            if trigger_task is not None and trigger_task.attempts:
                status["appExitMessages"]["container"] = trigger_task.attempts[-1].exit_diagnostics
            roles: dict[str, Any] = {}
            for role in spec.task_roles:
                tasks = [t for t in attempt.tasks if t.role == role]
                roles[role] = {
                    "taskRoleStatus": {"name": role},
                    "taskStatuses": [self._task_status(job, attempt, t) for t in sorted(tasks, key=lambda t: t.index)],
                }
            return {
                "debugId": summary["debugId"],
                "name": job.name,
                "tags": summary["tags"],
                "jobPriority": job.priority_class,
                "jobStatus": status,
                "taskRoles": roles,
            }

    def _task_status(self, job: Job, attempt: JobAttempt, t: Task) -> dict:
        ta = t.attempts[-1] if t.attempts else None
        base = {
            "taskIndex": t.index,
            "taskUid": t.uid,
            "taskState": pai_attempt_state(t.state, t.exit_code if t.state == FState.COMPLETED else None),
            "retries": t.retries,
            "accountableRetries": t.accountable_retries,
            "createdTime": t.created_time,
            "launchedTime": t.launched_time,
            "completedTime": t.completed_time,
        }
        base.update(self._attempt_fields(job, attempt, t, ta))
        base["attemptId"] = t.attempt_id
        base["attemptState"] = pai_attempt_state(ta.state, ta.exit_code) if ta else base["taskState"]
        return base

    def _attempt_fields(self, job: Job, attempt: JobAttempt, t: Task, ta: TaskAttempt | None) -> dict:
        code = ta.exit_code if ta else None
        return {
            "containerId": f"{t.uid}-{ta.attempt_id}" if ta else None,
            "containerIp": t.host_ip,
            "containerNodeName": t.node,
            "containerPorts": {k: ",".join(str(p) for p in v) for k, v in (t.ports or {}).items()},
            "containerGpus": ",".join(str(g) for g in (t.gpus or [])) or None,
            "containerLog": (
                f"/openxpu/api/v2/jobs/{job.key}/attempts/{attempt.attempt_id}/taskRoles/{t.role}"
                f"/taskIndex/{t.index}/attempts/{ta.attempt_id}/logs"
                if ta
                else ""
            ),
            "containerExitCode": code,
            "containerExitSpec": exit_spec.lookup(code).to_dict() if code is not None else None,
            "containerExitDiagnostics": ta.exit_diagnostics if ta else None,
            "originUserExitCode": ta.origin_exit_code if ta else None,
            "currentAttemptCreatedTime": ta.created_time if ta else None,
            "currentAttemptLaunchedTime": ta.launched_time if ta else None,
            "currentAttemptCompletedTime": ta.completed_time if ta else None,
        }

    def task_attempts(self, key: str, attempt_id: int, role: str, index: int) -> dict:
        with self.store.session() as s:
            job = self._job(s, key)
            attempt, task = self._task(job, attempt_id, role, index)
            return {
                "taskIndex": task.index,
                "taskUid": task.uid,
                "taskState": pai_attempt_state(task.state, task.exit_code),
                "retries": task.retries,
                "accountableRetries": task.accountable_retries,
                "createdTime": task.created_time,
                "launchedTime": task.launched_time,
                "completedTime": task.completed_time,
                "username": job.username,
                "jobName": job.name,
                "jobAttemptId": attempt.attempt_id,
                "taskRoleName": role,
                "attempts": [
                    {
                        "attemptId": ta.attempt_id,
                        "attemptState": pai_attempt_state(ta.state, ta.exit_code),
                        **self._attempt_fields(job, attempt, task, ta),
                    }
                    for ta in task.attempts
                ],
            }

    @staticmethod
    def _task(job: Job, attempt_id: int, role: str, index: int) -> tuple[JobAttempt, Task]:
        attempt = next((a for a in job.attempts if a.attempt_id == attempt_id), None)
        if attempt is None:
            raise NoTaskError(f"Job {job.key} has no attempt {attempt_id}.")
        task = next((t for t in attempt.tasks if t.role == role and t.index == index), None)
        if task is None:
            raise NoTaskError(f"Job {job.key} attempt {attempt_id} has no task {role}[{index}].")
        return attempt, task

    def config(self, key: str) -> str:
        with self.store.session() as s:
            job = self._job(s, key)
            if not job.config_text:
                raise NoJobConfigError(f"Config of job {key} is not found.")
            return masked_config_text(job.config_text)

    def events(self, key: str, type_: str | None = None) -> dict:
        if type_ is not None and type_ not in ("Normal", "Warning"):
            raise InvalidParametersError(f"type: must be Normal or Warning, got {type_!r}")
        with self.store.session() as s:
            job = self._job(s, key)
            stmt = select(Event).where(Event.job_id == job.id)
            if type_:
                stmt = stmt.where(Event.type == type_)
            events = list(s.scalars(stmt.order_by(Event.timestamp.desc(), Event.id.desc())))
            data = [
                {
                    "uid": str(e.id),
                    "frameworkName": job.key,
                    "podUid": None,
                    "taskroleName": e.role,
                    "taskName": f"{e.role}-{e.task_index}" if e.role is not None else None,
                    "taskIndex": e.task_index,
                    "jobAttemptId": e.job_attempt,
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                    "firstTimestamp": e.timestamp,
                    "lastTimestamp": e.timestamp,
                    "count": 1,
                    "sourceComponent": "openxpu-controller",
                    "sourceHost": None,
                }
                for e in events
            ]
            return {"totalCount": len(data), "data": data}

    def events_since(self, key: str, after_id: int) -> list[Event]:
        """Events newer than `after_id`, oldest first (for followers)."""
        with self.store.session() as s:
            job = self._job(s, key)
            return list(s.scalars(select(Event).where(Event.job_id == job.id, Event.id > after_id).order_by(Event.id)))

    # ------------------------------------------------------------------ write
    def set_execution_type(self, key: str, value: str) -> None:
        if value not in ("START", "STOP"):
            raise InvalidParametersError(f"value: must be START or STOP, got {value!r}")
        with self.store.session() as s:
            job = self._job(s, key)
            if value == "START":
                return  # jobs start on submit; START is accepted for compatibility
            if job.execution_type == "STOP" or job.state == FState.COMPLETED:
                return
            job.execution_type = "STOP"
            add_event(s, job, "StopRequested", "stop requested by the user")
        self.wake()

    def add_tag(self, key: str, tag: str) -> None:
        if not isinstance(tag, str) or not tag or "," in tag or len(tag) > 255:
            raise InvalidParametersError("value: a tag is a non-empty string of at most 255 characters without commas")
        with self.store.session() as s:
            job = self._job(s, key)
            if tag not in {t.tag for t in job.tags}:
                job.tags.append(JobTag(tag=tag))
                job.version += 1

    def remove_tag(self, key: str, tag: str) -> None:
        with self.store.session() as s:
            job = self._job(s, key)
            row = next((t for t in job.tags if t.tag == tag), None)
            if row is None:
                raise NoTagError(f"Tag {tag} is not found on job {key}.")
            job.tags.remove(row)
            job.version += 1

    # ------------------------------------------------------------------ logs
    def log_path(self, key: str, attempt_id: int, role: str, index: int, task_attempt: int, name: str) -> Path:
        if name not in LOG_NAMES:
            raise NoTaskLogError(f"Unknown log {name!r}: one of {', '.join(LOG_NAMES)}.")
        with self.store.session() as s:
            job = self._job(s, key)
            _, task = self._task(job, attempt_id, role, index)
            ta = next((a for a in task.attempts if a.attempt_id == task_attempt), None)
            if ta is None:
                raise NoTaskLogError(f"Task {role}[{index}] of {key} has no attempt {task_attempt} (not started yet?).")
            work_dir = ta.work_dir
        files = self.backend.log_files(TaskHandle(work_dir)) if self.backend else {}
        path = Path(files.get(name) or Path(work_dir) / name)
        if not path.exists():
            raise NoTaskLogError(f"Log {name} of task {role}[{index}] is not available yet.")
        return path

    def job_state(self, key: str) -> tuple[str, int, int | None]:
        """(PAI state, version, exit code) — cheap enough to poll."""
        with self.store.session() as s:
            job = self._job(s, key)
            attempt = next(a for a in job.attempts if a.attempt_id == job.attempt_id)
            code = job.exit_code if job.state == FState.COMPLETED else attempt.exit_code
            return pai_job_state(job.state, code), job.version, code

    def running_tasks(self, key: str) -> Iterator[tuple[str, int, int, int, str]]:
        """(role, index, job attempt, task attempt, work dir) of every task attempt started so far."""
        with self.store.session() as s:
            job = self._job(s, key)
            rows = [
                (t.role, t.index, a.attempt_id, ta.attempt_id, ta.work_dir)
                for a in job.attempts
                for t in a.tasks
                for ta in t.attempts
            ]
        yield from rows


def _state_condition(pai_state: str):
    states, cls = pai_states_to_fc(pai_state)
    cond = Job.state.in_(states)
    if cls == "SUCCEEDED":
        cond = and_(cond, Job.exit_code == 0)
    elif cls == "STOPPED":
        cond = and_(cond, Job.exit_code.in_(STOP_CODES))
    elif cls == "FAILED":
        cond = and_(cond, Job.exit_code.notin_([0, *STOP_CODES]))
    elif cls in ("stop", "not-stop"):
        attempt_code = (
            select(JobAttempt.exit_code)
            .where(JobAttempt.job_id == Job.id, JobAttempt.attempt_id == Job.attempt_id)
            .scalar_subquery()
        )
        stopping = and_(Job.state.in_(states - {FState.RUNNING.value}), attempt_code.in_(STOP_CODES))
        cond = stopping if cls == "stop" else and_(cond, ~stopping)
    return cond


def _current_attempts(s: Session, jobs: list[Job]) -> dict[int, JobAttempt]:
    if not jobs:
        return {}
    rows = s.scalars(
        select(JobAttempt).where(
            or_(*[and_(JobAttempt.job_id == j.id, JobAttempt.attempt_id == j.attempt_id) for j in jobs])
        )
    )
    return {a.job_id: a for a in rows}


def _override(source: str | bytes | dict, parameters: dict[str, Any], name: str | None) -> dict:
    """Override `parameters:` entries and the name before validation."""
    from ..protocol import load_text

    data = load_text(source) if isinstance(source, (str, bytes)) else dict(source)
    if parameters:
        params = dict(data["parameters"]) if isinstance(data.get("parameters"), dict) else {}
        params.update(parameters)
        data["parameters"] = params
    if name:
        data["name"] = name
    return data


def env_username() -> str:
    """The single-user identity: the OS login name, stable across restarts and tokens."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or "user"
