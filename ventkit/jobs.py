"""Commands run one after another in child processes, polled from a GUI event loop (the Slicer panels)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def ventkit_command(*args: str, python: str | None = None) -> list[str]:
    """`python -m ventkit ARGS` with the given interpreter (default: this one)."""
    return [python or sys.executable, "-m", "ventkit", *map(str, args)]


class ChildJob:
    """Runs `commands` in sequence (the next only if the previous one succeeded), logs in `work_dir`.

    `cancel` terminates the running command: ventkit unwinds on SIGTERM and removes its unfinished
    files; `cleanup` also deletes `work_dir`.
    """

    def __init__(self, commands: list[list[str]], work_dir: str | os.PathLike):
        self.commands = commands
        self.work_dir = Path(work_dir)
        self.returncodes: list[int] = []
        self.process: subprocess.Popen | None = None
        self._start_next()

    def _log(self, i: int) -> Path:
        return self.work_dir / f"log{i}.txt"

    def _start_next(self) -> None:
        i = len(self.returncodes)
        with open(self._log(i), "w") as log:
            self.process = subprocess.Popen(self.commands[i], stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        """Poll; starts the next command when one has succeeded."""
        if self.process is None:
            return False
        code = self.process.poll()
        if code is None:
            return True
        self.returncodes.append(code)
        self.process = None
        if code == 0 and len(self.returncodes) < len(self.commands):
            self._start_next()
            return True
        return False

    def wait(self) -> None:
        while self.running():
            time.sleep(0.2)

    def succeeded(self) -> bool:
        return self.returncodes == [0] * len(self.commands)

    def cancel(self, grace_s: float = 30.0) -> None:
        """Terminate the running command; kill it if it has not unwound within `grace_s`."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def output(self) -> str:
        """The log of the last command that ran."""
        return self._log(max(len(self.returncodes) - 1, 0)).read_text()

    def cleanup(self) -> None:
        self.cancel()
        shutil.rmtree(self.work_dir, ignore_errors=True)
