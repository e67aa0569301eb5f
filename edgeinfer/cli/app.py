"""What every command module shares: the typer app, the consoles, option types, and `main`.

Every EdgeInferError becomes one red line and exit code 2; --verbose adds the traceback.
Heavy libraries load inside commands, so --help stays fast.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from edgeinfer.core.errors import EdgeInferError, cli_option_names
from edgeinfer.core.progress import Progress


def _flags_without_type() -> None:
    """typer 0.29 prints a `<bool>` type column for on/off flags (`--force <bool>`), which reads as if
    the flag took a value; show flags bare, as every other CLI does."""
    import typer.core

    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "_edgeinfer", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._edgeinfer = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_without_type()

app = typer.Typer(
    name="edgeinfer",
    help="Export, compress and run models on edge devices, and prove with numbers they are still good.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err = Console(stderr=True)

# Config fields whose flag is not `--field-name`: errors name fields, and name these flags on the CLI.
FLAGS_NAMED_OTHERWISE = {
    "exclude_nodes": "--exclude",
    "n_ctx": "--ctx",
    "max_size_mb": "--max-size",
    "shapes": "--shape",
    "providers": "--provider",
    "eval_data": "--data",
    "inputs": "--input",
}


class CliProgress(Progress):
    """Renders a pipeline's progress on stderr: the current stage beside a spinner, a bar while a
    counted step runs (timing runs, tensors written), and every finished training epoch as a line
    that stays (on stdout, or on stderr when stdout carries --json). Use it as a context manager.

    When stderr is not a terminal (a log file, CI), there are no bars: plain lines instead, one per
    stage, a counted step's done/total at most every few seconds, and a line saying what is still
    running when nothing was printed for a while, each with the time elapsed. They start once the
    command has run PLAIN_AFTER_S, so a quick command (or a quick refusal) stays one line."""

    PLAIN_AFTER_S = float(os.environ.get("EDGEINFER_PROGRESS_AFTER_S", "2"))
    PLAIN_EVERY_S = 5.0  # a counted step's line at most this often
    HEARTBEAT_S = 15.0  # "still ..." after this long without a line

    def __init__(self, label: str, epochs: str = "", as_json: bool = False, announce: bool = True) -> None:
        import threading
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._plain = not err.is_terminal
        self._start = self._last = time.monotonic()
        self._stage, self._label = label, label
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[what]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=self._plain,
        )
        self._task = self._bar.add_task(label, total=None, what="")
        self._epochs, self._lines = epochs, err if as_json else console
        # False: no line for the label itself (a command whose checks read a large file first, so
        # a refusal after them stays one line); its stages, counts and "still ..." lines come as usual.
        self._announce = announce

    def __enter__(self) -> CliProgress:
        import threading

        self._bar.start()
        if self._plain:
            threading.Thread(target=self._heartbeat, name="edgeinfer-progress", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._bar.stop()

    def _line(self, text: str) -> None:
        import time

        with self._lock:
            now = time.monotonic()
            if now - self._start < self.PLAIN_AFTER_S:
                return
            self._last = now
            err.print(f"[{now - self._start:7.1f}s] {text}", highlight=False, markup=False, soft_wrap=True)

    def _heartbeat(self) -> None:
        import time

        announced = False
        while not self._stop.wait(min(0.25, self.PLAIN_AFTER_S or 0.25)):
            elapsed = time.monotonic() - self._start
            if not announced and elapsed >= self.PLAIN_AFTER_S and (self._announce or self._stage != self._label):
                announced = True
                self._line(self._stage)  # what has been running since before lines started
            elif time.monotonic() - self._last >= self.HEARTBEAT_S:
                self._line(f"still {self._stage}")

    def stage(self, text: str) -> None:
        self._stage = text
        if self._plain:
            self._line(text)
        self._bar.update(self._task, description=text, total=None, completed=0, what="")

    def advance(self, done: int, total: int, what: str = "") -> None:
        import time

        if self._plain and (done >= total or time.monotonic() - self._last >= self.PLAIN_EVERY_S):
            self._line(f"{self._stage}: {done}/{total}" + (f" {what}" if what else ""))
        self._bar.update(self._task, total=total, completed=done, what=what)

    def epoch(self, row) -> None:
        step = f" step {row['step']}" if "step" in row else ""
        self._lines.print(
            f"  {self._epochs}{step} epoch {row['epoch']}: loss {row['loss']:.4f}, "
            f"eval accuracy {row['eval_accuracy']:.4f}",
            highlight=False,
        )


_state = {"verbose": False}

KvType = Annotated[
    Optional[str],
    typer.Option(
        help="KV-cache type: f16 (default), q8_0 or q4_0 (less memory; `compare --kv-type` measures the quality cost)."
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (stable keys, for CI).")]
Device = Annotated[
    Optional[str], typer.Option("--device", "-d", help="Device profile name (see `edgeinfer devices`) or a .toml file.")
]
ProviderOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--provider", "-p", help="Execution provider, in order of preference (cpu, qnn, cuda, ...). Repeat for several."
    ),
]
Fallback = Annotated[
    bool,
    typer.Option(
        "--allow-fallback",
        help="Run without an unavailable provider instead of failing; the fallback is printed and recorded.",
    ),
]
Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads", min=1, max=1024, help="Intra-op threads (default: the device profile's, else all cores)."
    ),
]
Repack = Annotated[
    Optional[bool],
    typer.Option(
        "--repack/--no-repack",
        help="GGUF: let llama.cpp repack weights at load for its faster CPU kernels (default: the device's "
        "`repack`, else on, except on AMX CPUs with a CPU-only llama.cpp build, which crashes with them).",
        show_default=False,
    ),
]
TrustSource = Annotated[
    bool,
    typer.Option(
        "--trust-source",
        help="Allow loading a .pt2 that holds pickled Python objects, or running the factory code a sidecar names. Both run code: only for files you trust.",
    ),
]


class _WarningsToStderr(logging.Handler):
    """The library logs on `edgeinfer.*` loggers: warnings become yellow lines on stderr, progress of
    long steps (INFO) dim ones."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            warn(record.getMessage())
        else:
            err.print(f"[dim]{record.getMessage()}[/dim]", highlight=False, soft_wrap=True)


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors, and edgeinfer's debug log.")
    ] = False,
) -> None:
    _state["verbose"] = verbose
    logger = logging.getLogger("edgeinfer")
    handler = next((h for h in logger.handlers if isinstance(h, _WarningsToStderr)), None)
    if handler is None:
        handler = _WarningsToStderr()
        logger.addHandler(handler)
    level = logging.DEBUG if verbose else logging.INFO
    handler.setLevel(level)
    logger.setLevel(level)
    # The CLI owns the terminal: a handler some library put on the root logger (seen: onnxruntime's
    # quantization) would print every warning a second time. main() restores this on exit.
    logger.propagate = False


