"""An ``edge-agent`` command known by name and help line before it is imported: :class:`CommandSpec`.

Each part lists its commands in ``<package>/clispec.py`` (``COMMANDS``) and declares them through
:meth:`agent.part.Part.commands`. ``agent/cli.py`` pairs each list with the function that imports
the module holding those commands, and adds its own (the daemon, the store's dump, the privacy
report, the city's hub). Nothing here imports anything heavy, so ``edge-agent --help`` lists every
command without loading numpy, pydantic or any part. The import statement of a command's module
lives in ``agent/cli.py``, not in the part: the commands sit on top of the pipeline and the parts
(``run`` imports the pipeline, which imports the parts), so a part importing its commands, even
lazily, would close an import circle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

#: imports a module (a plain import statement) and returns its click commands
Loader = Callable[[], "Sequence[click.Command]"]


@dataclass(frozen=True)
class CommandSpec:
    """An ``edge-agent`` command: its name and its one-line help as ``edge-agent --help`` shows it
    (a test checks it against the command's own help)."""

    name: str
    help: str


def table(groups: Iterable[tuple[Sequence[CommandSpec], Loader]]) -> dict[str, tuple[str, Loader]]:
    """name -> (help line, loader) for every command of ``groups`` (specs with the loader of the
    module that has them). Two commands with one name are a programming error."""
    out: dict[str, tuple[str, Loader]] = {}
    for specs, load in groups:
        for spec in specs:
            if spec.name in out:
                raise ValueError(f"two `edge-agent {spec.name}` commands are declared")
            out[spec.name] = (spec.help, load)
    return out
