"""The runtime's exit handler: turn a user command's exit code + log tail into an exit-spec code.

Reference openpai.md §3.3. On a non-zero user exit the runtime looks at the tail (<= 10 MB) of the
user's log and of its own (platform) log, picks an exit-spec code, and writes a YAML summary
(<= 4 KB) between `[PAI_RUNTIME_ERROR_START]` / `[PAI_RUNTIME_ERROR_END]` that the server turns into
`appExitMessages.runtime`.

How the code is chosen (first rule that applies wins):

0. Exit code 0 stays 0. A negative code -N with 1 <= N <= 64 (Python's `Popen.returncode` for a
   signal) is first normalised to 128 + N, like a shell reports it.
1. **Authoritative exit codes** keep their own code whatever the log says: the signal kills the
   table marks transient (SIGINT 130, SIGQUIT 131, SIGKILL 137, SIGTERM 143: the process was killed
   from outside, so a traceback such as `KeyboardInterrupt` in the log is a consequence, not a cause)
   and the user's retry contract 200 / 201 / 210 (scheduling.md §3.4).
2. **Log patterns** (patterns with userLogRegex / platformLogRegex / gpuInfo), in table order.
   They are tried twice: first with the user log reduced to the *caught exception* (the final line
   of the last Python traceback), so the exception that actually ended the program beats a handled
   error printed earlier; then against the whole log tail, where the *last* occurrence of a match
   is reported (closest to the failure). Every field of a pattern must match (an `exitCode` field
   is compared with the user's exit code), e.g. 220 needs exit 127 *and* "command not found";
   exit 139 + "Segmentation fault" gives 234.
3. **Exit-code-only patterns** (the remaining signal codes 128, 132, 134, 135, 136, 139, 141):
   the code is kept (e.g. 139 without a recognisable log stays 139).
4. Anything else non-zero becomes 255 (PAIRuntimeUnknownFailed); `caught_exception` is still set
   when the log ends in a Python traceback (e.g. "ZeroDivisionError: division by zero").
"""

from __future__ import annotations

import functools
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ..protocol.parse import dump_yaml
from .exit_spec import (
    RUNTIME_UNKNOWN_FAILURE_CODE,
    ExitSpec,
    RuntimePattern,
    all_specs,
    lookup,
)

MAX_LOG_BYTES = 10 * 1024 * 1024  # how much of each log tail is searched
MAX_SUMMARY_BYTES = 4096  # the whole summary, markers included (k8s termination-message budget)
MAX_USER_LOG_LINES = 15
MAX_PLATFORM_LOG_LINES = 10
MAX_MATCH_LEN = 2048
MAX_LINE_LEN = 1024  # per line of errorLogs
SUMMARY_START = "[PAI_RUNTIME_ERROR_START]"
SUMMARY_END = "[PAI_RUNTIME_ERROR_END]"

_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(?::.*)?")  # "Name" or "pkg.Name: message"
_BARE_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception|Warning|Interrupt|Exit)\b(?::.*)?")
_FRAME_LINE = re.compile(r"^\s+File \".*\", line \d+")
_GROUP_PREFIX = re.compile(r"^\s*[|+][-+]*\s?")  # "  | " / "  +-+--" of exception-group tracebacks


