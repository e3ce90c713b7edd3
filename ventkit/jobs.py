"""Commands run one after another in child processes, polled from a GUI event loop (the Slicer panels)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

POSIX = os.name == "posix"
PROGRESS_LINE = re.compile(r"(\d+)/(\d+) \[")  # tqdm's "label:  40%|####      | 2/5 [00:03<00:04, ...]"


def ventkit_command(*args: str, python: str | None = None) -> list[str]:
    """`python -m ventkit ARGS` with the given interpreter (default: this one)."""
    return [python or sys.executable, "-m", "ventkit", *map(str, args)]


class ChildJob:
    """Runs `commands` in sequence (the next only if the previous one succeeded), logs in `work_dir`.

    Each command runs in a process group of its own, and `cancel` signals the whole group: Slicer starts
    Python through a launcher that does not pass signals on, so terminating the launcher alone would leave
    ventkit running. ventkit unwinds on SIGTERM (CTRL_BREAK on Windows) and removes its unfinished files;
    `cleanup` also deletes `work_dir`.

    Args:
        commands: one or more commands, each a non-empty list of arguments (program first); the first
            starts at once.
        work_dir: an existing folder for the logs (`log0.txt`, ...).
    """

    def __init__(self, commands: list[list[str]], work_dir: str | os.PathLike):
        if not commands or isinstance(commands, str):
            raise ValueError(f"commands must hold at least one command, got {commands!r}")
        for command in commands:
            if isinstance(command, (str, bytes)) or not command:
                raise ValueError(f"each command must be a non-empty list of arguments, got {command!r}")
        if not str(work_dir) or not Path(work_dir).is_dir():
            raise ValueError(f"work_dir must be an existing folder, got {work_dir}")
        self.commands = commands
        self.work_dir = Path(work_dir)
        self.returncodes: list[int] = []
        self.process: subprocess.Popen | None = None
        self._start_next()

    def _log(self, i: int) -> Path:
        return self.work_dir / f"log{i}.txt"

    def _start_next(self) -> None:
        i = len(self.returncodes)
        group = {"start_new_session": True} if POSIX else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        with open(self._log(i), "w") as log:
            self.process = subprocess.Popen(self.commands[i], stdout=log, stderr=subprocess.STDOUT, **group)

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
        """Terminate the running command's whole process tree; kill what has not unwound within `grace_s`."""
        if self.process is not None:
            terminate_tree(self.process, grace_s)
            self.process = None

    def output(self) -> str:
        """The log of the last command that ran."""
        return self._log(max(len(self.returncodes) - 1, 0)).read_text()

    def tail(self, chars: int = 4000) -> str:
        """The end of the running (or last) command's log as a terminal shows it: each progress bar's
        redraws (carriage returns) collapsed to its latest state."""
        log = self._log(min(len(self.returncodes), len(self.commands) - 1))
        if not log.is_file():
            return ""
        with open(log, "rb") as fh:
            fh.seek(max(log.stat().st_size - chars, 0))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n"))

    def progress(self) -> tuple[int, int] | None:
        """(done, total) of the last progress line the running command printed, or None before the first."""
        found = PROGRESS_LINE.findall(self.tail())
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def cleanup(self) -> None:
        self.cancel()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate_tree(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Ask every process of `process`'s group to stop (SIGTERM; CTRL_BREAK on Windows), wait up to `grace_s`
    for all of them to unwind, then kill what is left (SIGKILL to the group; `taskkill /T` on Windows)."""
    if process.poll() is None or (POSIX and _group_alive(process.pid)):
        try:
            if POSIX:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.CTRL_BREAK_EVENT)
        except ProcessLookupError:  # the whole group ended in between
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and (process.poll() is None or (POSIX and _group_alive(process.pid))):
        time.sleep(0.1)
    if POSIX and _group_alive(process.pid):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    elif not POSIX and process.poll() is None:
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True)
    process.wait()
