from __future__ import annotations

import socket
import threading

import pytest

from openxpu_server.runtime import ports as ports_mod
from openxpu_server.runtime.ports import NoFreePortError, PortAllocator, is_port_free


@pytest.fixture(autouse=True)
def no_ephemeral(monkeypatch):
    # Deterministic ordering regardless of the host's ip_local_port_range.
    monkeypatch.setattr(ports_mod, "_ephemeral_range", lambda: None)


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, port))
    s.listen()
    return s


def all_ports(allocation: dict[str, list[int]]) -> list[int]:
    return [p for ps in allocation.values() for p in ps]


def test_allocates_requested_labels_with_distinct_bindable_ports():
    alloc = PortAllocator()
    got = alloc.allocate({"ssh": 1, "http": 1, "sync": 3}, set())
    assert list(got) == ["ssh", "http", "sync"]
    assert [len(v) for v in got.values()] == [1, 1, 3]
    ps = all_ports(got)
    assert len(set(ps)) == 5
    assert all(15000 <= p < 40000 for p in ps)
    socks = []
    try:
        for p in ps:  # really bindable on all interfaces
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("0.0.0.0", p))
            socks.append(s)
    finally:
        for s in socks:
            s.close()


def test_consecutive_allocations_do_not_collide():
    alloc = PortAllocator(20000, 20100, cursor=20000)
    seen: set[int] = set()
    for _ in range(10):
        ps = all_ports(alloc.allocate({"http": 1, "ssh": 1}, set()))
        assert not seen & set(ps)
        seen |= set(ps)


def test_held_ports_are_skipped():
    alloc = PortAllocator(21000, 21010, cursor=21000)
    got = alloc.allocate({"http": 3}, {21000, 21001, 21003})
    assert got == {"http": [21002, 21004, 21005]}


def test_busy_ports_are_skipped():
    busy = listen("127.0.0.1")
    port = busy.getsockname()[1]
    try:
        assert not is_port_free(port)
        alloc = PortAllocator(port, min(port + 20, 65536), cursor=port)
        got = alloc.allocate({"http": 1}, set())
        assert got["http"][0] != port
    finally:
        busy.close()


def test_listener_on_any_address_is_detected():
    busy = listen("0.0.0.0")
    try:
        assert not is_port_free(busy.getsockname()[1])
    finally:
        busy.close()


def test_cursor_wraps_around():
    alloc = PortAllocator(22000, 22005, cursor=22004)
    assert alloc.allocate({"a": 2}, set()) == {"a": [22004, 22000]}
    assert alloc.allocate({"a": 1}, set()) == {"a": [22001]}


def test_no_free_port_raises_and_reserves_nothing():
    alloc = PortAllocator(23000, 23004, cursor=23000)
    with pytest.raises(NoFreePortError, match="need 5 free port"):
        alloc.allocate({"http": 5}, set())
    with pytest.raises(NoFreePortError):
        alloc.allocate({"http": 1}, {23000, 23001, 23002, 23003})
    # The failed attempts did not move the cursor.
    assert alloc.allocate({"http": 1}, set()) == {"http": [23000]}


def test_zero_and_invalid_counts():
    alloc = PortAllocator(24000, 24010)
    assert alloc.allocate({"ssh": 0}, set()) == {"ssh": []}
    assert alloc.allocate({}, set()) == {}
    with pytest.raises(ValueError):
        alloc.allocate({"ssh": -1}, set())
    with pytest.raises(ValueError):
        alloc.allocate({"ssh": True}, set())


@pytest.mark.parametrize(("start", "end"), [(0, 10), (100, 100), (200, 100), (60000, 70000)])
def test_invalid_range(start, end):
    with pytest.raises(ValueError):
        PortAllocator(start, end)


def test_ephemeral_ports_are_used_last(monkeypatch):
    monkeypatch.setattr(ports_mod, "_ephemeral_range", lambda: range(25000, 25005))
    alloc = PortAllocator(24998, 25008, cursor=25000)
    got = alloc.allocate({"p": 5}, set())["p"]
    assert got == [25005, 25006, 25007, 24998, 24999]
    assert alloc.allocate({"p": 5}, set(got))["p"][0] == 25000  # only ephemeral ones left


def test_concurrent_allocations_are_distinct():
    alloc = PortAllocator(26000, 26200)
    results: list[list[int]] = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            ps = all_ports(alloc.allocate({"http": 2}, set()))
            with lock:
                results.append(ps)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [p for ps in results for p in ps]
    assert len(flat) == 40 == len(set(flat))
