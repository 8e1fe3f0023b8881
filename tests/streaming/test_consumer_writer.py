"""The consumer's writer process does not outlive a SIGKILLed consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from raytrader.streaming.consumer import ConsumerConfig, FeatureConsumer
    from raytrader.streaming.sinks import NullSink

    if __name__ == "__main__":
        cfg = ConsumerConfig(bootstrap="127.0.0.1:9", timeframe="1m", state_dir=sys.argv[1])
        consumer = FeatureConsumer(cfg, NullSink())
        consumer._writer.submit(int).result(timeout=120)  # the writer process is up
        print(*consumer._writer._processes, flush=True)
        time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent, the killed consumer, can't reap it)
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


@pytest.mark.slow
def test_writer_process_exits_when_the_consumer_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "consumer.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    (writer,) = (int(p) for p in proc.stdout.readline().split())
    assert alive(writer)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while alive(writer) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(writer)
