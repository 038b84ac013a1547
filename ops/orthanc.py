"""A private Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) for the benchmarks to compare with: its own storage
and index under a temp dir, HTTP and DICOM on free ports, HTTP from loopback only, C-STORE accepted only from
the benchmark's AE on 127.0.0.1, no HTTP authentication (it answers only loopback)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ops.launch import free_port

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PACKAGE = "orthanc-dicomweb"
ORTHANC_AE_TITLE = "ORTHANC"
SENDER_AE_TITLE = "BENCH"


class OrthancError(RuntimeError):
    pass


def dicomweb_plugin_path() -> Path:
    """The DICOMweb plugin's shared library as its Debian package installed it."""
    listing = subprocess.run(["dpkg", "-L", DICOMWEB_PACKAGE], capture_output=True, text=True, check=False)
    candidates = [Path(line) for line in listing.stdout.splitlines() if "/plugins/" in line and ".so" in line]
    found = [p for p in candidates if p.exists()]
    if not found:
        raise OrthancError(f"the {DICOMWEB_PACKAGE} package is not installed (ops/install-system.sh test)")
    return found[0]


def orthanc_config(workdir: Path, *, http_port: int, dicom_port: int, plugin: Path) -> dict[str, object]:
    return {
        "Name": "noctis-bench-peer",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # loopback only
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AE_TITLE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": False,  # only the modality below, from 127.0.0.1
        "DicomCheckModalityHost": True,
        "DicomModalities": {"bench": [SENDER_AE_TITLE, "127.0.0.1", 104]},
        "SaveJobs": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
    }


@dataclass
class Orthanc:
    proc: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    def instance_count(self) -> int:
        return int(httpx.get(f"{self.base_url}/statistics", timeout=30).json()["CountInstances"])

    def stop(self, timeout: float = 30) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def version(self) -> str:
        system = httpx.get(f"{self.base_url}/system", timeout=10).json()
        plugin = httpx.get(f"{self.base_url}/plugins/dicom-web", timeout=10).json()
        return f"Orthanc {system.get('Version')} + DICOMweb plugin {plugin.get('Version')}"


def orthanc_start(workdir: Path, *, timeout: float = 60) -> Orthanc:
    """Start Orthanc with a generated configuration under `workdir`; return once HTTP and the plugin answer."""
    binary = shutil.which(ORTHANC_BINARY) or "/usr/sbin/Orthanc"
    if not Path(binary).exists():
        raise OrthancError("Orthanc is not installed (ops/install-system.sh test installs Debian's orthanc)")
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = orthanc_config(workdir, http_port=http_port, dicom_port=dicom_port, plugin=dicomweb_plugin_path())
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )  # fmt: skip
    orthanc = Orthanc(proc, http_port, dicom_port, log_path)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{orthanc.base_url}/plugins/dicom-web", timeout=2).status_code == 200:
                return orthanc
        if proc.poll() is not None or time.monotonic() > deadline:
            orthanc.stop(timeout=5)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise OrthancError(f"Orthanc did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.2)