@dataclass
class Analysis:
    exit_code: int  # the exit-spec code chosen (what the task reports as its exit code)
    origin_user_exit_code: int  # what the user's command really exited with
    trigger: str = ""  # short human explanation of the choice
    matched_user_log: str | None = None  # the user-log line that matched a pattern
    matched_platform_log: str | None = None
    matched_gpu_info: dict[str, str] | None = None
    caught_exception: str | None = None  # final exception line of the last Python traceback
    error_logs_user: str = ""  # <= 15 lines around the match, else the tail
    error_logs_platform: str = ""  # <= 10 lines around the match, else the tail

    @property
    def spec(self) -> ExitSpec:
        return lookup(self.exit_code)

    def _summary_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "exitCode": self.exit_code,
            "originUserExitCode": self.origin_user_exit_code,
        }
        if self.trigger:
            doc["trigger"] = self.trigger
        if self.matched_user_log is not None:
            doc["matchedUserLogString"] = self.matched_user_log
        if self.matched_platform_log is not None:
            doc["matchedPlatformLogString"] = self.matched_platform_log
        if self.matched_gpu_info:
            doc["matchedGpuInfo"] = dict(self.matched_gpu_info)
        if self.caught_exception is not None:
            doc["caughtException"] = self.caught_exception
        logs = {}
        if self.error_logs_user:
            logs["user"] = self.error_logs_user
        if self.error_logs_platform:
            logs["platform"] = self.error_logs_platform
        if logs:
            doc["errorLogs"] = logs
        return doc

    def summary(self, max_bytes: int = MAX_SUMMARY_BYTES) -> str:
        """The runtime's termination message: YAML between the PAI_RUNTIME_ERROR markers.

        At most `max_bytes` UTF-8 bytes in all. When too long, the platform log is cut first, then
        the user log (keeping the matched line), then the matched strings, as OpenPAI's runtime does.
        """
        doc = self._summary_doc()
        text = _wrap(doc)
        if _size(text) <= max_bytes:
            return text
        logs = doc.get("errorLogs", {})
        # 1. platform log: drop its oldest lines.
        text = _shrink_lines(doc, logs, "platform", None, max_bytes)
        if _size(text) <= max_bytes:
            return text
        # 2. user log: drop lines before the matched line, then after it.
        text = _shrink_lines(doc, logs, "user", self.matched_user_log, max_bytes)
        if _size(text) <= max_bytes:
            return text
        doc.pop("errorLogs", None)
        # 3. long strings.
        for key in ("matchedPlatformLogString", "matchedUserLogString", "caughtException", "trigger"):
            if key in doc:
                doc[key] = _clip(doc[key], 200)
        text = _wrap(doc)
        if _size(text) <= max_bytes:
            return text
        # 4. only the codes survive.
        return _wrap({"exitCode": self.exit_code, "originUserExitCode": self.origin_user_exit_code})

    def to_runtime_dict(self) -> dict[str, Any]:
        """`appExitMessages.runtime` of the job-detail API."""
        spec = self.spec
        return {
            "exitCode": self.exit_code,
            "originUserExitCode": self.origin_user_exit_code,
            "name": spec.phrase,
            "reason": spec.reason,
            "trigger": self.trigger,
            "matchedUserLogString": self.matched_user_log,
            "matchedPlatformLogString": self.matched_platform_log,
            "matchedGpuInfo": dict(self.matched_gpu_info) if self.matched_gpu_info else None,
            "caughtException": self.caught_exception,
            "errorLogs": {"user": self.error_logs_user, "platform": self.error_logs_platform},
        }


def _wrap(doc: Mapping[str, Any]) -> str:
    return f"{SUMMARY_START}\n{dump_yaml(doc)}{SUMMARY_END}"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _shrink_lines(doc: dict, logs: dict, key: str, keep: str | None, max_bytes: int) -> str:
    if key not in logs:
        return _wrap(doc)
    lines = logs[key].split("\n")
    keep_at = next((i for i, line in enumerate(lines) if keep and keep in line), None)
    while lines:
        # Drop from the front while that does not lose the line to keep, else from the back.
        if keep_at is None or keep_at > 0:
            lines.pop(0)
            if keep_at is not None:
                keep_at -= 1
        else:
            lines.pop()
        if lines:
            logs[key] = "\n".join(lines)
        else:
            logs.pop(key)
            if not logs:
                doc.pop("errorLogs", None)
        text = _wrap(doc)
        if _size(text) <= max_bytes:
            return text
    return _wrap(doc)


def parse_summary(text: str) -> dict[str, Any] | None:
    """The YAML document of the last runtime summary found in `text` (a termination message or a
    log), or None when there is none or it is not valid YAML."""
    end = text.rfind(SUMMARY_END)
    if end < 0:
        return None
    start = text.rfind(SUMMARY_START, 0, end)
    if start < 0:
        return None
    try:
        doc = yaml.safe_load(text[start + len(SUMMARY_START) : end])
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


