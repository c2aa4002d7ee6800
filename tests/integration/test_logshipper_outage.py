"""logshipper after a long Elasticsearch outage: delivery resumes within seconds of the node's
return, not at the end of a retry backoff that grew through the outage. The sink is the
benchmark's, a separate process that is stopped and started again on its port."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.logshipper import sink_counter, start_sink
from support.process import free_port, stop_process
from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import LogWriter, admin_url, metric, shipper_env, wait_metric

pytestmark = pytest.mark.integration

OUTAGE = 10.0  # the bulk retry backoff reaches ~5-25 s by then (0.05 s doubling, jittered)
PROBES = "500ms"  # LOGSHIPPER_ES_DEAD_BACKOFF_MAX: a dead node is probed at most this far apart
RESUME = 2.0


def test_delivery_resumes_within_seconds_after_a_long_outage(dirs: tuple[Path, Path]) -> None:
    """Three times: the sink goes away for 10 s while lines are written, and comes back. The
    bulk request that failed all along is then delivered within 2 s of the sink listening
    again, although its own retry backoff (up to LOGSHIPPER_RETRY_MAX_BACKOFF, Filebeat's
    60 s here) may wait far longer: the node pool probes the dead node (every 0.5 s at most
    here) and wakes the request when it answers. (Before, the request waited for its own
    next try, anywhere within its last backoff: each return had a chance of ~1 in 5 to be
    served within 2 s.)"""
    logs, state = dirs
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = shipper_env(
        logs, state, url, "outage", retry_max_backoff="60s", es_dead_backoff_max=PROBES
    )
    admin = admin_url(env)
    writer = LogWriter(logs / "app.log")
    count = sink_counter(port)
    sink = start_sink(port)
    try:
        with SidecarProcess("logshipper", env=env) as proc:
            writer.write(10)
            wait_until(lambda: count() == 10, 30, "10 lines before the outage")
            for outage in (1, 2, 3):
                failed = metric(admin, "logshipper_bulk_errors_total", 'reason="connection"')
                stop_process(sink)
                writer.write(10)
                wait_metric(
                    admin,
                    "logshipper_bulk_errors_total",
                    'reason="connection"',
                    failed + 1,
                    "refused",
                )
                time.sleep(OUTAGE)  # the outage itself, not a wait for something to happen
                sink = start_sink(port)  # returns once it answers
                back = time.monotonic()
                wait_until(lambda: count() == 10, RESUME, f"delivery after outage {outage}")
                assert time.monotonic() - back < RESUME
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()
    finally:
        stop_process(sink)
