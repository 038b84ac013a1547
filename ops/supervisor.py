"""Start the plan's services in order, each ready before the next; prefix their logs; stop them all together.

A service that fails to start stops the rest (nothing runs half-configured); one that dies later is restarted
with back-off; Ctrl-C or SIGTERM stops all in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from ops.services import Service, Step

STOP_GRACE_SECONDS = 15.0
RESTART_MAX_DELAY_SECONDS = 10.0


class StartError(RuntimeError):
    pass


class _Running:
    def __init__(self, service: Service, proc: subprocess.Popen[bytes]) -> None:
        self.service = service
        self.proc = proc
        self.ready = threading.Event()


class Supervisor:
    def __init__(
        self, plan: list[Service | Step], *, env: dict[str, str], cwd: Path, log_dir: Path, out: TextIO = sys.stdout
    ) -> None:
        self.plan = plan
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self.out = out
        self.running: list[_Running] = []
        self._lock = threading.Lock()
        self._width = max(len(item.name) for item in plan)
        self.stopping = threading.Event()

    def _emit(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self._width}} | {line}\n")
            self.out.flush()

    def _pump(self, running: _Running, log_path: Path) -> None:
        assert running.proc.stdout is not None
        with open(log_path, "ab") as log:
            for raw in iter(running.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self._emit(running.service.name, line)
                if running.service.ready_line and running.service.ready_line in line:
                    running.ready.set()

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={**self.env, **extra_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
        except FileNotFoundError as e:
            raise StartError(f"{name}: cannot start {argv[0]}: {e.strerror}") from e

    def _run_step(self, step: Step) -> None:
        self._emit(step.name, " ".join(step.argv[1:3]) + " ...")
        proc = self._spawn(step.name, step.argv, {})
        running = _Running(Service(step.name, step.argv), proc)
        pump = threading.Thread(target=self._pump, args=(running, self.log_dir / f"{step.name}.log"), daemon=True)
        pump.start()
        code = proc.wait()
        pump.join(timeout=5)
        if code != 0:
            raise StartError(f"{step.name} failed with exit code {code} (see its lines above)")

    def _launch(self, service: Service) -> _Running:
        running = _Running(service, self._spawn(service.name, service.argv, service.env))
        # Each service leads its own process group; ops (and the e2e tests) signal it through this file.
        (self.log_dir / f"{service.name}.pid").write_text(f"{running.proc.pid}\n")
        log_path = self.log_dir / f"{service.name}.log"
        threading.Thread(target=self._pump, args=(running, log_path), daemon=True).start()
        return running

    def _start_service(self, service: Service) -> None:
        running = self._launch(service)
        proc = running.proc
        self.running.append(running)
        deadline = time.monotonic() + service.ready_timeout
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise StartError("interrupted")
            code = proc.poll()
            if code is not None:
                raise StartError(f"{service.name} exited with code {code} while starting (see its lines above)")
            if service.ready is not None and service.ready():
                return
            if service.ready_line is not None and running.ready.is_set():
                return
            if service.ready is None and service.ready_line is None and running.ready.wait(1.0) is False:
                return  # no readiness signal: alive after a second is as good as it gets
            time.sleep(0.2)
        raise StartError(f"{service.name} was not ready within {service.ready_timeout:.0f}s")

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for item in self.plan:
                if isinstance(item, Step):
                    self._run_step(item)
                else:
                    self._start_service(item)
        except BaseException:
            self.stop()
            raise

    def wait(self) -> None:
        """Block until a stop is asked. A service that exits by itself is restarted with back-off (as compose's
        `restart: unless-stopped` would), and its exit is logged."""
        restarts: dict[str, int] = {}
        while not self.stopping.is_set():
            for index, running in enumerate(self.running):
                code = running.proc.poll()
                if code is None or self.stopping.is_set():
                    continue
                count = restarts.get(running.service.name, 0)
                restarts[running.service.name] = count + 1
                delay = min(0.5 * 2**count, RESTART_MAX_DELAY_SECONDS)
                self._emit(running.service.name, f"exited with code {code}; restarting in {delay:.1f}s")
                if self.stopping.wait(delay):
                    break
                self.running[index] = self._launch(running.service)
            self.stopping.wait(0.5)

    def stop(self) -> None:
        self.stopping.set()
        for running in reversed(self.running):
            if running.proc.poll() is None:
                try:
                    os.killpg(running.proc.pid, running.service.stop_signal)
                except ProcessLookupError:
                    continue
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while running.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if running.proc.poll() is None:
                self._emit(running.service.name, "did not stop in time; killing")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.proc.pid, signal.SIGKILL)
                running.proc.wait()
        self.running.clear()
