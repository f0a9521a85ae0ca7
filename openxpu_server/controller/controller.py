"""The reconcile loop: FrameworkController semantics over the store and a backend.

Level-triggered and idempotent: each `tick` reads the recorded state of every unfinished job,
compares it with what the backend says really runs, and moves it one step on. Every transition is
committed to the store *before* the action it announces (launch, stop), so an engine killed at any
line resumes from the store without losing a job or starting a task twice (ARCHITECTURE inv. 1).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..backends.base import Backend, TaskExit, TaskHandle, TaskLaunch
from ..protocol.render import render
from ..protocol.spec import JobSpec, spec_from_json
from ..runtime import analysis, exit_spec
from ..runtime.env import TaskInfo, task_environment
from ..runtime.ports import PortAllocator
from ..scheduler.base import GangPlacement, GangRequest, Scheduler, TaskRequest
from ..store.db import Store, now_ms
from ..store.models import Event, Job, JobAttempt, Task, TaskAttempt
from .policy import (
    AttemptOutcome,
    CompletedTask,
    RetryDecision,
    RoleCompletion,
    attempt_outcome,
    retry_decision,
)
from .states import FState

log = logging.getLogger("openxpu.controller")

STOP_REQUESTED = -210  # StopFrameworkRequested
ATTEMPT_COMPLETION = -220  # FrameworkAttemptCompletion: task killed because its attempt completed
LAUNCH_FAILED = -200  # PodCreationPermanentError
PREEMPTED = -101  # PodExternalDeleted: what a HiveD-preempted job shows; transient, retried uncounted


def new_attempt(job: Job, attempt_id: int, spec: JobSpec, t: int) -> JobAttempt:
    """A fresh job attempt with one pending task per (role, index)."""
    attempt = JobAttempt(attempt_id=attempt_id, state=FState.CREATION_PENDING.value, created_time=t)
    for role in spec.task_roles.values():
        for i in range(role.instances):
            attempt.tasks.append(
                Task(role=role.name, index=i, uid=uuid.uuid4().hex, state=FState.CREATION_PENDING.value, created_time=t)
            )
    job.attempts.append(attempt)
    return attempt


def gang_request(job: Job, spec: JobSpec) -> GangRequest:
    tasks = [
        TaskRequest(r.name, i, r.cpu, r.memory_mb, r.gpu) for r in spec.task_roles.values() for i in range(r.instances)
    ]
    return GangRequest(
        key=job.key,
        attempt=job.attempt_id,
        user=job.username,
        virtual_cluster=job.virtual_cluster,
        priority=job.priority,
        submit_time=job.submission_time,
        tasks=tasks,
        gang=spec.gang_allocation,
        hived=spec.extras.get("hivedScheduler") or {},
    )


def add_event(
    s: Session,
    job: Job,
    reason: str,
    message: str,
    *,
    type: str = "Normal",
    role: str | None = None,
    index: int | None = None,
) -> None:
    s.add(
        Event(
            job_id=job.id,
            type=type,
            reason=reason,
            message=message,
            job_attempt=job.attempt_id,
            role=role,
            task_index=index,
            timestamp=now_ms(),
        )
    )
    job.version += 1


class Controller:
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        backend: Backend,
        *,
        work_root: str | Path,
        ports: PortAllocator | None = None,
        grace_seconds: float = 10.0,
        max_platform_retries: int = 10,
        on_change: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.scheduler = scheduler
        self.backend = backend
        self.work_root = Path(work_root)
        self.ports = ports or PortAllocator()
        self.grace_seconds = grace_seconds
        # FC retries transient failures forever; on one box a task the kernel OOM-kills looks
        # transient (137), so uncounted retries are capped here.
        self.max_platform_retries = max_platform_retries
        self.on_change = on_change or (lambda key: None)
        self._stop_sent: set[str] = set()
        self._restored = False

    # ------------------------------------------------------------------ loop
    def tick(self) -> None:
        """One pass: observe and advance every unfinished job, then place waiting gangs."""
        if not self._restored:
            self._restore()
        for job_id in self._active_job_ids():
            self._reconcile(job_id)
        self._schedule()

    def _active_job_ids(self) -> list[int]:
        with self.store.session() as s:
            return list(
                s.scalars(select(Job.id).where(Job.state != FState.COMPLETED.value).order_by(Job.submission_time))
            )

    def _restore(self) -> None:
        """Rebuild the scheduler's view from placements recorded in the store."""
        items = []
        with self.store.session() as s:
            for job in s.scalars(select(Job).where(Job.state != FState.COMPLETED.value)):
                attempt = self._current(job)
                if attempt.placement and job.state not in (FState.CREATION_PENDING, FState.ATTEMPT_COMPLETED):
                    spec = spec_from_json(job.spec)
                    placement = GangPlacement.from_json(job.key, attempt.attempt_id, attempt.placement)
                    items.append((placement, gang_request(job, spec)))
        self.scheduler.restore_all(items)
        self._restored = True

    @staticmethod
    def _current(job: Job) -> JobAttempt:
        return next(a for a in reversed(job.attempts) if a.attempt_id == job.attempt_id)

    def _set_state(self, job: Job, attempt: JobAttempt, state: FState) -> None:
        job.state = state.value
        attempt.state = state.value
        job.version += 1

    # ------------------------------------------------------------------ per job
    def _reconcile(self, job_id: int) -> None:
        with self.store.new_session() as s:
            job = s.get(Job, job_id)
            if job is None or job.state == FState.COMPLETED:
                return
            attempt = self._current(job)
            before = job.version
            if job.execution_type == "STOP" and job.state not in (
                FState.DELETION_PENDING,
                FState.ATTEMPT_COMPLETED,
            ):
                self._begin_completion(
                    s, job, attempt, AttemptOutcome(STOP_REQUESTED, "User has requested to stop the job")
                )
            if job.state in (FState.CREATION_REQUESTED, FState.PREPARING, FState.RUNNING):
                self._run_tasks(s, job, attempt)
            if job.state == FState.DELETION_PENDING:
                self._delete_tasks(s, job, attempt)
            if job.state == FState.ATTEMPT_COMPLETED:
                self._finish_attempt(s, job, attempt)
            s.commit()
            if job.version != before:
                self.on_change(job.key)

    def _task_infos(self, attempt: JobAttempt) -> dict[tuple[str, int], TaskInfo]:
        return {
            (t.role, t.index): TaskInfo(t.host_ip or "127.0.0.1", dict(t.ports or {}), list(t.gpus or []))
            for t in attempt.tasks
        }

    def _run_tasks(self, s: Session, job: Job, attempt: JobAttempt) -> None:
        spec = spec_from_json(job.spec)
        for task in attempt.tasks:
            state = FState(task.state)
            if state == FState.CREATION_PENDING:
                self._launch(s, job, attempt, task, spec)
            elif state == FState.CREATION_REQUESTED:
                self._recover_launch(s, job, attempt, task, spec)
            elif state == FState.RUNNING:
                ta = task.attempts[-1]
                exit_ = self.backend.poll(self._handle(ta))
                if exit_ is not None:
                    self._task_exited(s, job, task, ta, exit_, spec)
            elif state == FState.ATTEMPT_COMPLETED:
                self._decide_task(s, job, task, spec)
        if job.state == FState.CREATION_REQUESTED and any(t.state == FState.RUNNING for t in attempt.tasks):
            t = now_ms()
            attempt.launched_time = attempt.launched_time or t
            job.launched_time = job.launched_time or t
            self._set_state(job, attempt, FState.RUNNING)
            add_event(s, job, "Running", f"attempt {attempt.attempt_id}: tasks started")
        completed = sorted(
            (t for t in attempt.tasks if t.state == FState.COMPLETED),
            key=lambda t: (t.completed_time or 0, t.id),
        )
        roles = {
            r.name: RoleCompletion(r.instances, r.min_failed_instances, r.min_succeeded_instances)
            for r in spec.task_roles.values()
        }
        diagnostics = {(t.role, t.index): (t.attempts[-1].exit_diagnostics or "") for t in completed if t.attempts}
        outcome = attempt_outcome(
            roles,
            [CompletedTask(t.role, t.index, t.exit_code or 0, diagnostics.get((t.role, t.index), "")) for t in completed],
        )
        if outcome is not None:
            self._begin_completion(s, job, attempt, outcome)

    def _work_dir(self, job: Job, attempt: JobAttempt, task: Task, suffix: str = "") -> str:
        return str(
            self.work_root / job.key / f"attempt-{attempt.attempt_id}" / f"{task.role}-{task.index}"
            / f"try-{task.attempt_id}{suffix}"
        )

    def _launch(self, s: Session, job: Job, attempt: JobAttempt, task: Task, spec: JobSpec) -> None:
        t = now_ms()
        ta = next((a for a in task.attempts if a.attempt_id == task.attempt_id), None)
        if ta is None:
            ta = TaskAttempt(
                attempt_id=task.attempt_id,
                state=FState.CREATION_REQUESTED.value,
                work_dir=self._work_dir(job, attempt, task),
                node=task.node,
                created_time=t,
            )
            task.attempts.append(ta)
        task.state = FState.CREATION_REQUESTED.value
        s.commit()  # persisted before acting: a crash from here on is found by _recover_launch
        self._start(s, job, attempt, task, ta, spec)

    def _start(self, s: Session, job: Job, attempt: JobAttempt, task: Task, ta: TaskAttempt, spec: JobSpec) -> None:
        role = spec.task_roles[task.role]
        try:
            env = task_environment(
                spec,
                username=job.username,
                tasks=self._task_infos(attempt),
                role=task.role,
                index=task.index,
                task_uid=task.uid,
                job_attempt=attempt.attempt_id,
                task_attempt=task.attempt_id,
            )
            handle = self.backend.launch(
                TaskLaunch(
                    key=job.key,
                    role=task.role,
                    index=task.index,
                    job_attempt=attempt.attempt_id,
                    task_attempt=task.attempt_id,
                    script=render("\n".join(role.commands), {"$secrets": spec.secrets}) + "\n",
                    env=env,
                    work_dir=ta.work_dir,
                    gpus=list(task.gpus or []),
                )
            )
        except Exception as e:  # a launch that cannot happen must fail the task, not the engine
            log.exception("launching %s %s-%s failed", job.key, task.role, task.index)
            self._task_exited(s, job, task, ta, TaskExit(LAUNCH_FAILED, diagnostics=f"launch failed: {e}"), spec)
            return
        t = now_ms()
        ta.pid, ta.pid_create_time, ta.node = handle.pid, handle.pid_create_time, handle.node
        ta.state = FState.RUNNING.value
        ta.launched_time = t
        task.state = FState.RUNNING.value
        task.launched_time = task.launched_time or t
        add_event(s, job, "Started", f"task {task.role}-{task.index} started (pid {handle.pid})", role=task.role, index=task.index)
        s.commit()

    def _recover_launch(self, s: Session, job: Job, attempt: JobAttempt, task: Task, spec: JobSpec) -> None:
        """The engine stopped between recording a launch and recording its pid."""
        ta = task.attempts[-1]
        handle = self.backend.recover(self._handle(ta))
        if handle is None:
            # It never started and now never will (the backend claimed its work dir): launch anew.
            ta.work_dir = self._work_dir(job, attempt, task, suffix=f"-r{now_ms()}")
            s.commit()
            self._start(s, job, attempt, task, ta, spec)
            return
        ta.pid, ta.pid_create_time = handle.pid, handle.pid_create_time
        ta.state = FState.RUNNING.value
        ta.launched_time = ta.launched_time or now_ms()
        task.state = FState.RUNNING.value
        task.launched_time = task.launched_time or ta.launched_time
        add_event(s, job, "Adopted", f"task {task.role}-{task.index} re-adopted after restart", role=task.role, index=task.index)
        s.commit()

    @staticmethod
    def _handle(ta: TaskAttempt) -> TaskHandle:
        return TaskHandle(ta.work_dir, ta.pid, ta.pid_create_time, ta.node or "localhost")

    def _task_exited(
        self, s: Session, job: Job, task: Task, ta: TaskAttempt, exit_: TaskExit, spec: JobSpec, code: int | None = None
    ) -> None:
        """Record a task attempt's end (with the runtime's error analysis), then decide its retry."""
        if code is None and 0 < exit_.exit_code < 256:  # >= 256: the launcher failed, not the user
            result = analysis.analyze(exit_.exit_code, exit_.log_tail)
            code = result.exit_code
            ta.exit_messages = {"runtime": result.to_runtime_dict()}
            diag = result.summary()
        else:
            code = exit_.exit_code if code is None else code
            diag = ""
        if exit_.diagnostics:
            diag = f"{exit_.diagnostics}\n{diag}".strip()
        ta.exit_code = code
        ta.origin_exit_code = exit_.exit_code
        ta.exit_diagnostics = diag or None
        ta.completed_time = now_ms()
        ta.state = FState.COMPLETED.value
        task.state = FState.ATTEMPT_COMPLETED.value
        spec_ = exit_spec.lookup(code)
        add_event(
            s,
            job,
            "TaskCompleted",
            f"task {task.role}-{task.index} exited with code {exit_.exit_code}"
            + (f" ({code} {spec_.phrase})" if code != exit_.exit_code else ""),
            type="Normal" if code == 0 else "Warning",
            role=task.role,
            index=task.index,
        )
        s.commit()
        self._decide_task(s, job, task, spec)

    def _decide_task(self, s: Session, job: Job, task: Task, spec: JobSpec) -> None:
        """Task-level retry: only when gang allocation is off (openpai.md §3.4)."""
        ta = task.attempts[-1]
        code = ta.exit_code if ta.exit_code is not None else 0
        if not spec.gang_allocation and job.state in (FState.CREATION_REQUESTED, FState.PREPARING, FState.RUNNING):
            role = spec.task_roles[task.role]
            dec = retry_decision(
                code, max_retry_count=role.task_retry_count, accountable_retries=task.accountable_retries, fancy=True
            )
            if dec.retry:
                task.attempt_id += 1
                task.retries += 1
                task.accountable_retries += int(dec.accountable)
                task.state = FState.CREATION_PENDING.value
                add_event(
                    s, job, "TaskRetry", f"task {task.role}-{task.index}: {dec.reason}", role=task.role, index=task.index
                )
                s.commit()
                return
        task.state = FState.COMPLETED.value
        task.exit_code = code
        task.completed_time = ta.completed_time or now_ms()
        s.commit()

    # ------------------------------------------------------------------ completion
    def _begin_completion(self, s: Session, job: Job, attempt: JobAttempt, outcome: AttemptOutcome) -> None:
        attempt.exit_code = outcome.exit_code
        attempt.trigger_message = outcome.trigger_message
        attempt.trigger_role = outcome.trigger_role
        attempt.trigger_index = outcome.trigger_index
        attempt.exit_diagnostics = outcome.diagnostics or None
        if outcome.trigger_role is not None:
            task = next(t for t in attempt.tasks if (t.role, t.index) == (outcome.trigger_role, outcome.trigger_index))
            if task.attempts and task.attempts[-1].exit_messages:
                attempt.exit_messages = task.attempts[-1].exit_messages
        self._set_state(job, attempt, FState.DELETION_PENDING)
        add_event(
            s,
            job,
            "AttemptCompleting",
            f"attempt {attempt.attempt_id} completing with exit code {outcome.exit_code}: {outcome.trigger_message}",
            type="Normal" if outcome.exit_code == 0 else "Warning",
            role=outcome.trigger_role,
            index=outcome.trigger_index,
        )
        s.commit()  # persisted before any task is stopped

    def _delete_tasks(self, s: Session, job: Job, attempt: JobAttempt) -> None:
        stop_code = STOP_REQUESTED if attempt.exit_code == STOP_REQUESTED else ATTEMPT_COMPLETION
        spec = spec_from_json(job.spec)
        for task in attempt.tasks:
            state = FState(task.state)
            if state == FState.COMPLETED:
                continue
            if state == FState.ATTEMPT_COMPLETED:
                self._decide_task(s, job, task, spec)
                continue
            ta = task.attempts[-1] if task.attempts else None
            if state == FState.CREATION_REQUESTED and ta is not None:
                handle = self.backend.recover(self._handle(ta))
                if handle is not None:
                    ta.pid, ta.pid_create_time = handle.pid, handle.pid_create_time
                    ta.state = task.state = FState.RUNNING.value
                    s.commit()
                    state = FState.RUNNING
            if state != FState.RUNNING or ta is None:
                # Never started: nothing to stop.
                if ta is not None:
                    ta.state, ta.exit_code, ta.completed_time = FState.COMPLETED.value, stop_code, now_ms()
                task.state, task.exit_code, task.completed_time = FState.COMPLETED.value, stop_code, now_ms()
                continue
            handle = self._handle(ta)
            exit_ = self.backend.poll(handle)
            if exit_ is None:
                if ta.work_dir not in self._stop_sent:
                    self.backend.stop(handle, self.grace_seconds)
                    self._stop_sent.add(ta.work_dir)
                continue
            self._stop_sent.discard(ta.work_dir)
            ta.exit_code, ta.origin_exit_code = stop_code, exit_.exit_code
            ta.exit_diagnostics = exit_spec.lookup(stop_code).phrase
            ta.state, ta.completed_time = FState.COMPLETED.value, now_ms()
            task.state, task.exit_code, task.completed_time = FState.COMPLETED.value, stop_code, ta.completed_time
            add_event(s, job, "TaskStopped", f"task {task.role}-{task.index} stopped", role=task.role, index=task.index)
        if all(t.state == FState.COMPLETED for t in attempt.tasks):
            attempt.completed_time = now_ms()
            self._set_state(job, attempt, FState.ATTEMPT_COMPLETED)
        s.commit()

    def _finish_attempt(self, s: Session, job: Job, attempt: JobAttempt) -> None:
        self.scheduler.release(job.key)
        spec = spec_from_json(job.spec)
        code = attempt.exit_code if attempt.exit_code is not None else 0
        dec = retry_decision(
            code,
            max_retry_count=max(spec.job_retry_count, 0),
            accountable_retries=job.accountable_retries,
            fancy=spec.job_retry_count != -2,
            stopping=job.execution_type == "STOP",
        )
        platform_retries = job.retries - job.accountable_retries
        if (
            dec.retry
            and not dec.accountable
            and code != PREEMPTED  # being preempted is not the job's fault: never capped
            and platform_retries >= self.max_platform_retries
        ):
            dec = RetryDecision(
                False, False, f"gave up after {platform_retries} uncounted platform retries (max_platform_retries)"
            )
        t = now_ms()
        if dec.retry:
            job.retries += 1
            job.accountable_retries += int(dec.accountable)
            job.attempt_id += 1
            new = new_attempt(job, job.attempt_id, spec, t)
            self._set_state(job, new, FState.CREATION_PENDING)
            add_event(s, job, "Retry", f"attempt {attempt.attempt_id} failed with exit code {code}; {dec.reason}", type="Warning")
        else:
            job.exit_code = code
            job.completed_time = t
            attempt.state = FState.ATTEMPT_COMPLETED.value
            job.state = FState.COMPLETED.value
            job.version += 1
            phrase = exit_spec.lookup(code).phrase
            add_event(
                s,
                job,
                "Completed",
                f"job completed with exit code {code} ({phrase})" + ("" if code == 0 else f"; {dec.reason}"),
                type="Normal" if code == 0 else "Warning",
            )
        s.commit()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        with self.store.session() as s:
            pending = list(
                s.scalars(
                    select(Job).where(Job.state == FState.CREATION_PENDING.value, Job.execution_type == "START")
                )
            )
            requests = {job.key: gang_request(job, spec_from_json(job.spec)) for job in pending}
            ids = {job.key: job.id for job in pending}
        if not requests:
            return
        decision = self.scheduler.schedule(list(requests.values()))
        for victim in decision.preempt:
            self._preempt(victim)
        for placement in decision.placed:
            try:
                self._bind(ids[placement.key], placement)
            except Exception as e:  # e.g. no free port: give the resources back, retry next pass
                log.warning("could not bind %s: %s", placement.key, e)
                self.scheduler.release(placement.key)
                self._note_wait(ids[placement.key], f"placed but not started: {e}")
                continue
            self._reconcile(ids[placement.key])
        with self.store.session() as s:
            for key, job_id in ids.items():
                info = self.scheduler.why_waiting(key)
                if info is None:
                    continue
                job = s.get(Job, job_id)
                attempt = self._current(job)
                reason = f"{info.reason} (queue position {info.position})"
                if attempt.wait_reason != reason:
                    attempt.wait_reason = reason
                    add_event(s, job, "Waiting", reason)

    def _preempt(self, key: str) -> None:
        """Stop a running gang the scheduler evicts; its attempt ends transient (-101), which the fancy
        retry policy retries without counting (jobRetryCount -2 turns that policy off)."""
        user, _, name = key.partition("~")
        with self.store.new_session() as s:
            job = s.scalar(select(Job).where(Job.username == user, Job.name == name))
            if job is None or job.state not in (FState.CREATION_REQUESTED, FState.PREPARING, FState.RUNNING):
                return
            self._begin_completion(
                s,
                job,
                self._current(job),
                AttemptOutcome(PREEMPTED, "Preempted by the scheduler for a higher-priority job"),
            )
            add_event(s, job, "Preempted", "preempted by the scheduler for a higher-priority job", type="Warning")
            s.commit()
            job_id = job.id
        self._reconcile(job_id)

    def _note_wait(self, job_id: int, reason: str) -> None:
        with self.store.session() as s:
            job = s.get(Job, job_id)
            attempt = self._current(job)
            if attempt.wait_reason != reason:
                attempt.wait_reason = reason
                add_event(s, job, "Waiting", reason, type="Warning")

    def _held_ports(self, s: Session) -> set[int]:
        rows = s.scalars(
            select(Task.ports)
            .join(JobAttempt, Task.job_attempt_id == JobAttempt.id)
            .where(JobAttempt.state.notin_([FState.ATTEMPT_COMPLETED.value, FState.COMPLETED.value]))
            .where(Task.ports.is_not(None))
        )
        return {p for ports in rows for plist in (ports or {}).values() for p in plist}

    def _bind(self, job_id: int, placement: GangPlacement) -> None:
        """Record the scheduler's placement and the tasks' ports, before anything is launched."""
        with self.store.session() as s:
            job = s.get(Job, job_id)
            attempt = self._current(job)
            spec = spec_from_json(job.spec)
            held = self._held_ports(s)
            for task in attempt.tasks:
                p = placement.tasks[(task.role, task.index)]
                ports = self.ports.allocate(spec.task_roles[task.role].ports, held)
                held.update(x for plist in ports.values() for x in plist)
                # A cell scheduler may hold whole GPU cells for a CPU task (a SKU is its unit); the task
                # sees only the GPUs it asked for. The full placement stays in attempt.placement.
                gpus = list(p.gpus)[: spec.task_roles[task.role].gpu]
                task.node, task.host_ip, task.gpus, task.ports = p.node, p.host_ip, gpus, ports
            attempt.placement = placement.to_json()
            attempt.wait_reason = None
            self._set_state(job, attempt, FState.CREATION_REQUESTED)
            add_event(s, job, "Scheduled", f"attempt {attempt.attempt_id}: {len(attempt.tasks)} task(s) placed")
