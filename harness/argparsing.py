"""The harness's command-line parser: a usage error is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--api-key KEY` silently meant `--api-key-env KEY` (the name of a variable
        # holding the key) and failed on a variable named after the key; it is now an unknown flag.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not at least {minimum}")
        return value

    return parse


def fraction(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number in the open-closed interval (low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"{value:g} is not in ({low:g}, {high:g}]")
        return value

    return parse
