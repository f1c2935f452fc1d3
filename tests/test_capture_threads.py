"""One live capture used from several threads and from asyncio: `stop()` and `stats()` while another
thread waits in the iteration, `next(timeout=)`, `async for` stopped by `loop.call_later`, two threads
sharing one iteration, and packets that pickle. Captures run on `int` in the test's own namespaces, with
bounded traffic to addresses inside them (see netns.py)."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import threading
import time

import netns
import pcapdump
import pytest
from conftest import wait_until
from netns import CAP_V4
from test_live_capture import interrupted_while_waiting, numbers

pytestmark = pytest.mark.live

PORT = 9000


def start(net: netns.TestNet) -> pcapdump.Capture:
    with net.on_capture_side():
        return pcapdump.capture("int", filter=f"udp dstport {PORT}")


def test_a_thread_stops_the_capture_while_another_iterates(testnet):
    got: list[pcapdump.Packet] = []
    failed: list[BaseException] = []

    def iterate(cap: pcapdump.Capture) -> None:
        try:
            got.extend(cap)
        except BaseException as e:
            failed.append(e)

    with start(testnet) as cap:
        reader = threading.Thread(target=iterate, args=(cap,))
        reader.start()
        testnet.send_udp(CAP_V4, PORT, 50)
        # The reader waits in the iteration meanwhile; stats() answers all the same.
        counts = []
        for _ in range(20):
            counts.append(cap.stats()["packets"])
            time.sleep(0.01)
        assert wait_until(lambda: cap.stats()["packets"] == 50)
        assert reader.is_alive()
        cap.stop()
        reader.join(timeout=10)
        assert not reader.is_alive()
    assert failed == []
    assert counts == sorted(counts)
    assert numbers(got) == list(range(50))
    assert cap.stats()["state"] == "stopped"
    assert cap.finished


def test_stop_wakes_a_thread_waiting_in_next(testnet):
    got: list[pcapdump.Packet | None] = []
    with start(testnet) as cap:
        waiter = threading.Thread(target=lambda: got.append(cap.next()))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # nothing was sent: it waits
        cap.stop()
        stopped = time.monotonic()
        waiter.join(timeout=10)
        woke = time.monotonic() - stopped
    assert got == [None]
    assert cap.finished
    assert woke < 1


def test_next_with_a_timeout_gives_none_in_silence_and_a_packet_with_traffic(testnet):
    with start(testnet) as cap:
        began = time.monotonic()
        assert cap.next(timeout=0.2) is None
        assert 0.2 <= time.monotonic() - began < 2
        assert not cap.finished
        testnet.send_udp(CAP_V4, PORT, 1)
        pkt = cap.next(timeout=5)
        assert isinstance(pkt, pcapdump.Packet)
        assert numbers([pkt]) == [0]
        with pytest.raises(ValueError, match="timeout=-1"):
            cap.next(timeout=-1)
        cap.stop()
        assert cap.next(timeout=5) is None
        assert cap.finished


def test_two_threads_iterating_one_capture_share_its_packets(testnet):
    got: tuple[list[pcapdump.Packet], list[pcapdump.Packet]] = ([], [])
    failed: list[BaseException] = []

    def iterate(cap: pcapdump.Capture, mine: list[pcapdump.Packet]) -> None:
        try:
            for pkt in cap:
                mine.append(pkt)
                time.sleep(0.001)  # the other thread takes the next ones meanwhile
        except BaseException as e:
            failed.append(e)

    with start(testnet) as cap:
        readers = [threading.Thread(target=iterate, args=(cap, mine)) for mine in got]
        for reader in readers:
            reader.start()
        testnet.send_udp(CAP_V4, PORT, 400, pause_every=50)
        assert wait_until(lambda: cap.stats()["packets"] == 400)
        cap.stop()
        for reader in readers:
            reader.join(timeout=20)
    assert failed == []
    assert not any(reader.is_alive() for reader in readers)
    first, second = (numbers(mine) for mine in got)
    assert first and second
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == list(range(400))
    assert first == sorted(first) and second == sorted(second)


def test_async_for_ends_when_call_later_stops_the_capture(testnet):
    async def main() -> tuple[list[pcapdump.Packet], int]:
        loop = asyncio.get_running_loop()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        with start(testnet) as cap:
            ticker = asyncio.create_task(tick())
            sent = loop.run_in_executor(None, testnet.send_udp, CAP_V4, PORT, 30)
            sent.add_done_callback(lambda _: loop.call_later(0.3, cap.stop))
            got = [pkt async for pkt in cap]
            await sent
            ticker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ticker
        return got, ticks

    got, ticks = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert numbers(got) == list(range(30))
    # The iteration waited at least 0.3 s; the loop went on meanwhile.
    assert ticks > 10


def test_cancelling_a_task_waiting_in_async_for_loses_no_packet(testnet):
    async def main() -> list[pcapdump.Packet]:
        async def first(cap: pcapdump.Capture) -> pcapdump.Packet:
            async for pkt in cap:
                return pkt
            raise AssertionError("the capture ended")

        with start(testnet) as cap:
            waiting = asyncio.create_task(first(cap))
            await asyncio.sleep(0.2)
            # The loop is blocked until the cancel: packets are stored and signalled, none is taken.
            testnet.send_udp(CAP_V4, PORT, 10)
            assert wait_until(lambda: cap.stats()["packets"] == 10)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            asyncio.get_running_loop().call_later(0.2, cap.stop)
            return [pkt async for pkt in cap]

    got = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert numbers(got) == list(range(10))


def test_a_captured_packet_pickles_to_an_equal_packet(testnet):
    with start(testnet) as cap:
        testnet.send_udp(CAP_V4, PORT, 2)
        one, two = next(cap), next(cap)
    back = pickle.loads(pickle.dumps(one))
    assert back == one and hash(back) == hash(one)
    fields = ("ts_ns", "data", "wirelen", "iface", "direction", "linktype", "index")
    assert [getattr(back, f) for f in fields] == [getattr(one, f) for f in fields]
    assert (back.iface, back.direction, back.linktype) == ("int", "in", 1)
    assert back != two
    by_hand = pcapdump.Packet(1, b"\x00" * 20, wirelen=60)
    assert pickle.loads(pickle.dumps(by_hand)) == by_hand


def test_ctrl_c_interrupts_a_waiting_next(testnet):
    interrupted_while_waiting(testnet, "cap.next()")


DAEMON_AT_EXIT = """
import sys, threading, time, pcapdump
cap = pcapdump.capture("int", filter="udp")
# Several waiting threads, so that one of them is likely to be between two waits while the interpreter
# exits.
for _ in range(8):
    threading.Thread(target=lambda: list(cap), daemon=True).start()
time.sleep(0.5)
print("main exits", flush=True)
"""


def test_the_interpreter_exits_cleanly_while_a_daemon_thread_waits_for_packets(testnet):
    # CPython ends a daemon thread that comes back into an exiting interpreter with pthread_exit,
    # which crashed the process (SIGSEGV) when that thread was waiting inside pcapdump.
    for _ in range(8):
        done = subprocess.run(
            ["ip", "netns", "exec", testnet.cap_ns, sys.executable, "-c", DAEMON_AT_EXIT],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout.strip()) == (0, "main exits"), done.stderr[-2000:]
