"""FrameworkController states and their mapping to OpenPAI job states (openpai.md §3.1)."""

from __future__ import annotations

from enum import Enum

STOP_CODES = frozenset({-210, -220})  # StopFrameworkRequested, FrameworkAttemptCompletion


class FState(str, Enum):
    """One state machine for job attempts and task attempts (scheduling.md §3.3)."""

    CREATION_PENDING = "AttemptCreationPending"
    CREATION_REQUESTED = "AttemptCreationRequested"
    PREPARING = "AttemptPreparing"
    RUNNING = "AttemptRunning"
    DELETION_PENDING = "AttemptDeletionPending"
    DELETION_REQUESTED = "AttemptDeletionRequested"
    DELETING = "AttemptDeleting"
    ATTEMPT_COMPLETED = "AttemptCompleted"
    COMPLETED = "Completed"


WAITING_STATES = frozenset({FState.CREATION_PENDING, FState.CREATION_REQUESTED, FState.PREPARING})
DELETING_STATES = frozenset(
    {FState.DELETION_PENDING, FState.DELETION_REQUESTED, FState.DELETING, FState.ATTEMPT_COMPLETED}
)
PAI_STATES = ("WAITING", "RUNNING", "STOPPING", "STOPPED", "SUCCEEDED", "FAILED", "UNKNOWN")


def _final(code: int | None) -> str:
    if code == 0:
        return "SUCCEEDED"
    if code in STOP_CODES:
        return "STOPPED"
    return "FAILED"


def pai_job_state(state: str, exit_code: int | None) -> str:
    """OpenPAI's `state` of a job from its FC state and the current attempt's exit code."""
    try:
        s = FState(state)
    except ValueError:
        return "UNKNOWN"
    if s in WAITING_STATES:
        return "WAITING"
    if s == FState.RUNNING:
        return "RUNNING"
    if s in DELETING_STATES:
        return "STOPPING" if exit_code in STOP_CODES else "RUNNING"
    return _final(exit_code)


def pai_attempt_state(state: str, exit_code: int | None) -> str:
    """Same table for `attemptState`/`taskState`, except AttemptCompleted is already terminal."""
    if state == FState.ATTEMPT_COMPLETED:
        return _final(exit_code)
    return pai_job_state(state, exit_code)


def pai_states_to_fc(pai_state: str) -> tuple[set[str], str | None]:
    """FC states a PAI state filter selects, plus an exit-code class for the final ones."""
    if pai_state == "WAITING":
        return {s.value for s in WAITING_STATES}, None
    if pai_state == "RUNNING":
        return {FState.RUNNING.value} | {s.value for s in DELETING_STATES}, "not-stop"
    if pai_state == "STOPPING":
        return {s.value for s in DELETING_STATES}, "stop"
    if pai_state in ("SUCCEEDED", "STOPPED", "FAILED"):
        return {FState.COMPLETED.value}, pai_state
    return set(), None