# --------------------------------------------------------------------------------------------------
# Log helpers


def read_tail(path: str | os.PathLike[str], max_bytes: int = MAX_LOG_BYTES) -> str:
    """The last `max_bytes` of a log file as text ("" when the file does not exist).

    When the file is longer, the first (partial) line of the tail is dropped. Invalid UTF-8 is
    replaced, never an error.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            offset = max(0, size - max_bytes)
            f.seek(max(0, offset - 1))
            data = f.read(size - offset + (1 if offset else 0))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""
    if offset > 0:
        # data starts with the byte before the tail: drop it, and the tail's partial first line
        # (unless it is the only line: a huge last line is better cut than lost).
        nl = data.find(b"\n")
        data = data[nl + 1 :] if 0 <= nl < len(data) - 1 else data[1:]
    return data.decode("utf-8", errors="replace")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n")
    if len(text) > MAX_LOG_BYTES:
        text = text[-MAX_LOG_BYTES:]
    return text.rstrip("\n")


def _render_line(line: str) -> str:
    # A terminal shows only what follows the last carriage return (progress bars).
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return _clip(line, MAX_LINE_LEN)


def _line_bounds(text: str, start: int, end: int | None = None) -> tuple[int, int]:
    """[begin, finish) of the line(s) containing text[start:end]; '\\r' also separates segments."""
    end = start if end is None else max(start, end - 1)
    begin = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    finish_candidates = [i for i in (text.find("\n", end), text.find("\r", end)) if i >= 0]
    finish = min(finish_candidates) if finish_candidates else len(text)
    return begin, finish


def _window(text: str, pos: int | None, n: int, before: int = 3, shown: str | None = None) -> str:
    """<= n rendered lines around the line containing `pos` (3 before, the rest after, more before
    when the log ends soon after), or the last n lines when pos is None. `shown` replaces the text
    displayed for the line at `pos`."""
    if not text:
        return ""
    lines = text.split("\n")
    if pos is None:
        chosen = lines[-n:]
        return "\n".join(_render_line(line) for line in chosen)
    idx = text.count("\n", 0, pos)
    after = min(len(lines) - idx - 1, n - 1 - before)
    before_n = min(idx, n - 1 - after)
    out = []
    for i in range(idx - before_n, idx + after + 1):
        if i == idx:
            if shown is None:
                # The matched segment, even if a later '\r' segment overwrote it on a terminal.
                b, f = _line_bounds(text, pos)
                shown = text[b:f]
            out.append(_clip(shown, MAX_LINE_LEN))
        else:
            out.append(_render_line(lines[i]))
    return "\n".join(out)


def _exception_after(log: str, pos: int) -> tuple[str, int] | None:
    """The exception line ending the traceback whose header starts at `pos`."""
    line_start = log.rfind("\n", 0, pos) + 1
    prefix = log[line_start:pos]
    group = "Exception Group" in prefix
    off = log.find("\n", pos)
    while off != -1:
        start = off + 1
        end = log.find("\n", start)
        line = log[start : end if end != -1 else len(log)]
        off = end
        if group:
            body = _GROUP_PREFIX.sub("", line, count=1)
        elif prefix and line.startswith(prefix):
            body = line[len(prefix) :]
        else:
            body = line
        body = _render_line(body).rstrip()
        if not body.strip() or body[0] in " \t":
            continue  # a frame, source line, caret marker, or blank
        if _EXCEPTION_LINE.fullmatch(body):
            return body, start
        return None
    return None


_NOTEBOOK_CELL = re.compile(r'^Exception encountered at "In \[([^\]\n]*)\]":', re.MULTILINE)
_IPYTHON_HEADER = re.compile(r"^([A-Za-z_][\w.]*)\s+Traceback \(most recent call last\)\s*$")
_EXCEPTION_WITH_MESSAGE = re.compile(r"[A-Za-z_][\w.]*: .*")


def notebook_cell_error(log: str) -> tuple[str, str, int] | None:
    """(cell label, exception line, offset) of papermill's last failing cell in `log`.

    papermill reports a failing cell as `Exception encountered at "In [N]":` followed by the cell's
    IPython traceback (`KeyError   Traceback (most recent call last)` ... `KeyError: 'c'`); the
    exception line is the last line of that block that starts with the exception's name."""
    matches = list(_NOTEBOOK_CELL.finditer(log))
    if not matches:
        return None
    last = matches[-1]
    offset = last.end() + 1
    ename = None
    found: tuple[str, int] | None = None
    for line in log[offset:].split("\n")[:400]:
        text = _render_line(line).rstrip()
        if ename is None:
            header = _IPYTHON_HEADER.match(text)
            if header:
                ename = header.group(1)
        if not text or text[0] in " \t-" or text.startswith(("Cell In[", "Input In [")):
            pass
        elif (ename and (text == ename or text.startswith(ename + ":"))) or (
            not ename and (_BARE_EXCEPTION_LINE.fullmatch(text) or _EXCEPTION_WITH_MESSAGE.fullmatch(text))
        ):
            found = (_clip(text, MAX_MATCH_LEN), offset)
        offset += len(line) + 1
    if found is None:
        return None
    return f"In [{last.group(1)}]", found[0], found[1]


