from __future__ import annotations

import re

import pytest

from openxpu_server.protocol.spec import JobSpec, TaskRoleSpec
from openxpu_server.runtime.env import TaskInfo, gpu_environment, task_environment


def role(name: str, instances: int, *, gpu: int, cpu: int, memory_mb: int, ports: dict[str, int], shm_mb=512):
    return TaskRoleSpec(
        name=name,
        instances=instances,
        min_failed_instances=1,
        min_succeeded_instances=-1 if name == "ps" else instances,
        task_retry_count=0,
        docker_image="openpai/standard:python_3.6-tensorflow_1.15.0-gpu",
        cpu=cpu,
        memory_mb=memory_mb,
        gpu=gpu,
        ports=ports,
        shm_mb=shm_mb,
        commands=["python train.py"],
    )


def make_spec() -> JobSpec:
    return JobSpec(
        name="tf_ps_demo",
        virtual_cluster="vc1",
        priority_class="test",
        job_retry_count=0,
        gang_allocation=True,
        task_roles={
            "ps": role("ps", 1, gpu=0, cpu=2, memory_mb=4096, ports={"ssh": 1, "http": 1}),
            "worker": role(
                "worker",
                2,
                gpu=2,
                cpu=8,
                memory_mb=16384,
                ports={"ssh": 1, "http": 1, "sync": 2},
                shm_mb=1024,
            ),
        },
        docker_images={"ps": "img", "worker": "img"},
        parameters={},
        secrets={},
        extras={},
        protocol={},
    )


TASKS = {
    ("ps", 0): TaskInfo("127.0.1.1", {"ssh": [15001], "http": [15002]}, []),
    ("worker", 0): TaskInfo("127.0.1.2", {"ssh": [15010], "http": [15011], "sync": [15012, 15013]}, [0, 1]),
    ("worker", 1): TaskInfo("127.0.1.3", {"ssh": [15020], "http": [15021], "sync": [15022, 15023]}, [2, 3]),
}

