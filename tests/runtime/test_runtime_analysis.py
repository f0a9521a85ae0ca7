from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from openxpu_server.runtime import analysis
from openxpu_server.runtime.analysis import (
    SUMMARY_END,
    SUMMARY_START,
    analyze,
    analyze_files,
    find_exception,
    init_failure_code,
    parse_summary,
    read_tail,
)


def log(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


NOISE = "".join(f"epoch 3 step {i}/500 loss=0.{i:04d} lr=0.0010 throughput=812.3 img/s\n" for i in range(200))

TORCH_CUDA_OOM = log(
    """
    Epoch 0:  12%|#2        | 120/1000 [00:41<05:01,  2.92it/s]
    Traceback (most recent call last):
      File "/workspace/train.py", line 88, in <module>
        main()
      File "/workspace/train.py", line 71, in main
        loss = model(batch).loss
               ^^^^^^^^^^^^
      File "/usr/lib/python3/dist-packages/torch/nn/modules/module.py", line 1532, in _wrapped_call_impl
        return self._call_impl(*args, **kwargs)
    torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.06 GiB is free. Of the allocated memory 75.92 GiB is allocated by PyTorch.
    """
)

TF_OOM = log(
    """
    2024-03-02 10:11:12.123456: W tensorflow/core/common_runtime/bfc_allocator.cc:479] Allocator (GPU_0_bfc) ran out of memory trying to allocate 4.00GiB (rounded to 4294967296)requested by op MatMul
    Traceback (most recent call last):
      File "train_tf.py", line 40, in <module>
        model.fit(ds, epochs=3)
    tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor with shape[65536,16384] and type float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc [Op:MatMul]
    """
)

INDEX_ERROR = log(
    """
    loading dataset from /data/imagenet ... done (1281167 images)
    Traceback (most recent call last):
      File "/workspace/eval.py", line 12, in <module>
        print(labels[len(labels)])
              ~~~~~~^^^^^^^^^^^^^
    IndexError: list index out of range
    """
)

UNPICKLING = log(
    """
    Traceback (most recent call last):
      File "/workspace/resume.py", line 5, in <module>
        state = torch.load("/mnt/ckpt/latest.pt")
      File "/usr/lib/python3/dist-packages/torch/serialization.py", line 1040, in load
        return _legacy_load(opened_file, map_location, pickle_module, **pickle_load_args)
    _pickle.UnpicklingError: invalid load key, 'v'.
    """
)

SYNTAX_ERROR_MAIN = log(
    """
      File "/workspace/train.py", line 14
        def forward(self, x:
                   ^
    SyntaxError: '(' was never closed
    """
)

IMPORT_ERROR = log(
    """
    + python -m mypkg.train --epochs 3
    Traceback (most recent call last):
      File "<frozen runpy>", line 198, in _run_module_as_main
      File "/workspace/mypkg/train.py", line 3, in <module>
        from transformers import AutoModelForCausalLM
    ImportError: cannot import name 'AutoModelForCausalLM' from 'transformers' (/usr/lib/python3/dist-packages/transformers/__init__.py)
    """
)

ZERO_DIVISION = log(
    """
    computing statistics
    Traceback (most recent call last):
      File "/workspace/stats.py", line 4, in <module>
        mean = total / count
               ~~~~~~^~~~~~~
    ZeroDivisionError: division by zero
    """
)

MPI_SEGV = log(
    """
    [worker-0:01234] *** Process received signal ***
    [worker-0:01234] Signal: Segmentation fault (11)
    [worker-0:01234] Signal code: Address not mapped (1)
    [worker-0:01234] Failing at address: 0x10
    [worker-0:01234] [ 0] /lib/x86_64-linux-gnu/libc.so.6(+0x42520)[0x7f2d2a242520]
    [worker-0:01234] *** End of error message ***
    --------------------------------------------------------------------------
    mpirun noticed that process rank 0 with PID 0 on node worker-0 exited on signal 11 (Segmentation fault).
    """
)


@pytest.mark.parametrize(
    ("exit_code", "text", "expected", "matched"),
    [
        (1, TORCH_CUDA_OOM, 226, "torch.OutOfMemoryError: CUDA out of memory."),
        (
            1,
            "RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported\n",
            226,
            "CUDA error: out of memory",
        ),
        (
            1,
            "THCudaCheck FAIL file=/pytorch/aten/src/THC/generic/THCStorage.cu line=58 error=2 : out of memory\ncuda runtime error (2) : out of memory at /pytorch/aten/src/THC/THCCachingAllocator.cpp:510\n",
            226,
            "cuda runtime error (2) : out of memory",
        ),
        (1, TF_OOM, 221, "ResourceExhaustedError: OOM when allocating tensor"),
        (1, INDEX_ERROR, 233, "IndexError: list index out of range"),
        (1, "IndexError: index 7 is out of bounds for dimension 0 with size 4\n", 233, "IndexError: index 7"),
        (1, UNPICKLING, 231, "_pickle.UnpicklingError: invalid load key, 'v'."),
        (1, SYNTAX_ERROR_MAIN, 231, "SyntaxError: '(' was never closed"),
        (
            2,
            "./run.sh: line 3: syntax error near unexpected token `fi'\n",
            231,
            "syntax error near unexpected token",
        ),
        (1, IMPORT_ERROR, 232, "ImportError: cannot import name 'AutoModelForCausalLM'"),
        (1, "ModuleNotFoundError: No module named 'apex'\n", 232, "No module named 'apex'"),
        (127, "bash: line 4: torchrun: command not found\n", 220, "torchrun: command not found"),
        (
            127,
            "/bin/bash: line 1: ./train.sh: No such file or directory\n",
            220,
            "./train.sh: No such file or directory",
        ),
        (126, "bash: line 1: ./train.sh: Permission denied\n", 220, "Permission denied"),
        (
            139,
            "bash: line 1:  4242 Segmentation fault      (core dumped) python native.py\n",
            234,
            "Segmentation fault",
        ),
        (
            1,
            "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n",
            234,
            "Fatal Python error: Segmentation fault",
        ),
        (
            134,
            "terminate called after throwing an instance of 'std::runtime_error'\nbash: line 1:  77 Aborted                 (core dumped) ./solver\n",
            235,
            "Aborted                 (core dumped) ./solver",
        ),
        (139, MPI_SEGV, 222, "Signal code: Address not mapped (1)"),
        (1, "CUDA error: uncorrectable ECC error encountered\n", 223, "uncorrectable ECC error encountered"),
        (
            1,
            "RuntimeError: The NVIDIA driver on your system is too old (found version 10010).\n",
            224,
            "driver on your system is too old",
        ),
        (
            2,
            "usage: train.py [-h] [--lr LR]\ntrain.py: error: unrecognized arguments: --epoch 3\n",
            228,
            "unrecognized arguments: --epoch 3",
        ),
        (
            1,
            "RuntimeError: Error(s) in loading state_dict for ResNet:\n\tsize mismatch for fc.weight\n",
            229,
            "Error(s) in loading state_dict",
        ),
        (
            1,
            "RuntimeError: Parent directory /no/such/dir does not exist.\n",
            230,
            "Parent directory /no/such/dir",
        ),
    ],
)
def test_recognised_failures(exit_code, text, expected, matched):
    a = analyze(exit_code, NOISE + text)
    assert a.exit_code == expected, a.trigger
    assert a.origin_user_exit_code == exit_code
    assert a.matched_user_log is not None and matched in a.matched_user_log
    assert a.matched_user_log in a.error_logs_user
    assert len(a.error_logs_user.split("\n")) <= 15
    assert a.spec.code == expected
    assert a.spec.phrase in a.trigger


def test_caught_exception_of_a_recognised_traceback():
    a = analyze(1, TORCH_CUDA_OOM)
    assert a.caught_exception.startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert "final exception" in a.trigger
    # The window shows the frames before the exception.
    assert 'File "/workspace/train.py", line 71, in main' in a.error_logs_user


def test_unrecognised_traceback_gives_255_with_the_exception():
    a = analyze(1, NOISE + ZERO_DIVISION)
    assert a.exit_code == 255
    assert a.caught_exception == "ZeroDivisionError: division by zero"
    assert a.matched_user_log is None
    assert "ZeroDivisionError: division by zero" in a.trigger
    assert a.error_logs_user.endswith("ZeroDivisionError: division by zero")
    assert "mean = total / count" in a.error_logs_user


def test_plain_failure_gives_255_and_the_log_tail():
    text = "".join(f"line {i}\n" for i in range(40)) + "giving up\n"
    a = analyze(3, text)
    assert a.exit_code == 255
    assert a.caught_exception is None
    lines = a.error_logs_user.split("\n")
    assert len(lines) == 15
    assert lines[-1] == "giving up" and lines[0] == "line 26"


def test_success_stays_zero():
    a = analyze(0, NOISE + "Traceback (most recent call last):\nValueError: handled and logged\n")
    assert a.exit_code == 0
    assert a.origin_user_exit_code == 0
    assert a.caught_exception is None


def test_command_not_found_needs_exit_127():
    a = analyze(1, "bash: line 1: foo: command not found\n")
    assert a.exit_code == 255


def test_signal_codes_keep_their_code_without_a_log():
    assert analyze(139, "").exit_code == 139
    assert analyze(134, "some output\n").exit_code == 134
    assert analyze(135, "").exit_code == 135
    assert "SIGSEGV" in analyze(139, "").trigger


@pytest.mark.parametrize("code", [130, 131, 137, 143])
def test_external_kills_win_over_log_patterns(code):
    text = (
        INDEX_ERROR
        + "ModuleNotFoundError: No module named 'x'\nTraceback (most recent call last):\n  File \"a.py\", line 1\nKeyboardInterrupt\n"
    )
    a = analyze(code, text)
    assert a.exit_code == code
    assert a.caught_exception == "KeyboardInterrupt"


@pytest.mark.parametrize("code", [200, 201, 210])
def test_retry_contract_codes_pass_through(code):
    a = analyze(code, IMPORT_ERROR)
    assert a.exit_code == code


def test_negative_signal_return_code_is_normalised():
    a = analyze(-9, "")
    assert a.exit_code == 137
    assert a.origin_user_exit_code == -9
    assert analyze(-11, "Segmentation fault\n").exit_code == 234


def test_final_exception_beats_earlier_handled_errors():
    text = "ImportError: apex not installed, falling back to native AMP\n" + NOISE + INDEX_ERROR
    a = analyze(1, text)
    assert a.exit_code == 233
    assert a.caught_exception == "IndexError: list index out of range"


def test_last_occurrence_is_reported():
    text = "worker 1: Segmentation fault at step 1\n" + NOISE + "worker 3: Segmentation fault at step 200\n"
    a = analyze(139, text)
    assert a.exit_code == 234
    assert a.matched_user_log == "worker 3: Segmentation fault at step 200"


def test_window_around_a_match_in_the_middle():
    before = "".join(f"before {i}\n" for i in range(100))
    after = "".join(f"after {i}\n" for i in range(100))
    a = analyze(1, before + "RuntimeError: CUDA error: out of memory\n" + after)
    lines = a.error_logs_user.split("\n")
    assert len(lines) == 15
    assert lines[:4] == ["before 97", "before 98", "before 99", "RuntimeError: CUDA error: out of memory"]
    assert lines[-1] == "after 10"


def test_gpu_double_ecc_is_platform_failure():
    a = analyze(1, ZERO_DIVISION, gpu_info={"eccError": "double"})
    assert a.exit_code == 227
    assert a.matched_gpu_info == {"eccError": "double"}
    assert a.spec.type == "PLATFORM_FAILURE"
    assert analyze(1, ZERO_DIVISION, gpu_info={"eccError": "none"}).exit_code == 255


def test_platform_log_pattern():
    platform = "".join(f"[openpai-runtime] waiting for ssh of worker-{i}\n" for i in range(30))
    platform += "[openpai-runtime] SSH barrier reaches max retry count, exit\n"
    a = analyze(10, "", platform)
    assert a.exit_code == 249
    assert a.matched_platform_log == "[openpai-runtime] SSH barrier reaches max retry count, exit"
    assert len(a.error_logs_platform.split("\n")) <= 10
    assert a.matched_platform_log in a.error_logs_platform
    assert analyze(10, "", "all good\n").exit_code == 255


def test_prefixed_traceback_of_torchrun():
    text = log(
        """
        [rank1]: Traceback (most recent call last):
        [rank1]:   File "/workspace/ddp.py", line 30, in <module>
        [rank1]:     run()
        [rank1]: ValueError: Expected input batch_size (64) to match target batch_size (32).
        E0302 10:00:00.000 1 torch/distributed/elastic/multiprocessing/api.py:826] failed (exitcode: 1)
        """
    )
    a = analyze(1, text)
    assert a.caught_exception == "ValueError: Expected input batch_size (64) to match target batch_size (32)."
    assert a.exit_code == 255


def test_chained_and_grouped_exceptions():
    chained = log(
        """
        Traceback (most recent call last):
          File "a.py", line 2, in <module>
            d["k"]
        KeyError: 'k'

        During handling of the above exception, another exception occurred:

        Traceback (most recent call last):
          File "a.py", line 4, in <module>
            raise RuntimeError("config incomplete")
        RuntimeError: config incomplete
        """
    )
    assert find_exception(chained)[0] == "RuntimeError: config incomplete"
    group = log(
        """
          + Exception Group Traceback (most recent call last):
          |   File "a.py", line 1, in <module>
          |     raise ExceptionGroup("eg", [ValueError(1)])
          | ExceptionGroup: eg (1 sub-exception)
          +-+---------------- 1 ----------------
            | ValueError: 1
            +------------------------------------
        """
    )
    assert find_exception(group)[0] == "ExceptionGroup: eg (1 sub-exception)"
    assert find_exception("no traceback here\nValueError: not after a frame\n") is None


def test_progress_bar_carriage_returns():
    text = "train:  10%|#   | 10/100\rtrain:  20%|##  | 20/100\rtrain:  30%|### | 30/100\n" + ZERO_DIVISION
    a = analyze(1, text)
    assert "10%" not in a.error_logs_user
    assert "train:  30%" in a.error_logs_user
    assert a.caught_exception == "ZeroDivisionError: division by zero"


def test_crlf_logs():
    a = analyze(1, INDEX_ERROR.replace("\n", "\r\n"))
    assert a.exit_code == 233
    assert a.caught_exception == "IndexError: list index out of range"


def test_summary_format_and_round_trip():
    a = analyze(1, NOISE + IMPORT_ERROR)
    s = a.summary()
    assert s.startswith(SUMMARY_START + "\n") and s.endswith(SUMMARY_END)
    doc = parse_summary("junk before\n" + s + "\nmore junk")
    assert doc["exitCode"] == 232
    assert doc["originUserExitCode"] == 1
    assert doc["matchedUserLogString"] == a.matched_user_log
    assert doc["caughtException"] == a.caught_exception
    assert doc["errorLogs"]["user"] == a.error_logs_user
    assert "trigger" in doc


def test_summary_fits_in_4k_and_keeps_the_match():
    wide = "".join(f"{i:03d} " + "x" * 900 + "\n" for i in range(30))
    a = analyze(1, wide + "RuntimeError: CUDA error: out of memory\n" + wide, "p" * 900 + "\n" + "q" * 900)
    s = a.summary()
    assert len(s.encode()) <= 4096
    doc = parse_summary(s)
    assert doc["exitCode"] == 226
    assert doc["matchedUserLogString"] == "RuntimeError: CUDA error: out of memory"
    assert "platform" not in doc.get("errorLogs", {})
    assert "RuntimeError: CUDA error: out of memory" in doc["errorLogs"]["user"]


def test_summary_with_huge_strings_still_fits():
    a = analysis.Analysis(
        exit_code=255,
        origin_user_exit_code=1,
        trigger="t" * 5000,
        matched_user_log="m" * 5000,
        caught_exception="é" * 5000,
        error_logs_user="u" * 5000,
        error_logs_platform="p" * 5000,
    )
    s = a.summary()
    assert len(s.encode("utf-8")) <= 4096
    assert parse_summary(s)["exitCode"] == 255
    tiny = a.summary(max_bytes=120)
    assert len(tiny.encode()) <= 120
    assert parse_summary(tiny) == {"exitCode": 255, "originUserExitCode": 1}


def test_parse_summary_rejects_missing_or_broken():
    assert parse_summary("nothing") is None
    assert parse_summary(f"{SUMMARY_START}\n: : [\n{SUMMARY_END}") is None


def test_to_runtime_dict():
    a = analyze(1, IMPORT_ERROR)
    d = a.to_runtime_dict()
    assert {
        "exitCode",
        "originUserExitCode",
        "errorLogs",
        "name",
        "reason",
        "matchedUserLogString",
        "caughtException",
    } <= set(d)
    assert d["exitCode"] == 232 and d["originUserExitCode"] == 1
    assert d["name"] == "ContainerImportError"
    assert d["reason"] == a.spec.reason
    assert d["errorLogs"] == {"user": a.error_logs_user, "platform": ""}
    yaml.safe_dump(d)  # plain data


def test_only_the_last_10mb_are_searched():
    filler = "x" * 1023 + "\n"
    text = "ModuleNotFoundError: No module named 'gone'\n" + filler * (10 * 1024 + 8)
    assert analyze(1, text).exit_code == 255
    assert analyze(1, filler * 100 + "ModuleNotFoundError: No module named 'gone'\n").exit_code == 232


def test_read_tail(tmp_path):
    p = tmp_path / "user.log"
    p.write_bytes(b"first line\nsecond line\nthird \xff line\n")
    assert read_tail(p) == "first line\nsecond line\nthird \ufffd line\n"
    # Cut inside "second line": the partial line is dropped.
    assert read_tail(p, max_bytes=20) == "third \ufffd line\n"
    # Cut exactly at a line start: nothing is lost.
    assert read_tail(p, max_bytes=len("second line\nthird \xff line\n".encode("latin-1"))).startswith(
        "second line"
    )
    assert read_tail(tmp_path / "missing.log") == ""
    one_line = tmp_path / "bar.log"
    one_line.write_text("x" * 100)  # one huge line (progress bar): cut, not dropped
    assert read_tail(one_line, max_bytes=10) == "x" * 10


def test_analyze_files(tmp_path):
    user = tmp_path / "user.log"
    user.write_text(NOISE + INDEX_ERROR)
    platform = tmp_path / "runtime.log"
    platform.write_text("[openpai-runtime] starting user command\n")
    a = analyze_files(1, user, platform)
    assert a.exit_code == 233
    assert a.error_logs_platform == "[openpai-runtime] starting user command"
    assert analyze_files(1, tmp_path / "none.log").exit_code == 255


def test_init_failure_codes():
    assert init_failure_code("barrier", 200) == 250
    assert init_failure_code("barrier", 201) == 251
    assert init_failure_code("barrier", 210) == 252
    assert init_failure_code("port", 10) == 253
    assert init_failure_code("image", 1) == 254
    assert init_failure_code("barrier", 3) == 256


# ---- real processes --------------------------------------------------------------------------


def run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return proc.returncode, proc.stdout


def test_real_python_import_error():
    rc, out = run([sys.executable, "-c", "import nonexistent_mod"])
    a = analyze(rc, out)
    assert rc == 1
    assert a.exit_code == 232
    assert a.caught_exception == "ModuleNotFoundError: No module named 'nonexistent_mod'"
    assert a.matched_user_log == a.caught_exception


def test_real_bash_command_not_found():
    rc, out = run(["bash", "-c", "nosuchcommand"])
    a = analyze(rc, out)
    assert rc == 127
    assert a.exit_code == 220
    assert "nosuchcommand: command not found" in a.matched_user_log


def test_real_python_zero_division():
    rc, out = run([sys.executable, "-c", "1/0"])
    a = analyze(rc, out)
    assert a.exit_code == 255
    assert a.caught_exception == "ZeroDivisionError: division by zero"


def test_real_errexit_script_with_segfault():
    # The runtime runs the commands with errexit; bash reports the crashed child itself.
    script = (
        f"set -e\necho start\n{sys.executable} -c 'import ctypes; ctypes.string_at(0)'\necho unreachable\n"
    )
    rc, out = run(["bash", "-c", script])
    a = analyze(rc, out)
    assert rc == 139
    assert a.exit_code == 234
    assert "unreachable" not in out


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None or importlib.util.find_spec("torch") is None,
    reason="needs a GPU and torch",
)
def test_real_cuda_out_of_memory():
    rc, out = run(
        [sys.executable, "-c", "import torch; torch.empty(2**50, dtype=torch.uint8, device='cuda')"]
    )
    a = analyze(rc, out)
    assert rc == 1, out
    assert a.exit_code == 226, a.trigger
    assert "out of memory" in a.caught_exception.lower()
