from __future__ import annotations

from importlib import resources

import pytest

from openxpu_server.runtime import exit_spec
from openxpu_server.runtime.exit_spec import (
    all_specs,
    enums,
    exit_type,
    is_permanent,
    is_transient,
    known,
    lookup,
    needs_backoff,
    parse_table,
)

FC_CODES = [-100, -101, -110, -111, -120, -200, -210, -220, -230, -300, -310]
K8S_CODES = [-1000, -1001, -1002, -1003, -1004, -1005, -1006]
DOCKER_CODES = [-1200, -1201, -1202, -1203, -1204, -1205, -1300]
SIGNAL_CODES = [128, 130, 131, 132, 134, 135, 136, 137, 139, 141, 143]
CONTRACT_CODES = [200, 201, 210]
RUNTIME_CODES = list(range(220, 236))
PLATFORM_RUNTIME_CODES = list(range(249, 257))
REQUIRED_CODES = (
    [0, -1100, -8000]
    + FC_CODES
    + K8S_CODES
    + DOCKER_CODES
    + SIGNAL_CODES
    + CONTRACT_CODES
    + RUNTIME_CODES
    + PLATFORM_RUNTIME_CODES
)

APP_EXIT_SPEC_KEYS = [
    "code",
    "phrase",
    "issuer",
    "causer",
    "type",
    "stage",
    "behavior",
    "reaction",
    "reason",
    "repro",
    "solution",
]


@pytest.mark.parametrize("code", REQUIRED_CODES)
def test_every_required_code_has_its_own_entry(code):
    assert known(code)
    spec = lookup(code)
    assert spec.code == code


def test_notable_phrases():
    assert lookup(0).phrase == "Succeeded"
    assert lookup(-210).phrase == "StopFrameworkRequested"
    assert lookup(-220).phrase == "FrameworkAttemptCompletion"
    assert lookup(-101).phrase == "PodExternalDeleted"
    assert lookup(137).phrase == "ContainerSigKillReceived"
    assert lookup(226).phrase == "ContainerCudaOOMKilled"
    assert lookup(232).phrase == "ContainerImportError"
    assert lookup(251).phrase == "JobGangAllocationTimeout"
    assert lookup(254).phrase == "ContainerImageNotExists"
    assert lookup(255).phrase == "PAIRuntimeUnknownFailed"
    assert lookup(256).phrase == "PAIRuntimeExitAbnormally"
    assert lookup(-8000).phrase == "ContainerUndefinedNegativeExitCode"


def test_fields_are_filled_and_enums_valid():
    allowed = enums()
    assert set(allowed) >= {"issuer", "causer", "type", "stage", "behavior", "reaction"}
    codes, phrases = set(), set()
    for spec in all_specs():
        for name in ("phrase", "reason"):
            assert getattr(spec, name).strip(), (spec.code, name)
        for name in ("issuer", "causer", "type", "stage", "behavior", "reaction"):
            assert getattr(spec, name) in allowed[name], (spec.code, name)
        assert spec.repro and all(s.strip() for s in spec.repro), spec.code
        assert spec.solution and all(s.strip() for s in spec.solution), spec.code
        assert spec.code not in codes and spec.phrase not in phrases
        codes.add(spec.code)
        phrases.add(spec.phrase)


def test_enum_values_match_the_reference():
    e = enums()
    assert set(e["type"]) == {
        "USER_SUCCESS",
        "USER_STOP",
        "USER_FAILURE",
        "PLATFORM_FAILURE",
        "RESOURCE_ALLOCATION_TIMEOUT",
        "UNKNOWN_FAILURE",
    }
    assert set(e["behavior"]) == {"TRANSIENT", "TRANSIENT_CONFLICT", "PERMANENT", "UNKNOWN"}
    assert set(e["reaction"]) == {"ALWAYS_RETRY", "ALWAYS_BACKOFF_RETRY", "RETRY_TO_MAX", "NEVER_RETRY"}
    assert set(e["stage"]) == {"SUBMITTING", "ALLOCATING", "LAUNCHING", "RUNNING", "COMPLETING", "UNKNOWN"}
    assert {
        "USER_CONTAINER",
        "PAI_OS",
        "PAI_RUNTIME",
        "PAI_DOCKER",
        "PAI_K8S",
        "PAI_FC",
        "PAI_DB_CONTROLLER",
    } <= set(e["issuer"])


@pytest.mark.parametrize("code", [c for c in RUNTIME_CODES] + SIGNAL_CODES + CONTRACT_CODES + [249])
def test_runtime_codes_have_patterns(code):
    assert lookup(code).patterns, code


@pytest.mark.parametrize("code", SIGNAL_CODES + CONTRACT_CODES)
def test_pass_through_codes_match_their_own_exit_code(code):
    patterns = lookup(code).patterns
    assert any(p.exit_code_only and p.exit_code == code for p in patterns)


def test_command_not_found_pattern_requires_exit_127():
    p = lookup(220).patterns[0]
    assert p.exit_code == 127 and "command not found" in p.user_log_regex
    assert p.to_dict() == {"exitCode": 127, "userLogRegex": p.user_log_regex}
    assert lookup(227).patterns[0].to_dict() == {"gpuInfo": {"eccError": "double"}}


def test_to_dict_is_app_exit_spec():
    d = lookup(232).to_dict()
    assert list(d) == APP_EXIT_SPEC_KEYS
    assert d["code"] == 232
    assert isinstance(d["repro"], list) and isinstance(d["solution"], list)
    assert d["type"] == "USER_FAILURE"


def test_unknown_positive_code_falls_back_to_256_with_real_code():
    spec = lookup(1)
    assert spec.code == 1
    assert spec.phrase == "PAIRuntimeExitAbnormally"
    assert spec.to_dict()["code"] == 1
    assert lookup(99999).code == 99999
    assert not known(1)


