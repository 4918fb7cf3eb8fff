"""Peak resident memory of the web workers and the Celery worker: VmHWM (the
kernel's high-water mark of RSS) of every process under a parent, sampled
all through the run, because gunicorn recycles its workers (max_requests)
and a recycled worker's peak would otherwise be lost."""

from __future__ import annotations

import threading
from pathlib import Path


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        text = ""
    if text.strip():
        return [int(p) for p in text.split()]
    # Kernels without CONFIG_PROC_CHILDREN: scan every process's parent.
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class PeakMemory:
    """Samples, every ``interval`` seconds, VmHWM of each watched group: a
    process's children (gunicorn's workers, Celery's pool), or the process
    itself (Celery's main process)."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.groups: dict[str, tuple[int, str]] = {}
        self.peaks: dict[str, dict[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-memory")

    def watch(self, name: str, pid: int, *, what: str) -> None:
        """``what``: "children" or "itself"."""
        self.groups[name] = (pid, what)
        self.peaks[name] = {}

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        for name, (pid, what) in self.groups.items():
            pids = children(pid) if what == "children" else [pid]
            peaks = self.peaks[name]
            for one in pids:
                hwm = _status_kb(one, "VmHWM")
                if hwm is not None:
                    peaks[one] = max(peaks.get(one, 0), hwm)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, dict[str, float]]:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)
        return {
            name: {
                "peak_mb": round(max(peaks.values(), default=0) / 1024, 1),
                "processes_seen": len(peaks),
            }
            for name, peaks in self.peaks.items()
        }
