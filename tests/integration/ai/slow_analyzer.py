"""A deliberately slow analyzer plugin for the processor tests, loaded through AI_ANALYZER_PLUGINS.

Each run appends "<analysis id> <pid>" to the file AI_TEST_RUN_LOG names (O_APPEND: one whole line per write), then
sleeps AI_TEST_SLOW_SECONDS: the log counts real runs, independently of the database rows.
"""

from __future__ import annotations

import os
import time

from noctis_pro.ai.analyzers.base import AnalysisContext, AnalyzerOutput, SeriesFacts


class SlowAnalyzer:
    name = "test_slow"
    scope = "study"

    def applies_to(self, facts: SeriesFacts) -> bool:
        return True

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        with open(os.environ["AI_TEST_RUN_LOG"], "a") as log:
            log.write(f"{context.analysis_id} {os.getpid()}\n")
        time.sleep(float(os.environ.get("AI_TEST_SLOW_SECONDS", "1")))
        return AnalyzerOutput(result={"slept_by": os.getpid()})
