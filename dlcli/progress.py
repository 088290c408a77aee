"""How library code reports progress without printing: it calls a `Reporter`.

The CLI passes a Rich implementation (dlcli/render.py); the Python API defaults to `NullReporter`.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def start(self, description: str, total: float | None = None, unit: str = "") -> None:
        """Begin a bar (total None: an open-ended spinner). Ends any bar already running."""

    def advance(self, n: float = 1, **metrics: Any) -> None:
        """Move the bar by n and show the latest metrics (loss=…, acc=…)."""

    def finish(self) -> None:
        """Close the current bar."""

    def message(self, text: str) -> None:
        """A one-line notice for the user (stderr)."""

    def row(self, values: dict[str, Any]) -> None:
        """One row of a running table (one per epoch, say), printed as it comes."""


class NullReporter:
    """Reports nothing: the default for library calls."""

    def start(self, description: str, total: float | None = None, unit: str = "") -> None:
        pass

    def advance(self, n: float = 1, **metrics: Any) -> None:
        pass

    def finish(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def row(self, values: dict[str, Any]) -> None:
        pass


class RecordingReporter(NullReporter):
    """Keeps what it was told; for tests and for callers that want the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.bars: list[str] = []

    def start(self, description: str, total: float | None = None, unit: str = "") -> None:
        self.bars.append(description)

    def message(self, text: str) -> None:
        self.messages.append(text)

    def row(self, values: dict[str, Any]) -> None:
        self.rows.append(dict(values))
