"""`edgeinfer cache`: what the cache folder holds, and cleaning it."""

from __future__ import annotations

import json
import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgeinfer.cli.app import Json, app, console

cache_app = typer.Typer(
    help="What edgeinfer's cache holds (trained examples, rebuilt reference models, baseline log-probs, "
    "optimize's measurements) and cleaning it. It is capped at $EDGEINFER_CACHE_MAX_MB (2048): the least "
    "recently used files go first.",
    no_args_is_help=False,
)
app.add_typer(cache_app, name="cache")


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


@cache_app.callback(invoke_without_command=True)
def show(ctx: typer.Context, as_json: Json = False) -> None:
    """List the cache's folder, its entries with their sizes, and the cap."""
    if ctx.invoked_subcommand is not None:
        return
    from edgeinfer.core.cache import cache_dir, entries, max_bytes

    root, items, cap = cache_dir(), entries(), max_bytes()
    total = sum(e.bytes for e in items)
    if as_json:
        doc = {"folder": str(root), "bytes": total, "max_bytes": cap, "entries": [e.to_dict() for e in items]}
        console.print_json(json.dumps(doc))
        return
    table = Table(title=f"{root}: {_size(total)} of {_size(cap)}", title_justify="left")
    for col, justify in (("entry", "left"), ("files", "right"), ("size", "right"), ("last used", "right")):
        table.add_column(col, justify=justify)  # pyright: ignore[reportArgumentType]
    for e in items:
        days = (time.time() - e.last_used) / 86400
        table.add_row(e.name, str(e.files), _size(e.bytes), f"{days:.1f} days ago")
    console.print(table)
    console.print("edgeinfer cache clean [--older-than DAYS] removes entries.", highlight=False)


@cache_app.command()
def clean(
    older_than: Annotated[
        Optional[float], typer.Option(min=0.0, help="Only files not used for this many days (default: all).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Remove cached files: all, or those not used for --older-than DAYS (rebuilt when needed again)."""
    from edgeinfer.core.cache import cache_dir
    from edgeinfer.core.cache import clean as remove

    files, freed = remove(older_than)
    if as_json:
        console.print_json(json.dumps({"folder": str(cache_dir()), "files_removed": files, "bytes_freed": freed}))
    else:
        console.print(f"removed {files} files ({_size(freed)}) from {cache_dir()}", highlight=False)
