"""The `edgeinfer` command line: parse arguments, call one pipeline function, print its result.

`app.py` holds what the command modules share; each command group is one module, registered on
the app when imported here.
"""

from edgeinfer.cli import cache, compress, deploy, llm, models, train  # noqa: F401  (registers the commands)
from edgeinfer.cli.app import app, main

__all__ = ["app", "main"]
