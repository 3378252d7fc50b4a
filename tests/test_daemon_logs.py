"""The daemon's log is one stream in one shape: third-party lines go through our structlog
pipeline, and the runs APScheduler skips are counted, not logged each time.

The scheduler is the real one, its runs triggered for real; a pass is held where a real one
gets held, on a Vault frozen with SIGSTOP.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

from test_health_under_load import paused
from test_rotation import World, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.daemon.scheduling import SKIPPED_LOG_EVERY
from rotator.redaction import SecretValue


def lines(buffer) -> list[dict]:
    """Every line logged so far, parsed (each must be one JSON object)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_runs_skipped_behind_a_held_pass_are_counted_and_logged_once_per_period(
    world: World, log_output
):
    """With a pass held on a frozen Vault, each run the scheduler skips adds one to
    rotator_scheduler_runs_skipped_total; the log says so once in our shape (and once more,
    with the count since, after SKIPPED_LOG_EVERY seconds of the injected clock), and never in
    APScheduler's own words."""
    bootstrap(world)
    reconciler = world.reconciler()
    daemon = world.daemon(reconciler)
    scheduler = daemon._scheduler
    skipped = daemon.metrics.scheduler_skipped
    started = datetime.now(UTC)
    with paused(world.openbao._process):
        daemon.start()
        try:
            # The first pass was handed to a worker and now waits on the frozen Vault.
            _wait(lambda: scheduler.get_job("reconcile").next_run_time > started)
            for count in range(1, 6):
                scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
                _wait(lambda count=count: skipped._value.get() == count)
            world.clock.advance(seconds=SKIPPED_LOG_EVERY + 1)
            scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
            _wait(lambda: skipped._value.get() == 6)
        finally:
            # Stopping waits for the held pass, which Vault's return lets finish.
            stopping = threading.Thread(target=daemon.stop)
            stopping.start()
    stopping.join(30)
    scrape = daemon.metrics.registry.get_sample_value("rotator_scheduler_runs_skipped_total")
    assert scrape == 6
    logged = lines(log_output)
    said = [line for line in logged if line["event"] == "scheduler.run_skipped"]
    assert [(s["skipped"], s["skipped_total"], s["job"]) for s in said] == [
        (1, 1, "reconcile"),
        (5, 6, "reconcile"),
    ]
    assert {"level", "timestamp", "detail"} <= set(said[0])
    assert said[0]["level"] == "warning"
    assert not [line for line in logged if "maximum number of running" in json.dumps(line)]


def test_library_log_lines_take_our_shape_and_redaction(log_output):
    """A standard-library record from APScheduler, waitress or urllib3 comes out as one JSON
    line in our shape (a dotted event, level, timestamp, the sentence as message, the logger
    named), with a secret the process knows redacted from its text."""
    secret = SecretValue("s3cr3t-material-that-must-not-leak-0042")
    logging.getLogger("apscheduler.executors.default").warning(
        "Job %r raised: %s", "reconcile", secret.reveal()
    )
    logging.getLogger("waitress.queue").warning("Task queue depth is %d", 3)
    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", "a reset")
    first, second, third = lines(log_output)
    assert first["event"] == "apscheduler.log"
    assert first["logger"] == "apscheduler.executors.default"
    assert first["level"] == "warning"
    assert "timestamp" in first
    assert secret.reveal() not in json.dumps(first)
    assert first["message"].startswith("Job 'reconcile' raised: ")
    assert (second["event"], second["message"]) == ("waitress.log", "Task queue depth is 3")
    assert third["event"] == "urllib3.log"
