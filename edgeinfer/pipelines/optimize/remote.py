"""`optimize --executor ssh://[USER@]HOST[:PORT]`: candidates are built here and measured on the
device itself. Each one travels as its bundle would (the model, with the baseline and the
evaluation inputs beside it) and is run there by on_device.py, which needs only onnxruntime and
numpy: the task outputs, interleaved latency against the baseline and the peak memory of a fresh
process come back, and the figures are the device's own (the table, manifest and recipe say where).

The system's `ssh` is used with the user's own configuration, keys and agent, in batch mode (never
a password prompt); EDGEINFER_SSH_CONFIG names another ssh_config file. Files travel over it as a
tar stream in and `cat` out, so the device needs a POSIX shell, tar and Python with onnxruntime and
numpy, not an SFTP server. What comes back is read as untrusted: a size budget, a schema, no pickles.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.errors import BackendError, ConfigError, InputError, option
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.schema import Record

# [user@]host[:port]: a name, an IPv4 address or a bracketed IPv6 one; nothing that ssh could read
# as an option (a host starting with "-") or a shell could expand.
_URL = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]{0,63})@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)
_PYTHON = re.compile(r"[A-Za-z0-9_./+-]{1,255}")
MAX_RESULT_BYTES = 1 << 20
MAX_OUTPUTS_BYTES = 1 << 30
TIMEOUT_S = 1800


@dataclass(frozen=True)
class DeviceResult(Record):
    """result.json as on_device.py writes it; anything else is refused."""

    schema: int
    providers: list[str]
    machine: str
    system: str
    cpus: int | None
    onnxruntime: str
    python: str
    times_s: dict[str, list[float]]
    memory_mb: float | None = None

    def check(self, where: str) -> None:
        if self.schema != 1:
            raise InputError(f"{where}.schema is {self.schema}; this edgeinfer reads 1")
        if set(self.times_s) != {"base", "cand"} or not all(self.times_s.values()):
            raise InputError(f"{where}.times_s must hold the timed runs of base and cand")
        if any(not (0 < t < 3600) for ts in self.times_s.values() for t in ts):
            raise InputError(f"{where}.times_s holds a time outside (0, 3600) s")
        if self.memory_mb is not None and not 0 < self.memory_mb < 1 << 24:
            raise InputError(f"{where}.memory_mb is {self.memory_mb}")


@dataclass
class SshDevice:
    """A device reached over ssh, where candidates are measured. `describe()` after `probe()`."""

    url: str
    python: str = "python3"
    user: str | None = None
    host: str = ""
    port: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, python: str = "python3") -> SshDevice:
        m = _URL.fullmatch(url)
        if m is None:
            raise ConfigError(
                f"{option('executor', url)} is not ssh://[USER@]HOST[:PORT] (a host name or address, no options)"
            )
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"{option('executor', url)}: port {port} is outside 1 ... 65535")
        if not _PYTHON.fullmatch(python):
            raise ConfigError(f"{option('remote_python', python)} must be a command or a path, with no spaces")
        return cls(url, python, m["user"], m["host"].strip("[]"), port)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        config = os.environ.get("EDGEINFER_SSH_CONFIG")
        if config:
            opts = ["-F", config, *opts]
        return opts

    def ssh(self, command: str, timeout: float = TIMEOUT_S, stdin: Path | None = None) -> bytes:
        """Run `command` (a shell command line, already quoted) on the device, with `stdin` from a
        local file; its stdout. Files travel this way (tar in, cat out): the device needs a POSIX
        shell and tar, not an SFTP server (many boards' ssh servers have none)."""
        port = ["-p", str(self.port)] if self.port else []
        argv = ["ssh", *self._options(), *port, "--", self.destination, command]
        try:
            with open(stdin, "rb") if stdin is not None else open(os.devnull, "rb") as feed:
                done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=feed)
        except FileNotFoundError:
            raise ConfigError(f"{option('executor', self.url)} needs the `ssh` command (OpenSSH client)") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"{self.url}: no answer within {timeout:.0f} s") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines() or [f"exit {done.returncode}"]
            raise BackendError(f"{self.url}: {said[-1][:300]}")
        return done.stdout

    def send(self, files: list[Path], remote_dir: str) -> None:
        """Copy `files` (symlinks followed) into `remote_dir` on the device, as one tar stream."""
        import tarfile

        with scratch_dir("send") as tmp:
            archive = Path(tmp) / "send.tar"
            with tarfile.open(archive, "w") as tar:
                for f in files:
                    tar.add(Path(f).resolve(), arcname=Path(f).name)
            self.ssh(f"tar -xf - -C {shlex.quote(remote_dir)}", stdin=archive)

    def fetch(self, remote_file: str, local: Path, limit: int) -> None:
        """Copy one file from the device, refused when it is over `limit` bytes."""
        data = self.ssh(f"head -c {limit + 1} {shlex.quote(remote_file)}")
        if len(data) > limit:
            raise BackendError(f"{self.url}: {Path(remote_file).name} on the device is larger than any measurement")
        local.write_bytes(data)

    def probe(self) -> dict[str, Any]:
        """What the device is and has: machine, cores, onnxruntime and its providers (checked once)."""
        code = (
            "import json, os, platform; import onnxruntime as o, numpy; "
            "print(json.dumps({'machine': platform.machine(), 'system': platform.system(), 'cpus': os.cpu_count(), "
            "'onnxruntime': o.__version__, 'numpy': numpy.__version__, 'providers': o.get_available_providers()}))"
        )
        try:
            out = self.ssh(f"{shlex.quote(self.python)} -I -c {shlex.quote(code)}", timeout=120)
            facts = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        except BackendError as e:
            raise BackendError(
                f"{e}; the device needs Python with onnxruntime and numpy ({option('remote_python')} names it)"
            ) from None
        except (ValueError, IndexError):
            raise BackendError(f"{self.url}: the device's answer to the probe is not JSON") from None
        if not isinstance(facts, dict) or not isinstance(facts.get("providers"), list):
            raise BackendError(f"{self.url}: the device's answer to the probe is not what it should be")
        self.facts = facts
        return facts

    def describe(self) -> str:
        f = self.facts
        return (
            f"{self.destination}: {f.get('machine', '?')}, {f.get('cpus', '?')} CPUs, "
            f"onnxruntime {f.get('onnxruntime', '?')}"
        )

    def providers_for(self, wanted: list[str]) -> list[str]:
        """The profile's providers, each of which the device must have (refused otherwise, exit 2)."""
        have = set(self.facts.get("providers", []))
        missing = [p for p in wanted if p not in have]
        if missing:
            raise ConfigError(
                f"{self.destination} has no {', '.join(missing)} (its onnxruntime "
                f"{self.facts.get('onnxruntime', '?')} offers {', '.join(sorted(have))}); install it there or "
                f"choose another {option('device')}"
            )
        return wanted

    def measure(self, baseline: Path, candidate: Path, batches: list[dict[str, np.ndarray]], job: dict) -> tuple:
        """Ship and measure one candidate; (DeviceResult, {"base": [outputs], "cand": [outputs]}), the
        outputs of each batch being those job["outputs"] lists (indices)."""
        with scratch_dir("remote") as tmp:
            local = Path(tmp)
            os.symlink(Path(baseline).resolve(), local / "baseline.onnx")
            os.symlink(Path(candidate).resolve(), local / "candidate.onnx")
            np.savez(local / "batches.npz", **{f"{i}:{k}": v for i, b in enumerate(batches) for k, v in b.items()})  # pyright: ignore[reportArgumentType]
            (local / "job.json").write_text(json.dumps(job))
            (local / "on_device.py").write_text((Path(__file__).parent / "on_device.py").read_text())
            remote = self.ssh("mktemp -d -t edgeinfer-XXXXXXXX", timeout=60).decode("utf-8", "replace").strip()
            if not re.fullmatch(r"/[A-Za-z0-9._/-]{1,200}", remote):
                raise BackendError(f"{self.url}: mktemp on the device answered {remote[:80]!r}")
            q = shlex.quote(remote)
            try:
                names = ("baseline.onnx", "candidate.onnx", "batches.npz", "job.json", "on_device.py")
                self.send([local / n for n in names], remote)
                self.ssh(f"{shlex.quote(self.python)} -I {q}/on_device.py {q}")
                self.fetch(f"{remote}/result.json", local / "result.json", MAX_RESULT_BYTES)
                self.fetch(f"{remote}/outputs.npz", local / "outputs.npz", MAX_OUTPUTS_BYTES)
            finally:
                try:
                    self.ssh(f"rm -rf -- {q}", timeout=60)
                except BackendError:
                    pass
            return self._read(local, len(batches), job["outputs"])

    def _read(self, local: Path, n_batches: int, wanted: list[int]) -> tuple:
        """The device's result and, per model and batch, the outputs `wanted` (indices, in that order)."""
        where = f"{self.url} result.json"
        path = local / "result.json"
        try:
            result = DeviceResult.parse(json.loads(path.read_text()), where)
        except (ValueError, TypeError, InputError) as e:
            raise BackendError(f"{self.url}: the device's result is not a measurement ({e})") from None
        outputs: dict[str, list[list[np.ndarray]]] = {"base": [], "cand": []}
        try:
            with np.load(local / "outputs.npz", allow_pickle=False) as data:
                for label in outputs:
                    for i in range(n_batches):  # "base:B:K": output K on batch B
                        outputs[label].append([np.asarray(data[f"{label}:{i}:{k}"], dtype=np.float32) for k in wanted])
        except (KeyError, ValueError, OSError) as e:
            raise BackendError(f"{self.url}: the device's outputs are not what was asked for ({e})") from None
        return result, outputs
