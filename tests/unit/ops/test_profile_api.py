"""`make profile-api`'s measuring parts: a process's CPU time read from /proc, and the processes under it."""

from __future__ import annotations

import os
import subprocess
import time

from ops.profile_api import _cpu_seconds, _process_tree


def test_cpu_seconds_follow_the_process_work() -> None:
    before = _cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.1:  # busy, not sleeping: only CPU counts
        pass
    assert 0.05 <= _cpu_seconds(os.getpid()) - before < 5


def test_process_tree_holds_the_children() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        tree = _process_tree(os.getpid())
        assert tree[0] == os.getpid()
        assert child.pid in tree
    finally:
        child.kill()
        child.wait()