def warn(message: str) -> None:
    """A yellow line on stderr: something the user should know, not an error."""
    err.print(f"[yellow]{message}[/yellow]")


def resolve_device(device: str | None, provider: list[str] | None):
    """The device profile and provider list named by --device / --provider."""
    from edgeinfer.devices import Provider, get_profile

    profile = get_profile(device) if device else None
    providers = [Provider.parse(p) for p in provider] if provider else None
    return profile, providers


def runtime_target(
    providers=None,
    threads: int | None = None,
    allow_fallback: bool = False,
    *,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    kv_type: str | None = None,
    repack: bool | None = None,
):
    """The runtime options a user typed, as an edgeinfer.runtime.Target (the profile fills the rest
    in pipelines.target.resolve_target, which refuses the ones the model's runtime would ignore)."""
    from edgeinfer.core.errors import parse_choice
    from edgeinfer.core.gguf_types import KvType as Kv
    from edgeinfer.runtime import Target

    return Target(
        providers=tuple(providers) if providers else None,
        threads=threads,
        allow_fallback=allow_fallback,
        n_ctx=n_ctx,
        gpu_layers=gpu_layers,
        kv_type=parse_choice(Kv, kv_type, "KV-cache type") if kv_type else None,
        repack=repack,
    )


def mb(n_bytes: int) -> str:
    """A size in MiB, as every table shows it."""
    return f"{n_bytes / 2**20:.2f} MiB"


