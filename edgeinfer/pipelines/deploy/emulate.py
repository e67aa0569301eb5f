"""`edgeinfer verify BUNDLE --arch arm64`: a bundle's acceptance check on an emulated ARM64 CPU,
for a board that is not on the desk.

The kit, fetched once into the cache (`emulation-arm64/`): QEMU's user-mode aarch64 emulator
(`qemu-aarch64` 8 or newer from PATH, else the static one from Debian trixie's qemu-user: QEMU 7.2,
bookworm's, crashes loading onnxruntime 1.32's aarch64 build), an aarch64 CPython 3.11 from
Debian bookworm's arm64 packages (unpacked, not installed: nothing on this machine changes), and
the aarch64 wheels of the bundle's runtime (onnxruntime at the version the bundle records, numpy)
from PyPI. Debian files are checked the way apt checks them: the InRelease file's signature by the
Debian archive keyring (gpgv), the Packages index's sha256 in it, every .deb's sha256 in that.

The emulated run loads the model on the CPU provider, runs the golden inputs and checks the outputs
against the manifest's tolerance; its latency is the emulator's, labelled "emulated, not
comparable". GGUF bundles are not run: llama-cpp-python has no aarch64 wheel and builds from source
on a board, which is said instead.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.core.errors import BackendError, ConfigError, InputError, MissingDependencyError

DEFAULT_MIRROR = "http://deb.debian.org/debian"  # EDGEINFER_DEBIAN_MIRROR names another (signatures still checked)
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
PYTHON_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6",
    "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1",
)  # fmt: skip
QEMU_SUITE, PYTHON_SUITE = "trixie", "bookworm"
TIMEOUT_S = 1800


@dataclass(frozen=True)
class Kit:
    qemu: Path
    sysroot: Path
    site: Path
    describe: str  # "QEMU 10.0.13 user mode, CPython 3.11.2 (Debian arm64), onnxruntime 1.32.0 aarch64"

    def python(self) -> list[str]:
        return [str(self.qemu), "-L", str(self.sysroot), str(self.sysroot / "usr/bin/python3.11"), "-I"]


def kit(onnxruntime_version: str, progress=None) -> Kit:
    """The emulation kit for this onnxruntime version, fetched into the cache the first time."""
    from edgeinfer.core.cache import cache_dir, enforce_cap

    root = cache_dir() / "emulation-arm64"
    root.mkdir(parents=True, exist_ok=True)
    say = progress.stage if progress is not None else (lambda _: None)
    qemu = _qemu(root, say)
    sysroot = root / "sysroot"
    if not (sysroot / "usr/bin/python3.11").is_file():
        say(f"fetching an aarch64 Python from Debian {PYTHON_SUITE} (once)")
        _unpack(_debs(PYTHON_SUITE, "arm64", PYTHON_PACKAGES, root / "debs"), sysroot)
    if not re.fullmatch(r"[0-9]+(\.[0-9]+){1,3}", onnxruntime_version):
        raise InputError(f"the bundle records onnxruntime {onnxruntime_version!r}, not a version number")
    site = root / f"site-onnxruntime-{onnxruntime_version}"
    if not (site / "onnxruntime").is_dir():
        say(f"fetching the aarch64 wheels of onnxruntime {onnxruntime_version} and numpy (once)")
        _wheels(site, onnxruntime_version)
    enforce_cap(keep=root)
    version = subprocess.run([str(qemu), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    qemu_version = re.search(r"version ([0-9.]+)", version)
    describe = (
        f"QEMU {qemu_version[1] if qemu_version else '?'} user mode, CPython 3.11 (Debian {PYTHON_SUITE} arm64), "
        f"onnxruntime {onnxruntime_version} aarch64 wheel"
    )
    return Kit(qemu, sysroot, site, describe)


def _qemu(root: Path, say) -> Path:
    """qemu-aarch64 8 or newer: from PATH, else Debian's static build, unpacked into the cache."""
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        found = shutil.which(name)
        if found:
            out = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
            m = re.search(r"version ([0-9]+)\.", out)
            if m and int(m[1]) >= 8:
                return Path(found)
    mine = root / "qemu" / "usr/bin/qemu-aarch64"
    if not mine.is_file():
        say(f"fetching QEMU's aarch64 user-mode emulator from Debian {QEMU_SUITE} (once, about 70 MB)")
        (deb,) = _debs(QEMU_SUITE, "amd64", ("qemu-user",), root / "debs")
        _unpack([deb], root / "qemu", only="./usr/bin/qemu-aarch64")
        for leftover in (root / "debs").glob("qemu-user_*"):
            leftover.unlink()  # 70 MB of other architectures' emulators
    return mine


def _mirror() -> str:
    return os.environ.get("EDGEINFER_DEBIAN_MIRROR", DEFAULT_MIRROR).rstrip("/")


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310 (a fixed http(s) mirror)
            return r.read()
    except OSError as e:
        raise BackendError(f"could not fetch {url} ({e}); --arch arm64 needs the Debian mirror once") from None