def find_exception(log: str) -> tuple[str, int] | None:
    """(final exception line, offset of its line) of the last Python traceback in `log`.

    Handles prefixed tracebacks (`[rank0]: Traceback ...`), exception groups, SyntaxErrors of a
    main script (printed without a "Traceback" header), and notebook cells run by papermill (the
    failing cell's exception, not `PapermillExecutionError`).
    """
    found = _python_exception(log)
    cell = notebook_cell_error(log)
    if cell is not None and (found is None or cell[2] > found[1]):
        return cell[1], cell[2]
    return found


def _python_exception(log: str) -> tuple[str, int] | None:
    pos = len(log)
    for _ in range(20):
        pos = log.rfind(_TRACEBACK, 0, pos)
        if pos < 0:
            break
        found = _exception_after(log, pos)
        if found is not None:
            return found
    # No usable traceback: an exception line at column 0 shortly after a `File "...", line N` frame.
    lines = log.rsplit("\n", 50)
    base = len(log) - sum(len(x) + 1 for x in lines) + 1  # offset of lines[0]
    for i in range(len(lines) - 1, 0, -1):
        line = lines[i].rstrip()
        if (
            line
            and _BARE_EXCEPTION_LINE.fullmatch(line)
            and any(_FRAME_LINE.match(prev) for prev in lines[max(0, i - 6) : i])
        ):
            return _clip(line, MAX_MATCH_LEN), base + sum(len(x) + 1 for x in lines[:i])
    return None


@functools.lru_cache(maxsize=512)
def _compile(rx: str) -> re.Pattern[str]:
    return re.compile(rx, re.MULTILINE)


def _required_literals(items: Any) -> list[str] | None:
    """Alternatives of which one must occur in any text the parsed regex `items` matches (lower
    case), or None when no useful literal is required."""
    candidates: list[list[str]] = []
    run = ""
    for op, av in items:
        name = getattr(op, "name", str(op))
        if name == "LITERAL":
            run += chr(av)
            continue
        if run:
            candidates.append([run])
            run = ""
        if name == "SUBPATTERN":
            sub = _required_literals(av[-1])
            if sub:
                candidates.append(sub)
        elif name == "BRANCH":
            alts: list[str] = []
            for branch in av[1]:
                sub = _required_literals(branch)
                if not sub:
                    alts = []
                    break
                alts.extend(sub)
            if alts:
                candidates.append(alts)
    if run:
        candidates.append([run])
    candidates = [c for c in candidates if min(len(x) for x in c) >= 3]
    if not candidates:
        return None
    return max(candidates, key=lambda c: min(len(x) for x in c))


