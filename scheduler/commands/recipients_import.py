"""`recipients import`: stream a CSV into the directory with a progress bar on a terminal and a
summary at the end."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from jobs.mongo.directory import Directory
from jobs.mongo.importer import ImportSummary

EXIT_OK = 0
EXIT_NO_INPUT = 66  # sysexits: the file cannot be read


def run(directory: Directory, path: Path, *, verified: bool, now: datetime) -> int:
    """Import `path`; 0 once the file was read (refused lines are reported, not fatal), 66 when
    it cannot be read."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_NO_INPUT
    try:
        with handle:
            summary = _with_progress(directory, handle, path, verified, now)
    except UnicodeDecodeError as exc:
        print(f"cannot read {path}: not UTF-8 text ({exc.reason})", file=sys.stderr)
        return EXIT_NO_INPUT
    report(summary)
    return EXIT_OK


def _with_progress(
    directory: Directory, text: IO[str], path: Path, verified: bool, now: datetime
) -> ImportSummary:
    """The import, with a bar that follows the bytes read when stderr is a terminal."""
    fd = text.fileno()
    if not sys.stderr.isatty():
        return directory.import_csv(text, verified=verified, now=now, source=path.name)
    size = max(os.fstat(fd).st_size, 1)
    columns = (TextColumn("importing"), BarColumn(), TextColumn("line {task.fields[line]}"))
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("import", total=size, line=0)

        def advance(line: int) -> None:
            bar.update(task, completed=min(os.lseek(fd, 0, os.SEEK_CUR), size), line=line)

        summary = directory.import_csv(
            text, verified=verified, now=now, source=path.name, progress=advance
        )
        bar.update(task, completed=size)
    return summary


def report(summary: ImportSummary) -> None:
    """The summary on stdout, refused lines (the first few, then a count) on stderr."""
    for line, why in summary.first_refused:
        print(f"line {line}: {why}", file=sys.stderr)
    more = summary.refused - len(summary.first_refused)
    if more > 0:
        print(f"... and {more} more lines refused", file=sys.stderr)
    print(
        f"new {summary.new}, already present {summary.present},"
        f" spellings merged {summary.merged}, refused {summary.refused}"
    )
