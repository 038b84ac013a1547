"""`manage.py process_ai_analyses [--continuous] [--poll-seconds S]`: the AI processor loop.

One analysis at a time. SIGTERM/SIGINT let the current analysis finish, then the process exits 0; a second
SIGTERM/SIGINT stops at once and releases the current analysis (back to pending, the attempt not counted).
Without --continuous it processes what is pending and exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from noctis_pro.ai.processing import (
    ProcessorStoppingError,
    analyses_fail_exhausted,
    analysis_release,
    analysis_run,
    analysis_take_next,
    worker_id,
)

logger = logging.getLogger("noctis_pro.ai.processor")


class Command(BaseCommand):
    help = "Run pending AI analyses (SELECT ... FOR UPDATE SKIP LOCKED), one at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--continuous", action="store_true", help="keep polling until SIGTERM/SIGINT")
        parser.add_argument("--poll-seconds", type=float, default=None, help="idle wait (default AI_POLL_SECONDS)")

    def handle(self, *args: Any, **options: Any) -> None:
        poll = options["poll_seconds"] if options["poll_seconds"] is not None else settings.AI_POLL_SECONDS
        stop = threading.Event()
        running = threading.Event()

        def request_stop(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if stop.is_set() and running.is_set():
                logger.info("stopping now (%s again): releasing the current analysis", name)
                raise ProcessorStoppingError(name)
            logger.info("stopping (%s): finishing the current analysis", name)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        worker = worker_id()
        logger.info("AI processor %s started (continuous=%s)", worker, options["continuous"])
        processed = 0
        while not stop.is_set():
            if not connection.in_atomic_block:  # a long-lived loop: drop broken or expired connections
                close_old_connections()
            try:
                analyses_fail_exhausted()
                analysis = analysis_take_next(worker=worker)
                if analysis is not None:
                    running.set()
                    try:
                        analysis_run(analysis=analysis)
                    except ProcessorStoppingError:
                        analysis_release(analysis=analysis)
                        break
                    finally:
                        running.clear()
                    processed += 1
                    continue
            except DatabaseError:
                if not options["continuous"]:
                    raise
                logger.exception("database error; retrying in %.1fs", poll)
            if not options["continuous"]:
                break
            stop.wait(poll)
        logger.info("AI processor %s stopped after %d analyses", worker, processed)
        self.stdout.write(f"processed {processed} analyses")
