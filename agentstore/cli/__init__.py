"""The ``agentstore`` command line (SPEC §8): one entry point, commands grouped by noun.

Each command is a thin layer over the public API. Errors are one line on standard error,
``agentstore: <what went wrong>``, with exit status 1 (usage errors: 2); never a traceback
(``--debug`` shows one) and never a password.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

import click

from agentstore.cli import approvals, data, database, demo, search, sessions  # noqa: F401
from agentstore.cli.base import ENV_DATABASE, cli
from agentstore.errors import StoreError

__all__ = ["cli", "main"]


def _scrub(message: str, argv: Sequence[str]) -> str:
    """The message with any password of a database URL given to this run hidden."""
    from sqlalchemy.engine import make_url

    candidates = [*argv, os.environ.get(ENV_DATABASE, "")]
    for candidate in candidates:
        if "://" not in candidate:
            continue
        try:
            url = make_url(candidate)
        except Exception:
            continue
        secrets = [url.password, *(v for k, v in url.query.items() if k.lower() == "password")]
        for secret in secrets:
            if isinstance(secret, str) and secret:
                message = message.replace(secret, "***")
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    # What migrations and adoption did, as they go (Alembic's own steps when it migrates).
    logging.getLogger("agentstore").setLevel(logging.INFO)
    if "upgrade" in args or "downgrade" in args:
        logging.getLogger("alembic").setLevel(logging.INFO)
    try:
        cli.main(args=args, prog_name="agentstore", standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("agentstore: interrupted\n")
        return 130
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as exc:  # usage errors: click's own message, status 2
        exc.show()
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`agentstore … | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("agentstore: interrupted\n")
        return 130
    except StoreError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"agentstore: {_scrub(str(exc), args)}\n")
        return 1
    except Exception as exc:  # a defect or an environment problem: still one line
        if debug:
            traceback.print_exc()
        detail = _scrub(str(exc), args) or type(exc).__name__
        sys.stderr.write(f"agentstore: {type(exc).__name__}: {detail}\n")
        return 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
