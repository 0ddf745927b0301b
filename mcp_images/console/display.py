"""What a command shows: a live display on a terminal, plain lines in a pipe, or JSON.

- ``--json``: one JSON document on stdout, the tool's ``structuredContent`` as it is.
- stdout is a terminal: a live line (phase, elapsed, partial images as they are saved),
  then the saved files and the cost, drawn with ``rich`` (imported only here).
- otherwise: plain lines a script can read, no escape codes: one saved path per line,
  then ``cost: ...``; refusals and notes go to stderr.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TextIO

from mcp_images.console.calls import exit_code

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from mcp_images.storage.store import ImageStore

Mode = Literal["json", "rich", "plain"]
PARTIAL_RE = re.compile(r"partial image (\d+) saved: images://([0-9a-f]{12})")
PHASE_RE = re.compile(r"^(\w[\w ]*?) \((\d+) s\)$")


def choose_mode(as_json: bool, out: TextIO | None = None) -> Mode:
    if as_json:
        return "json"
    stream = out or sys.stdout
    return "rich" if stream.isatty() else "plain"


def text_of(result: CallToolResult) -> list[str]:
    return [line for block in result.content if block.type == "text" for line in block.text.splitlines()]


class Reporter:
    """Shows one command's progress and result in the chosen mode."""

    def __init__(self, mode: Mode, *, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.mode = mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.store: ImageStore | None = None
        self._progress: Any = None  # rich.progress.Progress while a call runs
        self._task: Any = None
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.out, highlight=False)
        return self._console

    def use_store(self, store: ImageStore) -> None:
        self.store = store

    def _path_of(self, image_id: str) -> str:
        path = self.store.find(image_id) if self.store is not None else None
        return str(path) if path is not None else f"images://{image_id}"

    @contextmanager
    def running(self, title: str) -> Iterator[None]:
        """A live spinner with the phase and the time so far, on a terminal only."""
        if self.mode != "rich":
            yield
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console, transient=True
        ) as progress:
            self._progress, self._task = progress, progress.add_task(title, total=None)
            try:
                yield
            finally:
                self._progress = None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """A progress notification from the tool: a phase, a heartbeat or a saved partial."""
        text = message or ""
        partial = PARTIAL_RE.search(text)
        if partial:
            line = f"partial image {partial.group(1)}: {self._path_of(partial.group(2))}"
            if self._progress is not None:
                self._progress.console.print(f"  {line}", style="dim", markup=False, soft_wrap=True)
            elif self.mode == "plain":
                self.err.write(line + "\n")
            return
        phase = PHASE_RE.match(text)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=phase.group(1) if phase else text)

    def result(self, result: CallToolResult) -> int:
        """Show a tool result; the command's exit code."""
        structured = result.structured_content
        code = exit_code(structured, result.is_error)
        if self.mode == "json":
            self.out.write(json.dumps(structured if structured is not None else {"text": text_of(result)}, indent=2))
            self.out.write("\n")
        elif result.is_error:
            self._error((structured or {}).get("error") or {"message": " ".join(text_of(result))})
        elif structured and "images" in structured:
            self._images(structured, text_of(result))
        else:
            self.say(text_of(result))
        return code

    def _images(self, structured: dict[str, Any], lines: list[str]) -> None:
        cost = next((line for line in lines if line.startswith("cost: ")), None)
        notes = [line for line in lines if line.startswith("note: ")]
        if self.mode == "plain":
            self.out.write("".join(f"{image['path']}\n" for image in structured["images"]))
            if cost:
                self.out.write(cost + "\n")
            self.err.write("".join(n + "\n" for n in notes))
            return
        from rich.markup import escape

        head = lines[0] if lines else "done"
        self.console.print(f"[green]✓[/green] {escape(head.rstrip(':'))}")
        for image in structured["images"]:
            size = f"{image['width']}x{image['height']} {image['mime_type'].split('/')[-1]}, {image['bytes']:,} bytes"
            self.console.print(
                f"  [bold]{escape(image['path'])}[/bold]  [dim]{size}  {image['uri']}[/dim]", soft_wrap=True
            )
        for partial in structured.get("partial_images") or []:
            self.console.print(f"  [dim]partial: {escape(partial['path'])}[/dim]", soft_wrap=True)
        for line in [cost, *notes]:
            if line:
                self.console.print(line, markup=False)

    def say(self, lines: list[str]) -> None:
        """Plain lines on stdout (the first one bold on a terminal)."""
        if self.mode != "rich":
            self.out.write("".join(line + "\n" for line in lines))
            return
        for i, line in enumerate(lines):
            self.console.print(line, style="bold" if i == 0 else None, markup=False)

    def refused(self, error: dict[str, Any], *, code: int = 2) -> int:
        """Show an error that came before any tool call (a setting, the task database)."""
        if self.mode == "json":
            self.out.write(json.dumps({"error": error}, indent=2) + "\n")
        else:
            self._error(error)
        return code

    def _error(self, error: dict[str, Any]) -> None:
        kind = str(error.get("type", "error"))
        problems = error.get("problems") or []
        lines = [f"{kind}: {error.get('message', 'failed')}"]
        lines += [f"  - {p.get('field')}: {p.get('message')}" for p in problems]
        if error.get("fix") and not problems and str(error["fix"]) not in lines[0]:
            lines.append(f"  fix: {error['fix']}")
        if error.get("request_id"):
            lines.append(f"  request id: {error['request_id']}")
        if self.mode == "plain":
            self.err.write("".join(f"mcp-images: {line}\n" for line in lines))
            return
        from rich.console import Console
        from rich.markup import escape

        console = Console(file=self.err, highlight=False)
        console.print(f"[red]✗[/red] {escape(lines[0])}")
        for line in lines[1:]:
            console.print(escape(line))
