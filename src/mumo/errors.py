"""User-facing errors: one line, naming the file, row, column or key at fault, exit code 2."""

from __future__ import annotations


class MumoError(Exception):
    """Bad input from the user (config, data, arguments). The CLI prints it on one line and exits 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(MumoError):
    """A bad config key or value."""


class DataError(MumoError):
    """A bad manifest, row or cell."""

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        where = ", ".join(
            part
            for part in (
                str(file) if file else None,
                f"row {row}" if row is not None else None,
                f"column {column!r}" if column else None,
            )
            if part
        )
        self.file, self.row, self.column, self.reason = file, row, column, message
        super().__init__(f"{where}: {message}" if where else message)
