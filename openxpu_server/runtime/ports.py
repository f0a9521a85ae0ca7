"""Host ports for tasks (OpenPAI tasks run with host networking and reserve ports by label).

OpenPAI derives ports from an md5 of the pod UID and only *checks* them at start (exit 253 on a
conflict). OpenXPU hands out ports that are free right now and not held by any live task, which
makes conflicts between its own tasks impossible and conflicts with other programs unlikely.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
from collections.abc import Iterable, Iterator

DEFAULT_PORT_START = 15000  # SCHEDULE_PORT_START
DEFAULT_PORT_END = 40000  # SCHEDULE_PORT_END (exclusive)
_CHECK_HOSTS = ("127.0.0.1", "0.0.0.0")


class NoFreePortError(RuntimeError):
    """Not enough free ports in the allocator's range."""


def is_port_free(port: int, hosts: Iterable[str] = _CHECK_HOSTS) -> bool:
    """Whether a TCP socket can bind `port` on every host address in `hosts` right now.

    SO_REUSEADDR stays off, so a port with a listener or a lingering (TIME_WAIT) connection counts
    as taken. IPv6 addresses are checked only when the host supports IPv6.
    """
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if family == socket.AF_INET6:
                continue  # no IPv6 on this host
            raise
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            sock.bind((host, port))
        except OSError as e:
            if family == socket.AF_INET6 and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                continue
            return False
        finally:
            sock.close()
    return True


def _ephemeral_range() -> range | None:
    """The kernel's range for outgoing connections' local ports (Linux), if known."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return range(low, high + 1)
    except (OSError, ValueError):
        return None


class PortAllocator:
    """Hands out host ports: free on this host and not in `held` (ports of live tasks).

    Ports come from [start, end). A rotating cursor makes consecutive allocations use different
    ports even before the previous task has bound its own. Ports of the kernel's ephemeral range
    (which outgoing connections may grab at any time) are used only when no other port is free.
    Thread-safe.
    """

    def __init__(
        self,
        start: int = DEFAULT_PORT_START,
        end: int = DEFAULT_PORT_END,
        *,
        hosts: Iterable[str] = _CHECK_HOSTS,
        cursor: int | None = None,
        avoid_ephemeral: bool = True,
    ):
        if not 0 < start < end <= 65536:
            raise ValueError(f"invalid port range [{start}, {end})")
        self.start = start
        self.end = end
        self.hosts = tuple(hosts)
        self._size = end - start
        self._cursor = (cursor - start) % self._size if cursor is not None else random.randrange(self._size)
        eph = _ephemeral_range() if avoid_ephemeral else None
        self._ephemeral = eph if eph is not None and len(eph) else None
        self._lock = threading.Lock()

    def _is_ephemeral(self, port: int) -> bool:
        return self._ephemeral is not None and port in self._ephemeral

    def _candidates(self) -> Iterator[int]:
        """Every port of the range once, from the cursor: non-ephemeral ports first."""
        order = [self.start + (self._cursor + i) % self._size for i in range(self._size)]
        yield from (p for p in order if not self._is_ephemeral(p))
        yield from (p for p in order if self._is_ephemeral(p))

    def allocate(
        self, labels: dict[str, int], held: set[int] | frozenset[int] = frozenset()
    ) -> dict[str, list[int]]:
        """Ports for each label (label -> count), all distinct, free, and not in `held`.

        Raises NoFreePortError when the range cannot supply them all (nothing is reserved then).
        """
        for label, count in labels.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"port count for {label!r} must be a non-negative int, got {count!r}")
        needed = sum(labels.values())
        with self._lock:
            chosen: list[int] = []
            if needed:
                for port in self._candidates():
                    if port in held or not is_port_free(port, self.hosts):
                        continue
                    chosen.append(port)
                    if len(chosen) == needed:
                        break
            if len(chosen) < needed:
                raise NoFreePortError(
                    f"need {needed} free port(s) in [{self.start}, {self.end}) but found only {len(chosen)} "
                    f"({len(held)} held by live tasks); free some ports or widen the port range"
                )
            if chosen:
                self._cursor = (chosen[-1] + 1 - self.start) % self._size
        out: dict[str, list[int]] = {}
        it = iter(chosen)
        for label, count in labels.items():
            out[label] = [next(it) for _ in range(count)]
        return out