@functools.lru_cache(maxsize=512)
def _hints(rx: str) -> tuple[str, ...] | None:
    """Lower-case literals, one of which a text must contain for `rx` to match (a cheap prefilter
    before running the regex over megabytes of log); None when unknown."""
    try:
        try:
            from re import _parser as sre_parse  # type: ignore[attr-defined]
        except ImportError:  # Python 3.10
            import sre_parse  # type: ignore[no-redef]
        found = _required_literals(sre_parse.parse(rx))
    except Exception:  # private API: any surprise just disables the prefilter
        return None
    if not found or not all(x.isascii() for x in found):
        return None
    return tuple(x.lower() for x in found)


class _Text:
    """A text to search, with its lower-case copy made on first need."""

    def __init__(self, text: str):
        self.text = text
        self._lower: str | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower


def _last_match(rx: str, text: _Text) -> re.Match[str] | None:
    hints = _hints(rx)
    if hints is not None and not any(h in text.lower for h in hints):
        return None
    last = None
    for last in _compile(rx).finditer(text.text):  # noqa: B007 - we want the last one
        pass
    return last


@dataclass
class _Hit:
    spec: ExitSpec
    user: re.Match[str] | None
    platform: re.Match[str] | None
    gpu: dict[str, str] | None


def _match(
    spec: ExitSpec,
    pattern: RuntimePattern,
    exit_code: int,
    user_text: _Text,
    platform_log: _Text,
    gpu_info: Mapping[str, Any] | None,
) -> _Hit | None:
    if pattern.exit_code is not None and pattern.exit_code != exit_code:
        return None
    gpu = None
    if pattern.gpu_info is not None:
        if not gpu_info or any(str(gpu_info.get(k)) != v for k, v in pattern.gpu_info):
            return None
        gpu = dict(pattern.gpu_info)
    pm = None
    if pattern.platform_log_regex is not None:
        pm = _last_match(pattern.platform_log_regex, platform_log)
        if pm is None:
            return None
    um = None
    if pattern.user_log_regex is not None:
        um = _last_match(pattern.user_log_regex, user_text)
        if um is None:
            return None
    return _Hit(spec, um, pm, gpu)


def _signal_name(code: int) -> str | None:
    if 128 < code <= 128 + 64:
        try:
            return signal.Signals(code - 128).name
        except ValueError:
            return None
    return None


def _is_authoritative(spec: ExitSpec) -> bool:
    return spec.is_transient or 200 <= spec.code <= 219


