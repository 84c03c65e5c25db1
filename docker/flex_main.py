"""Dataflow flex template entry point: template parameters -> ``bonehub run``.

The flex template launcher runs this file (``FLEX_TEMPLATE_PYTHON_PY_FILE``) with every template
parameter as ``--name=value`` next to the Beam options it adds itself (``--runner``, ``--project``,
``--temp_location``, ...). Template parameter names cannot hold ``-`` and cannot repeat, so a
parameter ``idc_collection`` becomes ``--idc-collection`` when ``bonehub run`` has that option, and
a repeatable option (``--source``, ``--augment``, ...) takes several values separated by ``;``
(``,`` would split ``rotate(5,0,0)``). Everything else passes through to Beam unchanged. The option
list is read from ``bonehub run``'s own parser, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

SEPARATOR = ";"


def run_options() -> dict[str, bool]:
    """``bonehub run``'s long options -> whether each is repeatable (an ``append`` action)."""
    from pipeline.cli import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = subcommands.choices["run"]
    return {
        option: isinstance(action, argparse._AppendAction)
        for action in run._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def translate(argv: Sequence[str], options: Mapping[str, bool]) -> list[str]:
    """Template-style ``--name=value`` arguments -> ``bonehub run`` arguments plus untouched Beam options."""
    translated: list[str] = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        option = name.replace("_", "-")
        if not (arg.startswith("--") and equals and option in options):
            translated.append(arg)
            continue
        values = [v.strip() for v in value.split(SEPARATOR)] if options[option] else [value]
        for single in filter(None, values):
            translated += [option, single]
    return translated


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.cli import main as bonehub

    return bonehub(["run", *translate(sys.argv[1:] if argv is None else argv, run_options())])


if __name__ == "__main__":
    sys.exit(main())