def _index(suite: str, arch: str) -> dict[str, dict[str, str]]:
    """Debian's package index for `suite`/`arch`, checked against the archive's signed InRelease."""
    if shutil.which("gpgv") is None or not KEYRING.is_file():
        raise MissingDependencyError("gpgv debian-archive-keyring", "--arch arm64 (it checks Debian's signatures)")
    import tempfile

    release = _fetch(f"{_mirror()}/dists/{suite}/InRelease")
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "InRelease"
        signed.write_bytes(release)
        check = subprocess.run(["gpgv", "--keyring", str(KEYRING), str(signed)], capture_output=True, text=True)
    if check.returncode != 0:
        raise BackendError(f"Debian's InRelease for {suite} does not carry a valid archive signature")
    name = f"main/binary-{arch}/Packages.xz"
    m = re.search(rf"^ ([0-9a-f]{{64}}) +[0-9]+ {re.escape(name)}$", release.decode("utf-8", "replace"), re.M)
    if m is None:
        raise BackendError(f"Debian's InRelease for {suite} lists no {name}")
    packed = _fetch(f"{_mirror()}/dists/{suite}/{name}")
    if hashlib.sha256(packed).hexdigest() != m[1]:
        raise BackendError(f"{name} of {suite} does not match the sha256 its signed InRelease gives")
    index = {}
    for block in lzma.decompress(packed).decode("utf-8", "replace").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", block, re.M))
        if "Package" in fields:
            index[fields["Package"]] = fields
    return index


def _debs(suite: str, arch: str, names: tuple[str, ...], folder: Path) -> list[Path]:
    """Each package's .deb, downloaded into `folder` and checked against the signed index."""
    index = _index(suite, arch)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        entry = index.get(name)
        if entry is None or not re.fullmatch(r"pool/[A-Za-z0-9+./~_-]+\.deb", entry.get("Filename", "")):
            raise BackendError(f"Debian {suite} has no {arch} package {name}")
        path = folder / Path(entry["Filename"]).name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["SHA256"]:
            data = _fetch(f"{_mirror()}/{entry['Filename']}")
            if hashlib.sha256(data).hexdigest() != entry["SHA256"]:
                raise BackendError(f"{path.name} does not match the sha256 of Debian's signed index")
            path.write_bytes(data)
        out.append(path)
    return out


def _unpack(debs: list[Path], into: Path, only: str | None = None) -> None:
    """Unpack .debs into a folder (dpkg-deb -x: files only, nothing installed or run), atomically."""
    if shutil.which("dpkg-deb") is None:
        raise MissingDependencyError("dpkg", "--arch arm64 (it unpacks Debian packages)")
    tmp = into.with_name(into.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        if only is None:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, timeout=TIMEOUT_S)
        else:  # one member: dpkg-deb --fsys-tarfile piped through tar
            tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(tmp), only], input=tar.stdout, check=True, timeout=TIMEOUT_S)
    shutil.rmtree(into, ignore_errors=True)
    tmp.rename(into)


def _wheels(site: Path, onnxruntime_version: str) -> None:
    """onnxruntime and numpy's aarch64 wheels for CPython 3.11 from PyPI, unpacked into `site`."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-I", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", tmp,
            "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_27_aarch64",
            "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp",
            f"onnxruntime=={onnxruntime_version}", "numpy<2.5",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
            raise BackendError(f"could not fetch the aarch64 wheels of onnxruntime {onnxruntime_version}: {said}")
        partial = site.with_name(site.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for member in z.namelist():  # a wheel from PyPI; still, nothing may land outside
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise BackendError(f"{wheel.name} holds a path outside its folder: {member}")
                z.extractall(partial)
        shutil.rmtree(site, ignore_errors=True)
        partial.rename(site)


def run_emulated(the_kit: Kit, bundle: Path, manifest, runs: int) -> dict:
    """The bundle's goldens on the emulated CPU: {"machine", "passed", "detail", "latency_ms"}."""
    script = Path(__file__).with_name("emulated_check.py")
    args = {
        "site": str(the_kit.site), "model": str(bundle / manifest.model), "golden": str(bundle / manifest.golden),
        "outputs": list(manifest.outputs), "min_cosine": manifest.tolerance.min_cosine,
        "max_abs_diff": manifest.tolerance.max_abs_diff, "threads": manifest.threads, "runs": runs,
    }  # fmt: skip
    try:
        done = subprocess.run(
            [*the_kit.python(), str(script), json.dumps(args)], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"the emulated check took over {TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if done.returncode != 0 or not isinstance(result, dict) or "passed" not in result:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]
        raise BackendError(f"the emulated aarch64 run failed: {said}")
    return result


def check_arch(arch: str) -> str:
    if arch not in ("native", "arm64"):
        raise ConfigError(f"--arch {arch!r}: choose native (this machine) or arm64 (emulated)")
    return arch