def test_unknown_negative_code_falls_back_to_minus_8000_with_real_code():
    spec = lookup(-7)
    assert spec.code == -7
    assert spec.phrase == "ContainerUndefinedNegativeExitCode"
    assert spec.type == "UNKNOWN_FAILURE"
    assert lookup(-123456).phrase == "ContainerUndefinedNegativeExitCode"


@pytest.mark.parametrize(
    "code", [-100, -101, -110, -111, -120, 130, 131, 137, 143, -1000, -1001, 223, 253, 250]
)
def test_transient_codes(code):
    assert is_transient(code)
    assert not is_permanent(code)


@pytest.mark.parametrize("code", [-200, -210, -220, -230, -1004, -1200, 132, 210, 220, 226, 232, 252, 254])
def test_permanent_codes(code):
    assert is_permanent(code)
    assert not is_transient(code)


@pytest.mark.parametrize("code", [1, 134, 139, 255, 256, -300, -310, -8000, -7])
def test_unknown_codes_are_neither(code):
    assert not is_transient(code)
    assert not is_permanent(code)


def test_success_is_not_permanent_failure():
    assert not is_permanent(0)
    assert not is_transient(0)


def test_platform_always_retry_entries_are_transient():
    for spec in all_specs():
        if spec.type == "PLATFORM_FAILURE" and spec.reaction == "ALWAYS_RETRY":
            assert is_transient(spec.code), spec.code
        if spec.reaction == "NEVER_RETRY" and spec.code != 0:
            assert is_permanent(spec.code), spec.code


def test_gang_timeout_is_transient_with_backoff():
    assert is_transient(251)
    assert needs_backoff(251) and needs_backoff(201)
    assert not needs_backoff(137)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (0, "USER_SUCCESS"),
        (-210, "USER_STOP"),
        (-220, "USER_STOP"),
        (232, "USER_FAILURE"),
        (137, "PLATFORM_FAILURE"),
        (251, "RESOURCE_ALLOCATION_TIMEOUT"),
        (255, "UNKNOWN_FAILURE"),
        (-7, "UNKNOWN_FAILURE"),
        (1, "PLATFORM_FAILURE"),
    ],
)
def test_exit_type(code, kind):
    assert exit_type(code) == kind


def test_table_is_loaded_once_and_ships_as_package_data():
    assert exit_spec._table() is exit_spec._table()
    assert resources.files("openxpu_server.runtime").joinpath("exit_spec.yaml").is_file()


def test_specs_are_in_code_order_within_runtime_range():
    runtime = [s.code for s in all_specs() if 220 <= s.code <= 235]
    assert runtime == sorted(runtime) == RUNTIME_CODES


_MINIMAL = """
enums:
  issuer: [USER_CONTAINER, PAI_RUNTIME, UNKNOWN]
  causer: [USER_CONTAINER, UNKNOWN, PAI_RUNTIME]
  type: [USER_SUCCESS, UNKNOWN_FAILURE, PLATFORM_FAILURE]
  stage: [COMPLETING, UNKNOWN]
  behavior: [UNKNOWN]
  reaction: [NEVER_RETRY, RETRY_TO_MAX]
spec:
- {code: 0, phrase: Succeeded, issuer: USER_CONTAINER, causer: USER_CONTAINER, type: USER_SUCCESS,
   stage: COMPLETING, behavior: UNKNOWN, reaction: NEVER_RETRY, reason: ok, repro: [x], solution: [y]}
- {code: 255, phrase: U, issuer: PAI_RUNTIME, causer: UNKNOWN, type: UNKNOWN_FAILURE,
   stage: UNKNOWN, behavior: UNKNOWN, reaction: RETRY_TO_MAX, reason: r, repro: [x], solution: [y]}
- {code: 256, phrase: A, issuer: PAI_RUNTIME, causer: PAI_RUNTIME, type: PLATFORM_FAILURE,
   stage: UNKNOWN, behavior: UNKNOWN, reaction: RETRY_TO_MAX, reason: r, repro: [x], solution: [y]}
- {code: -8000, phrase: N, issuer: UNKNOWN, causer: UNKNOWN, type: UNKNOWN_FAILURE,
   stage: UNKNOWN, behavior: UNKNOWN, reaction: RETRY_TO_MAX, reason: r, repro: [x], solution: [y]}
"""


def test_parse_table_accepts_minimal_table():
    table = parse_table(_MINIMAL)
    assert sorted(table.by_code) == [-8000, 0, 255, 256]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("type: USER_SUCCESS,", "type: NOPE,", "not one of"),
        ("code: 255, phrase: U", "code: 0, phrase: U", "duplicated code"),
        ("phrase: A,", "phrase: U,", "duplicated phrase"),
        ("reason: ok,", "reason: '',", "reason is required"),
        ("repro: [x], solution: [y]}\n- {code: 255", "repro: [], solution: [y]}\n- {code: 255", "repro"),
        ("code: -8000, phrase: N", "code: -8001, phrase: N", "-8000 is required"),
        (
            "solution: [y]}\n- {code: 256",
            "solution: [y], patterns: [{userLogRegex: '('}]}\n- {code: 256",
            "invalid regex",
        ),
        (
            "solution: [y]}\n- {code: 256",
            "solution: [y], patterns: [{exitcode: 1}]}\n- {code: 256",
            "unknown pattern",
        ),
    ],
)
def test_parse_table_rejects_bad_tables(old, new, message):
    assert old in _MINIMAL
    with pytest.raises(ValueError, match=message):
        parse_table(_MINIMAL.replace(old, new, 1))