def _usage_error(e) -> None:
    """A usage error as one line naming the command's --help, like git and cargo print them."""
    ctx = getattr(e, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "edgeinfer --help"
    err.print(f"[red]error:[/red] {e.format_message()} (see `{where}`)", highlight=False, soft_wrap=True)


# What the machine, not edgeinfer, is out of or forbids: a full disk or quota, a read-only or
# forbidden folder. Exit 2 with one line, like bad input.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def main() -> None:
    """The console entry point: exit 0 on success, 1 for a `check` regression, 2 on bad input or
    usage, 130 when interrupted; never a traceback unless --verbose."""

    from typer.exceptions import Abort, Exit, TyperException

    # OpenMP (PyTorch's, and llama.cpp's, which shares it) is read once, when it loads.
    from edgeinfer.core.measure import apply_measurement_env

    apply_measurement_env()

    def interrupted() -> None:
        err.print("interrupted; nothing written")
        sys.exit(130)

    def internal(e: Exception) -> None:
        # A bug, not bad input: exit 3, so `check`'s 1 (regression) and 2 (bad input) stay truthful.
        if _state["verbose"]:
            err.print_exception()
        else:
            err.print(
                f"[red]internal error:[/red] {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''} "
                "(a bug in edgeinfer; rerun with `edgeinfer -v ...` and report the traceback)",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(3)

    try:
        # Typer catches Ctrl-C itself and, outside standalone mode, returns 130 instead of raising.
        try:
            with cli_option_names(FLAGS_NAMED_OTHERWISE):
                code = app(standalone_mode=False)
        finally:
            logging.getLogger("edgeinfer").propagate = True
    except EdgeInferError as e:
        if _state["verbose"]:
            err.print_exception()
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except TyperException as e:  # typer >= 0.29 bundles click; its usage errors derive from this
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `edgeinfer`: the help is the answer
            print(getattr(e, "ctx").get_help())
            sys.exit(0)
        _usage_error(e)
        sys.exit(2)
    except Exit as e:
        if e.exit_code == 130:
            interrupted()
        sys.exit(e.exit_code)
    except (Abort, KeyboardInterrupt):
        interrupted()
    except BrokenPipeError:
        sys.exit(0)  # `edgeinfer info m.onnx | head`: the reader left, nothing is wrong
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            internal(e)
        # A full disk, a read-only or forbidden folder: the machine's state, not a bug. Outputs are
        # written to a temporary name and renamed, so nothing half-written is left behind.
        if _state["verbose"]:
            err.print_exception()
        where = f" ({e.filename})" if e.filename else ""
        err.print(f"[red]error:[/red] {e.strerror}{where}; nothing was written", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:
        internal(e)
    if code == 130:
        interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def compact_table(title: str, columns: list[str], *, left: tuple[str, ...] = ("model",)):
    """A results table that fits 80 columns: no vertical rules, no edge padding, numbers never
    broken over lines (a name column folds instead)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, title_justify="left"
    )
    for col in columns:
        name = col in left
        table.add_column(col, justify="left" if name else "right", overflow="fold", no_wrap=not name)
    return table


def short_names(names: list[str]) -> tuple[str, list[str]]:
    """(the prefix all `names` share, each name without it): a table shows what tells rows apart,
    `SmolLM2-135M-Instruct.Q4_K_M.gguf` and `...Q8_0.gguf` as `Q4_K_M.gguf` and `Q8_0.gguf`."""
    import os

    if len(names) < 2:
        return "", names
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind(c) for c in "-./ ") + 1  # at a separator (not "_": Q4_K_M), so tails read as names
    if cut < 4 or any(len(n) - cut < 3 for n in names):
        return "", names
    return names[0][:cut], [n[cut:] for n in names]
