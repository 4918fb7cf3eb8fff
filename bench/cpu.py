"""CPU time of a gunicorn server's workers, to divide by the requests they
answered: "worker CPU ms per request".

Read from /proc: the user and system time of each live worker (the
master's children) plus what the master's dead children used (cutime and
cstime: gunicorn recycles its workers every ~1,000 requests, and a worker
that exited during a run took its CPU time with it into those two fields).
The master's own time is not counted: it serves no request.
"""

from __future__ import annotations

import os
from pathlib import Path

from .memory import children

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return text.rsplit(")", 1)[1].split()


class WorkerCpu:
    """Milliseconds of CPU the workers under ``master_pid`` have used so far."""

    def __init__(self, master_pid: int):
        self.master_pid = master_pid

    def _reaped_ticks(self) -> int:
        master = _stat_fields(self.master_pid)
        if master is None:
            raise RuntimeError(f"gunicorn master {self.master_pid} is gone")
        # After ")": state is [0], utime [11], stime [12], cutime [13], cstime [14].
        return int(master[13]) + int(master[14])

    def total_ms(self) -> float:
        # A worker reaped between reading the master and reading the worker
        # would count twice or not at all: read again until nothing moved.
        for _ in range(20):
            reaped = self._reaped_ticks()
            live = 0
            for pid in children(self.master_pid):
                fields = _stat_fields(pid)
                if fields is not None:
                    live += int(fields[11]) + int(fields[12])
            if self._reaped_ticks() == reaped:
                return (reaped + live) * 1000 / _TICKS
        raise RuntimeError("gunicorn kept recycling workers while being read")