def analyze(
    user_exit_code: int,
    user_log: str,
    platform_log: str = "",
    *,
    gpu_info: Mapping[str, Any] | None = None,
) -> Analysis:
    """Pick the exit-spec code for a finished user command (see the module docstring for the rules).

    `user_log` / `platform_log` are the log tails (only the last 10 MB are looked at); `gpu_info`
    is optional GPU state for gpuInfo patterns, e.g. {"eccError": "double"}.
    """
    origin = user_exit_code
    code = 128 - user_exit_code if -64 <= user_exit_code < 0 else user_exit_code
    user_log = _normalise(user_log or "")
    platform_log = _normalise(platform_log or "")

    if code == 0:
        return Analysis(exit_code=0, origin_user_exit_code=origin)

    exc = find_exception(user_log)
    caught = exc[0] if exc else None
    specs = all_specs()

    def result(
        spec: ExitSpec,
        trigger: str,
        *,
        user_pos: int | None = None,
        user_shown: str | None = None,
        matched_user: str | None = None,
        platform_pos: int | None = None,
        matched_platform: str | None = None,
        gpu: dict[str, str] | None = None,
    ) -> Analysis:
        return Analysis(
            exit_code=spec.code,
            origin_user_exit_code=origin,
            trigger=trigger,
            matched_user_log=matched_user,
            matched_platform_log=matched_platform,
            matched_gpu_info=gpu,
            caught_exception=caught,
            error_logs_user=_window(user_log, user_pos, MAX_USER_LOG_LINES, shown=user_shown),
            error_logs_platform=_window(platform_log, platform_pos, MAX_PLATFORM_LOG_LINES),
        )

    def exited() -> str:
        sig = _signal_name(code)
        if sig:
            return f"User command was terminated by {sig} (exit code {code})"
        return f"User command exited with code {code}"

    # 1. Authoritative exit codes.
    for spec in specs:
        if _is_authoritative(spec) and any(p.exit_code_only and p.exit_code == code for p in spec.patterns):
            return result(spec, f"{exited()}: {spec.phrase}")

    # 2. Log patterns: first against the caught exception, then against the whole log tail.
    log_patterns = [(s, p) for s in specs for p in s.patterns if not p.exit_code_only]
    passes: list[tuple[str, str, int | None]] = []
    if exc is not None:
        passes.append(("its final exception", exc[0], exc[1]))
    passes.append(("its log", user_log, None))
    platform = _Text(platform_log)
    for where, text, base in passes:
        searched = _Text(text)
        for spec, pattern in log_patterns:
            hit = _match(spec, pattern, code, searched, platform, gpu_info)
            if hit is None:
                continue
            user_pos = user_shown = matched_user = platform_pos = matched_platform = None
            if hit.user is not None:
                b, f = _line_bounds(text, hit.user.start(), hit.user.end())
                matched_user = _clip(text[b:f].strip(), MAX_MATCH_LEN)
                if base is None:
                    user_pos = hit.user.start()
                else:  # matched the caught exception: point the window at its line
                    user_pos, user_shown = base, text
            if hit.platform is not None:
                b, f = _line_bounds(platform_log, hit.platform.start(), hit.platform.end())
                matched_platform = _clip(platform_log[b:f].strip(), MAX_MATCH_LEN)
                platform_pos = hit.platform.start()
            if hit.user is not None:
                source = where
            elif hit.platform is not None:
                source = "the runtime log"
            else:
                source = "the GPU state"
            return result(
                spec,
                f"{exited()}; {source} matched {spec.code} {spec.phrase}",
                user_pos=user_pos,
                user_shown=user_shown,
                matched_user=matched_user,
                platform_pos=platform_pos,
                matched_platform=matched_platform,
                gpu=hit.gpu,
            )

    # 3. Exit codes that are in the table on their own (signals).
    for spec in specs:
        if any(p.exit_code_only and p.exit_code == code for p in spec.patterns):
            return result(
                spec, f"{exited()}: {spec.phrase}", user_pos=exc[1] if exc else None, user_shown=caught
            )

    # 4. Unrecognised.
    spec = lookup(RUNTIME_UNKNOWN_FAILURE_CODE)
    trigger = f"{exited()}; no known failure pattern matched"
    if caught:
        cell = notebook_cell_error(user_log)
        where = f" in notebook cell {cell[0]}" if cell is not None and cell[1] == caught else ""
        trigger += f" (last exception{where}: {_clip(caught, 200)})"
    return result(spec, trigger, user_pos=exc[1] if exc else None, user_shown=caught)


def analyze_files(
    user_exit_code: int,
    user_log_path: str | os.PathLike[str] | None,
    platform_log_path: str | os.PathLike[str] | None = None,
    *,
    gpu_info: Mapping[str, Any] | None = None,
    max_bytes: int = MAX_LOG_BYTES,
) -> Analysis:
    """`analyze` on the tails of log files (missing files count as empty logs)."""
    user = read_tail(user_log_path, max_bytes) if user_log_path else ""
    platform = read_tail(platform_log_path, max_bytes) if platform_log_path else ""
    return analyze(user_exit_code, user, platform, gpu_info=gpu_info)


# Init-step failures (reference §3.3): the runtime's setup steps report their own return codes.
_INIT_FAILURES: dict[tuple[str, int], int] = {
    ("barrier", 200): 250,  # FrameworkBarrierTransientFailed
    ("barrier", 201): 251,  # JobGangAllocationTimeout
    ("barrier", 210): 252,  # FrameworkBarrierPermanentFailed
    ("port", 10): 253,  # ContainerPortConflict
}


def init_failure_code(step: str, rc: int) -> int:
    """Exit-spec code for a failed setup step: `step` is "barrier", "port" or "image".

    barrier rc 200/201/210 -> 250/251/252, port check rc 10 -> 253, any image-check failure -> 254;
    anything else -> 256 (the runtime itself failed)."""
    if step == "image" and rc != 0:
        return 254
    return _INIT_FAILURES.get((step, rc), 256)
