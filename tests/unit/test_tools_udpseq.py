"""testbed.tools.udpseq: the analysis functions, and a loopback send/receive (no root needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import pytest

from testbed.tools import udpseq


def test_encode_decode_round_trip() -> None:
    data = udpseq.encode(7, 123456789, 100)
    assert len(data) == 100
    assert udpseq.decode(data) == (7, 123456789)
    assert udpseq.decode(b"XXXX" + data[4:]) is None
    assert udpseq.decode(data[:10]) is None
    with pytest.raises(ValueError):
        udpseq.encode(0, 0, udpseq.MIN_SIZE - 1)


@pytest.mark.parametrize(
    ("received", "expected", "runs"),
    [
        ([0, 1, 2, 3], 4, []),
        ([0, 3], 4, [2]),
        ([1, 2], 4, [1, 1]),
        ([], 3, [3]),
        ([0, 2, 5, 6], 9, [1, 2, 2]),
        ([0, 1, 2, 9], 3, []),  # numbers beyond ``expected`` are not losses
    ],
)
def test_loss_runs(received: list[int], expected: int, runs: list[int]) -> None:
    assert udpseq.loss_runs(received, expected) == runs


def test_summary_counts_loss_duplicates_reorder_and_ip_rate() -> None:
    seqs = [0, 2, 1, 2, 5]
    times = [0.0, 0.1, 0.2, 0.3, 0.4]
    sizes = [100] * 5
    s = udpseq.summarize(seqs, times, sizes, expected=8)
    assert s["unique"] == 4 and s["duplicates"] == 1
    assert s["reordered"] == 1  # 1 arrived after 2
    assert s["lost"] == 4 and s["loss_rate"] == 0.5
    assert s["loss_runs"] == 2 and s["mean_loss_run"] == 2.0 and s["max_loss_run"] == 2
    assert s["run_lengths"] == {"2": 2}
    assert s["ip_bytes"] == 5 * 128
    # 4 gaps over 0.4 s carry 4 packets of 128 IP bytes
    assert s["rate_ip_bps"] == pytest.approx(4 * 128 * 8 / 0.4)


def test_summary_without_expected_uses_highest_seen() -> None:
    s = udpseq.summarize([0, 3], [0.0, 1.0], [50, 50])
    assert s["expected"] == 4 and s["lost"] == 2
    empty = udpseq.summarize([], [], [], expected=5)
    assert empty["lost"] == 5 and empty["rate_ip_bps"] == 0.0 and empty["max_seq"] is None


def test_schedule_is_paced_from_start() -> None:
    assert list(udpseq.schedule(3, 10.0, 5.0)) == pytest.approx([5.0, 5.1, 5.2])
    assert list(udpseq.schedule(2, 0, 1.0)) == [1.0, 1.0]


def test_binomial_interval_contains_the_estimate_and_narrows() -> None:
    lo, hi = udpseq.binomial_interval(100, 10_000)
    assert lo < 0.01 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * (0.01 * 0.99 / 10_000) ** 0.5, rel=0.05)
    lo2, hi2 = udpseq.binomial_interval(1000, 100_000)
    assert hi2 - lo2 < hi - lo
    assert udpseq.binomial_interval(0, 0) == (0.0, 1.0)
    assert udpseq.binomial_interval(0, 100)[0] == 0.0


def test_loopback_send_and_receive() -> None:
    result: dict[str, object] = {}
    ready = threading.Event()

    class Out(io.StringIO):
        def flush(self) -> None:
            ready.set()

    out = Out()

    def rx() -> None:
        result.update(udpseq.receive(0, bind="127.0.0.1", count=200, idle=2.0, timeout=10.0, out=out))

    # Port 0 picks a free port; the receiver reports it in its ready line.
    t = threading.Thread(target=rx)
    t.start()
    assert ready.wait(5)
    port = json.loads(out.getvalue().splitlines()[0])["ready"]
    sent = udpseq.send("127.0.0.1", port, count=200, rate=5000, size=64)
    t.join(10)
    assert not t.is_alive()
    assert sent["sent"] == 200 and sent["ip_size"] == 92
    assert sent["duration_s"] >= 199 / 5000 - 1e-3  # paced, never early (late under load is allowed)
    assert result["unique"] == 200 and result["lost"] == 0
    assert result["payload_bytes"] == 200 * 64


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "testbed.tools.udpseq", *args]


def test_cli_receiver_stops_after_count() -> None:
    with subprocess.Popen(
        _cli("recv", "0", "--bind", "127.0.0.1", "--count", "10", "--timeout", "20"), stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["ready"]
        send = subprocess.run(
            _cli("send", "127.0.0.1", str(port), "--count", "10", "--rate", "0"),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        assert json.loads(send.stdout)["sent"] == 10
        summary = json.loads(proc.stdout.readline())
        assert proc.wait(10) == 0
    assert summary["unique"] == 10 and summary["lost"] == 0 and summary["foreign"] == 0


def test_cli_receiver_reports_on_sigterm() -> None:
    with subprocess.Popen(
        _cli("recv", "0", "--bind", "127.0.0.1", "--timeout", "20"), stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # ready: the handler is installed before this line
        proc.terminate()
        summary = json.loads(proc.stdout.readline())
        assert proc.wait(10) == 0
    assert summary["received"] == 0 and summary["expected"] == 0


def test_cli_rejects_bad_size() -> None:
    proc = subprocess.run(_cli("send", "127.0.0.1", "9", "--size", "3"), capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2 and "--size" in proc.stderr
