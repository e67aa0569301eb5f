"""Target device profiles: which execution providers to try, threads, memory and fast precisions.

Profiles are data (`devices/*.toml`, one device a file); this module loads and checks them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, parse_choice
from edgeinfer.core.gguf_types import GgufType, KvType
from edgeinfer.core.providers import Provider

__all__ = [
    "DeviceProfile",
    "LlmDefaults",
    "Precision",
    "QuantDefaults",
    "Provider",
    "builtin_profiles",
    "get_profile",
    "host_profile",
    "load_profile_file",
]


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"


_KEYS = {
    "name", "description", "providers", "threads", "memory_mb", "precisions", "static_shapes", "quant", "llm",
    "openvino",
}  # fmt: skip
# The keys of the [quant] and [llm] tables, with the type each value must have.
_SECTION_TYPES = {
    "quant": {"activation_type": str, "weight_type": str, "reduce_range": bool, "per_channel": bool, "recipe": str},
    "llm": {"n_gpu_layers": int, "n_ctx": int, "kquant": str, "kv_type": str, "repack": bool},
    "openvino": {"device": str},
}
OPENVINO_DEVICES = ("CPU", "GPU", "NPU")


@dataclass(frozen=True)
class QuantDefaults:
    """A profile's [quant] table, and the one place its defaults live: what `quantize --device P`
    and `optimize --device P` both start from (pipelines.quantize.device_quant_config merges it
    with the user's options and this machine)."""

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: 7-bit weights only where the CPU lacks VNNI
    recipe: str = "generic"


@dataclass(frozen=True)
class LlmDefaults:
    """A profile's [llm] table, and the one place its defaults live: what `run`, `bench`, `chat`,
    `serve`, `fit`, `quantize` and `optimize` of a GGUF all start from with `--device P`
    (pipelines.llm.llama_settings merges it with the user's options)."""

    n_gpu_layers: int = 0  # layers offloaded to the GPU (999: all); refused where llama.cpp has no GPU
    n_ctx: int = 2048
    kquant: GgufType = GgufType.Q4_K_M  # the llama.cpp type `quantize` makes by default
    kv_type: KvType = KvType.F16
    repack: bool | None = None  # llama.cpp's repacked weight buffers; None: its own choice per CPU

    @classmethod
    def parse(cls, table: dict[str, Any], path: Path | str) -> LlmDefaults:
        values = dict(table)
        for key, kind, what in (("kquant", GgufType, "llama.cpp type"), ("kv_type", KvType, "KV-cache type")):
            if key in values:
                try:
                    values[key] = parse_choice(kind, str(values[key]), what)
                except ConfigError as e:
                    raise _fail(path, f"llm.{key}", str(e)) from None
        n_ctx = values.get("n_ctx", cls.n_ctx)
        if not 16 <= n_ctx <= 1 << 20:
            raise _fail(path, "llm.n_ctx", f"{n_ctx} is outside 16 ... 1048576 tokens")
        return cls(**values)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    providers: tuple[Provider, ...]
    threads: int | None = None
    memory_mb: int | None = None
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    static_shapes: bool = False
    # Quantization defaults that matter on this hardware (see compress/).
    quant: QuantDefaults = QuantDefaults()
    # llama.cpp defaults: GPU layers, context size, the k-quant that suits the memory.
    llm: LlmDefaults = LlmDefaults()
    path: Path | None = None
    # The OpenVINO device the hardware has ("CPU", "GPU", "NPU"): `optimize` then also measures the
    # model compiled by OpenVINO there, in the profile's precisions. None: ONNX Runtime only.
    openvino_device: str | None = None


def _fail(path: Path | str, key: str, message: str) -> ConfigError:
    return ConfigError(f"device profile {path}: key {key!r}: {message}")


def parse_profile(data: dict[str, Any], path: Path | str) -> DeviceProfile:
    unknown = set(data) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise _fail(path, key, f"unknown key; allowed keys: {', '.join(sorted(_KEYS))}")
    for key in ("name", "providers"):
        if key not in data:
            raise _fail(path, key, "missing (required)")
    if (
        not isinstance(data["providers"], list)
        or not data["providers"]
        or not all(isinstance(p, str) for p in data["providers"])
    ):
        raise _fail(path, "providers", "must be a non-empty list of provider names")
    try:
        providers = tuple(Provider.parse(p) for p in data["providers"])
    except ConfigError as e:
        raise _fail(path, "providers", str(e)) from None
    precisions = []
    if not isinstance(data.get("precisions", []), list):
        raise _fail(path, "precisions", 'must be a list such as ["int8", "fp16"]')
    for p in data.get("precisions", ["fp32"]):
        try:
            precisions.append(Precision(p))
        except ValueError:
            raise _fail(path, "precisions", f"{p!r} is not one of {', '.join(Precision)}") from None
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or not 0 <= threads <= 1024):
        raise _fail(path, "threads", f"{threads!r} is not a non-negative integer (0 lets the runtime decide)")
    memory = data.get("memory_mb")
    if memory is not None and (not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0):
        raise _fail(path, "memory_mb", f"{memory!r} is not a positive integer")
    static_shapes = data.get("static_shapes", False)
    if not isinstance(static_shapes, bool):
        raise _fail(path, "static_shapes", f"{static_shapes!r} is not true or false (unquoted)")
    for section, types in _SECTION_TYPES.items():
        allowed = set(types)
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise _fail(path, section, f"must be a table ([{section}] with keys {', '.join(sorted(allowed))})")
        extra = set(table) - allowed
        if extra:
            raise _fail(path, f"{section}.{sorted(extra)[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
        for key, value in table.items():
            kind = types[key]
            if kind is bool and not isinstance(value, bool):
                raise _fail(path, f"{section}.{key}", f"{value!r} is not true or false (unquoted)")
            if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise _fail(path, f"{section}.{key}", f"{value!r} is not a non-negative integer")
            if kind is str and not isinstance(value, str):
                raise _fail(path, f"{section}.{key}", f"{value!r} is not a string")
    ov_device = data.get("openvino", {}).get("device")
    if ov_device is not None and ov_device not in OPENVINO_DEVICES:
        raise _fail(path, "openvino.device", f"{ov_device!r} is not one of {', '.join(OPENVINO_DEVICES)}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise _fail(path, "name", "must be a non-empty string")
    if not isinstance(data.get("description", ""), str):
        raise _fail(path, "description", "must be a string")
    return DeviceProfile(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        providers=providers,
        threads=threads or None,
        memory_mb=memory,
        precisions=tuple(precisions),
        static_shapes=static_shapes,
        quant=QuantDefaults(**data.get("quant", {})),
        llm=LlmDefaults.parse(data.get("llm", {}), path),
        path=Path(path),
        openvino_device=ov_device,
    )


def load_profile_file(path: Path) -> DeviceProfile:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"device profile {path}: not a text file (binary?); a profile is TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"device profile {path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"device profile {path} cannot be read: {e.strerror or e}") from None
    return parse_profile(data, path)


def builtin_profiles() -> dict[str, DeviceProfile]:
    profiles = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            profile = load_profile_file(Path(str(entry)))
            profiles[profile.name] = profile
    return profiles


def get_profile(name_or_path: str) -> DeviceProfile:
    """A built-in profile by name, `host` (this machine, host_profile), or a user's TOML file by path."""
    if name_or_path == HOST:
        return host_profile()
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"device profile file {path} does not exist")
        return load_profile_file(path)
    profiles = builtin_profiles()
    if name_or_path not in profiles:
        raise ConfigError(
            f"unknown device {name_or_path!r}; built-in profiles: {', '.join([*profiles, HOST])} "
            "(or pass a path to your own .toml)"
        )
    return profiles[name_or_path]


# /proc/cpuinfo flags that decide which integer and low-precision kernels ONNX Runtime can use.
ISA_FLAGS = {
    "avx2": "avx2",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "arm_dotprod": "asimddp",  # ARMv8.2 SDOT/UDOT
    "arm_i8mm": "i8mm",
}


def cpu_model() -> str:
    """This CPU's name (/proc/cpuinfo's model name), else what the platform module says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Every flag of this CPU (x86 `flags`, ARM `Features`), from /proc/cpuinfo or the given text."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def host_isa(cpuinfo: str | None = None) -> list[str]:
    """The instruction-set extensions of this CPU (or of the given /proc/cpuinfo text) that matter
    for quantized and BF16 kernels."""
    flags = cpu_flags(cpuinfo)
    return [name for name, flag in ISA_FLAGS.items() if flag in flags]


def host_has_bf16() -> bool:
    """The CPU has BF16 dot products (AVX512-BF16, AMX-BF16): PyTorch's autocast and OpenVINO use them."""
    return bool({"avx512_bf16", "amx_bf16"} & set(host_isa()))


def host_has_vnni() -> bool:
    """x86 CPUs with AVX-512 VNNI or AVX-VNNI run u8s8 dot products without saturating."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686"):
        return True  # reduce_range only matters on x86
    if not Path("/proc/cpuinfo").exists():
        return True
    isa = host_isa()
    return "avx512_vnni" in isa or "avx_vnni" in isa


HOST = "host"


def physical_cores(cpuinfo: str | None = None) -> int:
    """Cores, not hardware threads (SMT siblings share one core's units), from /proc/cpuinfo;
    the logical CPU count where it does not say."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or os.cpu_count() or 1


def memory_mb() -> int | None:
    """This machine's memory (MemTotal), MiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host_profile(cpuinfo: str | None = None, openvino: bool | None = None) -> DeviceProfile:
    """The profile of this machine (`--device host`): its CPU's ISA decides the precisions (BF16
    where it has AVX512-BF16, AMX-BF16 or ARM's BF16; INT8 everywhere, full-range where VNNI or
    ARM's dot products are), threads are its physical cores, memory its RAM; OpenVINO's CPU is
    one of its runtimes when the package is installed (`openvino`: None, look)."""
    import importlib.util
    import platform

    isa = host_isa(cpuinfo)
    flags = cpu_flags(cpuinfo)
    precisions = [Precision.FP32, Precision.INT8]
    if {"avx512_bf16", "amx_bf16", "bf16"} & (flags | set(isa)):
        precisions.insert(1, Precision.BF16)
    if openvino is None:
        openvino = importlib.util.find_spec("openvino") is not None
    arm = platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags
    full_range = arm or bool({"avx512_vnni", "avx_vnni"} & set(isa))
    cores = physical_cores(cpuinfo)
    shown = ", ".join(isa) or "no AVX2"
    return DeviceProfile(
        name=HOST,
        description=f"this machine: {cpu_model()}, {cores} cores, {shown}",
        providers=(Provider.CPU,),
        threads=cores,
        memory_mb=memory_mb(),
        precisions=tuple(precisions),
        quant=QuantDefaults(reduce_range=not full_range),
        llm=LlmDefaults(n_ctx=4096),
        openvino_device="CPU" if openvino else None,
    )
