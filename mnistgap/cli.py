"""What every stage entry point shares: logging set-up and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mnistgap")


class StageError(RuntimeError):
    """An expected failure of a stage (bad input, missing file): reported as one line, exit 1."""


def setup_logging() -> None:
    """INFO to stderr, one line per event; MNISTGAP_LOG_LEVEL=DEBUG for more."""
    logging.basicConfig(
        level=os.environ.get("MNISTGAP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run_stage(
    name: str, main: Callable[[list[str] | None], None], argv: list[str] | None = None
) -> int:
    """Run a stage's ``main``; expected errors become ``<name>: error: <message>`` and exit code 1.

    Expected errors are ValueError (bad params, bad data: ParamsError and the data modules'
    errors derive from it or from StageError), OSError (missing/unreadable files) and
    StageError. Anything else is a bug and keeps its traceback.
    """
    setup_logging()
    try:
        main(argv)
    except (StageError, ValueError, OSError, RuntimeError) as exc:
        if type(exc) is RuntimeError:  # a bare RuntimeError from torch is a bug: show it
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{name}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0


def user_cache() -> Path:
    """Where downloads are kept between runs, outside the repository (like pip's cache):
    ``$XDG_CACHE_HOME/mnistgap`` or ``~/.cache/mnistgap``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnistgap"


def split_eval_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of the stages that evaluate the model on one prepared split (.npz)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, required=True, help="a split .npz (images, labels)")
    ap.add_argument("--out", type=Path, required=True, help="the reports folder to write")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    return ap


def class_eval_parser(description: str, out_default: str) -> argparse.ArgumentParser:
    """Arguments shared by the stages that evaluate the model on the cached class digits."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/class/digits.npz"))
    ap.add_argument("--leakage", type=Path, default=Path("reports/leakage/leakage.csv"))
    ap.add_argument("--out", type=Path, default=Path(out_default))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    return ap
