"""Problems a user of the `greetings` command can fix, said in one line (no traceback)."""

from __future__ import annotations

# Exit codes: every job completed / a job failed or was cancelled / bad arguments or input.
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """Printed as `error: <message>` on stderr; the command exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_JOB_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    """Bad arguments or input files: exit 2, like argparse's own errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
