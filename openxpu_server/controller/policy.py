"""Pure FrameworkController policies: per-role completion and the (fancy) retry decision.

Kept apart from the reconcile loop so every rule of scheduling.md §3.1 is unit-testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..runtime import exit_spec


@dataclass(frozen=True)
class RoleCompletion:
    instances: int
    min_failed: int  # -1 disables
    min_succeeded: int  # -1 disables


@dataclass(frozen=True)
class CompletedTask:
    role: str
    index: int
    exit_code: int
    diagnostics: str = ""


@dataclass(frozen=True)
class AttemptOutcome:
    exit_code: int
    trigger_message: str
    trigger_role: str | None = None
    trigger_index: int | None = None
    diagnostics: str = ""


def attempt_outcome(
    roles: Mapping[str, RoleCompletion], completed: Iterable[CompletedTask]
) -> AttemptOutcome | None:
    """The job attempt's completion once the policy fires, else None (attempt keeps running).

    Completed tasks are taken in completion order, so the task whose completion crossed a
    threshold is the trigger, and the attempt inherits its exit code.
    """
    failed: dict[str, int] = {r: 0 for r in roles}
    succeeded: dict[str, int] = {r: 0 for r in roles}
    done = 0
    for t in completed:
        done += 1
        pol = roles[t.role]
        if t.exit_code == 0:
            succeeded[t.role] += 1
            if pol.min_succeeded >= 1 and succeeded[t.role] >= pol.min_succeeded:
                return AttemptOutcome(
                    0,
                    f"SucceededTaskCount {succeeded[t.role]} has reached MinSucceededTaskCount "
                    f"{pol.min_succeeded} in the TaskRole",
                    t.role,
                    t.index,
                )
        else:
            failed[t.role] += 1
            if pol.min_failed >= 1 and failed[t.role] >= pol.min_failed:
                return AttemptOutcome(
                    t.exit_code,
                    f"FailedTaskCount {failed[t.role]} has reached MinFailedTaskCount "
                    f"{pol.min_failed} in the TaskRole",
                    t.role,
                    t.index,
                    t.diagnostics,
                )
    total = sum(r.instances for r in roles.values())
    if total and done >= total:
        return AttemptOutcome(0, "All Tasks are completed")
    return None


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    accountable: bool
    reason: str


def retry_decision(
    exit_code: int, *, max_retry_count: int, accountable_retries: int, fancy: bool, stopping: bool = False
) -> RetryDecision:
    """FC's retry policy (scheduling.md §3.1): fancy = transient always, permanent never."""
    if exit_code == 0:
        return RetryDecision(False, False, "succeeded")
    if stopping:
        return RetryDecision(False, False, "stop requested")
    if fancy:
        if exit_spec.is_transient(exit_code):
            return RetryDecision(True, False, "transient platform failure: retried without counting")
        if exit_spec.is_permanent(exit_code):
            return RetryDecision(False, False, "permanent failure: never retried")
    if max_retry_count == -1 or accountable_retries < max_retry_count:
        return RetryDecision(
            True, True, f"retry {accountable_retries + 1} of {'unlimited' if max_retry_count == -1 else max_retry_count}"
        )
    return RetryDecision(False, False, f"retries exhausted ({accountable_retries} of {max_retry_count})")