EXPECTED_WORKER_1 = {
    "PAI_JOB_NAME": "alice~tf_ps_demo",
    "PAI_FRAMEWORK_NAME": "alice~tf_ps_demo",
    "PAI_USER_NAME": "alice",
    "PAI_VIRTUAL_CLUSTER": "vc1",
    "PAI_DEFAULT_FS_URI": "",
    "PAI_TASK_ROLE_COUNT": "2",
    "PAI_TASK_ROLE_LIST": "ps,worker",
    "PAI_TASK_ROLE_TASK_COUNT_ps": "1",
    "PAI_TASK_ROLE_TASK_COUNT_worker": "2",
    "PAI_RESOURCE_ps": "0,2,4096,512",
    "PAI_RESOURCE_worker": "2,8,16384,1024",
    "PAI_MIN_FAILED_TASK_COUNT_ps": "1",
    "PAI_MIN_FAILED_TASK_COUNT_worker": "1",
    "PAI_MIN_SUCCEEDED_TASK_COUNT_ps": "-1",
    "PAI_MIN_SUCCEEDED_TASK_COUNT_worker": "2",
    "PAI_USERNAME": "alice",
    "PAI_TASKS_NUM": "3",
    "PAI_JOB_TASK_COUNT": "3",
    "PAI_TASK_ROLES_NUM": "2",
    "PAI_JOB_TASK_ROLE_COUNT": "2",
    "PAI_JOB_TASK_ROLE_LIST": "ps,worker",
    "PAI_CURRENT_TASK_ROLE_NAME": "worker",
    "PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX": "1",
    "PAI_TASK_INDEX": "1",
    "FC_FRAMEWORK_NAME": "alice~tf_ps_demo",
    "FC_TASKROLE_NAME": "worker",
    "FC_TASK_INDEX": "1",
    "FC_FRAMEWORK_ATTEMPT_ID": "2",
    "FC_TASK_ATTEMPT_ID": "3",
    "FC_TASK_UID": "uid-w1",
    "FC_POD_UID": "uid-w1",
    "FC_TASK_ATTEMPT_INSTANCE_UID": "3_uid-w1",
    "PAI_HOST_IP_ps_0": "127.0.1.1",
    "PAI_HOST_IP_worker_0": "127.0.1.2",
    "PAI_HOST_IP_worker_1": "127.0.1.3",
    "PAI_PORT_LIST_ps_0_ssh": "15001",
    "PAI_PORT_LIST_ps_0_http": "15002",
    "PAI_PORT_LIST_worker_0_ssh": "15010",
    "PAI_PORT_LIST_worker_0_http": "15011",
    "PAI_PORT_LIST_worker_0_sync": "15012,15013",
    "PAI_PORT_LIST_worker_1_ssh": "15020",
    "PAI_PORT_LIST_worker_1_http": "15021",
    "PAI_PORT_LIST_worker_1_sync": "15022,15023",
    "PAI_ps_0_ssh_PORT": "15001",
    "PAI_ps_0_http_PORT": "15002",
    "PAI_worker_0_ssh_PORT": "15010",
    "PAI_worker_0_http_PORT": "15011",
    "PAI_worker_0_sync_PORT": "15012,15013",
    "PAI_worker_1_ssh_PORT": "15020",
    "PAI_worker_1_http_PORT": "15021",
    "PAI_worker_1_sync_PORT": "15022,15023",
    "PAI_TASK_ROLE_ps_HOST_LIST": "127.0.1.1:15002",
    "PAI_TASK_ROLE_worker_HOST_LIST": "127.0.1.2:15011,127.0.1.3:15021",
    "PAI_TASK_ROLE_INSTANCES": "ps:0,worker:0,worker:1",
    "PAI_CURRENT_CONTAINER_IP": "127.0.1.3",
    "PAI_CURRENT_CONTAINER_PORT": "15021",
    "PAI_CONTAINER_HOST_IP": "127.0.1.3",
    "PAI_CONTAINER_HOST_PORT": "15021",
    "PAI_CONTAINER_SSH_PORT": "15020",
    "PAI_CONTAINER_HOST_ssh_PORT_LIST": "15020",
    "PAI_CONTAINER_HOST_http_PORT_LIST": "15021",
    "PAI_CONTAINER_HOST_sync_PORT_LIST": "15022,15023",
    "PAI_CONTAINER_HOST_PORT_LIST": "ssh:15020;http:15021;sync:15022,15023;",
    "CUDA_VISIBLE_DEVICES": "2,3",
    "NVIDIA_VISIBLE_DEVICES": "2,3",
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
}


def test_worker_environment_is_exactly_the_contract():
    env = task_environment(
        make_spec(),
        username="alice",
        tasks=TASKS,
        role="worker",
        index=1,
        task_uid="uid-w1",
        job_attempt=2,
        task_attempt=3,
    )
    assert env == EXPECTED_WORKER_1
    assert "PAI_WORK_DIR" not in env


def test_ps_environment_has_no_gpus():
    env = task_environment(make_spec(), username="alice", tasks=TASKS, role="ps", index=0)
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["NVIDIA_VISIBLE_DEVICES"] == "none"
    assert env["PAI_CURRENT_TASK_ROLE_NAME"] == "ps"
    assert env["PAI_CURRENT_CONTAINER_IP"] == "127.0.1.1"
    assert env["PAI_CONTAINER_HOST_PORT_LIST"] == "ssh:15001;http:15002;"
    assert env["FC_FRAMEWORK_ATTEMPT_ID"] == "0" and env["FC_TASK_ATTEMPT_ID"] == "0"
    assert env["FC_TASK_UID"] == "" and "FC_TASK_ATTEMPT_INSTANCE_UID" not in env
    # The shared part is the same for every task.
    w = task_environment(make_spec(), username="alice", tasks=TASKS, role="worker", index=0)
    for key in (
        "PAI_TASK_ROLE_INSTANCES",
        "PAI_TASK_ROLE_worker_HOST_LIST",
        "PAI_RESOURCE_worker",
        "PAI_JOB_NAME",
    ):
        assert env[key] == w[key]


