"""FrameworkController's completion and retry rules, pure (scheduling.md §3.1, openpai.md §3.4)."""

from openxpu_server.controller.policy import CompletedTask, RoleCompletion, attempt_outcome, retry_decision
from openxpu_server.controller.states import pai_attempt_state, pai_job_state


def test_min_failed_fires_on_the_crossing_task_and_inherits_its_code():
    roles = {"worker": RoleCompletion(3, 2, 3)}
    done = [CompletedTask("worker", 0, 1), CompletedTask("worker", 2, 137, "oom")]
    out = attempt_outcome(roles, done)
    assert out.exit_code == 137 and out.trigger_index == 2 and out.diagnostics == "oom"
    assert out.trigger_message == "FailedTaskCount 2 has reached MinFailedTaskCount 2 in the TaskRole"
    assert attempt_outcome(roles, done[:1]) is None


def test_min_failed_minus_one_never_fails_and_all_done_succeeds():
    roles = {"worker": RoleCompletion(2, -1, -1)}
    out = attempt_outcome(roles, [CompletedTask("worker", 0, 3), CompletedTask("worker", 1, 3)])
    assert out.exit_code == 0 and out.trigger_message == "All Tasks are completed"


def test_min_succeeded_of_one_role_ends_attempt():
    roles = {"ps": RoleCompletion(1, 1, -1), "worker": RoleCompletion(2, 1, 2)}
    assert attempt_outcome(roles, [CompletedTask("worker", 0, 0)]) is None
    out = attempt_outcome(roles, [CompletedTask("worker", 0, 0), CompletedTask("worker", 1, 0)])
    assert out.exit_code == 0 and out.trigger_role == "worker"


def test_fancy_retry_policy():
    kw = dict(max_retry_count=1, fancy=True)
    assert not retry_decision(0, accountable_retries=0, **kw).retry
    transient = retry_decision(137, accountable_retries=5, **kw)
    assert transient.retry and not transient.accountable
    assert not retry_decision(-200, accountable_retries=0, **kw).retry  # permanent
    user = retry_decision(1, accountable_retries=0, **kw)
    assert user.retry and user.accountable
    assert not retry_decision(1, accountable_retries=1, **kw).retry
    assert not retry_decision(137, accountable_retries=0, stopping=True, **kw).retry
    # jobRetryCount -2: no fancy policy, and no retries at all.
    assert not retry_decision(137, accountable_retries=0, max_retry_count=0, fancy=False).retry


def test_state_mapping_table():
    assert pai_job_state("AttemptCreationPending", None) == "WAITING"
    assert pai_job_state("AttemptRunning", None) == "RUNNING"
    assert pai_job_state("AttemptDeletionPending", -210) == "STOPPING"
    assert pai_job_state("AttemptDeletionPending", 1) == "RUNNING"
    assert pai_job_state("Completed", 0) == "SUCCEEDED"
    assert pai_job_state("Completed", -220) == "STOPPED"
    assert pai_job_state("Completed", 232) == "FAILED"
    assert pai_job_state("Bogus", 0) == "UNKNOWN"
    assert pai_attempt_state("AttemptCompleted", 1) == "FAILED"