def test_all_values_are_strings_and_names_are_from_the_reference():
    env = task_environment(make_spec(), username="alice", tasks=TASKS, role="worker", index=0)
    allowed = re.compile(
        r"^(PAI_(JOB_NAME|FRAMEWORK_NAME|USER_NAME|USERNAME|VIRTUAL_CLUSTER|DEFAULT_FS_URI|TASK_ROLE_COUNT"
        r"|TASK_ROLE_LIST|TASK_ROLE_TASK_COUNT_\w+|RESOURCE_\w+|MIN_FAILED_TASK_COUNT_\w+"
        r"|MIN_SUCCEEDED_TASK_COUNT_\w+|TASKS_NUM|JOB_TASK_COUNT|TASK_ROLES_NUM|JOB_TASK_ROLE_COUNT"
        r"|JOB_TASK_ROLE_LIST|CURRENT_TASK_ROLE_NAME|CURRENT_TASK_ROLE_CURRENT_TASK_INDEX|TASK_INDEX"
        r"|HOST_IP_\w+_\d+|PORT_LIST_\w+_\d+_\w+|\w+_\d+_\w+_PORT|TASK_ROLE_\w+_HOST_LIST|TASK_ROLE_INSTANCES"
        r"|CURRENT_CONTAINER_IP|CURRENT_CONTAINER_PORT|CONTAINER_HOST_IP|CONTAINER_HOST_PORT|CONTAINER_SSH_PORT"
        r"|CONTAINER_HOST_\w+_PORT_LIST|CONTAINER_HOST_PORT_LIST)"
        r"|FC_\w+|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|OPENXPU_\w+)$"
    )
    for key, value in env.items():
        assert isinstance(value, str), key
        assert allowed.match(key), key


def test_bash_indirection_pattern_from_the_docs_works():
    env = task_environment(make_spec(), username="alice", tasks=TASKS, role="worker", index=1)
    key = f"PAI_PORT_LIST_{env['PAI_CURRENT_TASK_ROLE_NAME']}_{env['PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX']}_sync"
    assert env[key] == "15022,15023"


def test_missing_tasks_are_absent_like_non_gang_jobs():
    tasks = {k: v for k, v in TASKS.items() if k != ("worker", 0)}
    env = task_environment(make_spec(), username="alice", tasks=tasks, role="worker", index=1)
    assert "PAI_HOST_IP_worker_0" not in env
    assert env["PAI_TASK_ROLE_worker_HOST_LIST"] == "127.0.1.3:15021"
    assert env["PAI_TASK_ROLE_INSTANCES"] == "ps:0,worker:0,worker:1"


@pytest.mark.parametrize("gpus", [[], [5]])
def test_gpu_task_without_enough_devices_is_refused(gpus):
    tasks = dict(TASKS)
    tasks[("worker", 1)] = TaskInfo("127.0.1.3", {"ssh": [1], "http": [2]}, gpus)
    with pytest.raises(ValueError, match="GPU"):
        task_environment(make_spec(), username="alice", tasks=tasks, role="worker", index=1)


def test_extra_devices_are_not_exposed():
    env = gpu_environment([4, 5, 6], 2)
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5" == env["NVIDIA_VISIBLE_DEVICES"]
    assert gpu_environment([1, 2], 0)["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(ValueError):
        gpu_environment([1, 1], 2)
    with pytest.raises(ValueError):
        gpu_environment([], -1)


@pytest.mark.parametrize(
    ("role_name", "index", "tasks"),
    [
        ("chief", 0, TASKS),
        ("worker", 2, TASKS),
        ("worker", -1, TASKS),
        ("worker", 1, {k: v for k, v in TASKS.items() if k != ("worker", 1)}),
        ("worker", 1, {**TASKS, ("evaluator", 0): TaskInfo("127.0.1.9", {"http": [1]}, [])}),
    ],
)
def test_invalid_requests(role_name, index, tasks):
    with pytest.raises(ValueError):
        task_environment(make_spec(), username="alice", tasks=tasks, role=role_name, index=index)
