"""`optimize --executor ssh://HOST`: candidates built here, measured on the device over ssh. The
device is this machine behind an sshd the test starts on 127.0.0.1 with its own host key and client
key; the device's Python is a wrapper that logs each run, so the figures are seen to come from there."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not Path(SSHD).exists(), reason="needs OpenSSH's sshd (apt-get install openssh-server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """(url, ssh_config, the device's python wrapper, its run log) of an sshd on 127.0.0.1."""
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nPidFile {d / 'sshd.pid'}\n"
    )
    (d / "ssh_config").write_text(
        f"Host *\n  IdentityFile {d / 'client'}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    log = d / "device-runs.log"
    wrapper = d / "device-python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    yield f"ssh://{user}@127.0.0.1:{port}", d / "ssh_config", wrapper, log
    proc.terminate()
    proc.wait(timeout=10)


def test_candidates_are_measured_on_the_device_and_the_bundle_says_where(
    device, lenet_onnx, digits_eval, tmp_path, capsys, monkeypatch
):
    url, config, python, log = device
    monkeypatch.setenv("EDGEINFER_SSH_CONFIG", str(config))
    out = tmp_path / "bundle"
    code, stdout, err = run_cli(
        capsys, "optimize", lenet_onnx, "--data", digits_eval, "--executor", url, "--remote-python", python,
        "--runs", "5", "--max-drop", "0.02", "-o", out, "--json", "--no-cache",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert report["remote"].startswith(url.removeprefix("ssh://").split(":")[0]) and "x86_64" in report["remote"]
    measured = [c for c in report["candidates"] if c["drop"] is not None]
    assert len(measured) >= 3
    for c in measured:
        assert c["measured_on"].startswith("ssh://") and c["p50_ms"] > 0 and c["memory_mb"] > 0
    runs = log.read_text().splitlines()
    # one probe, then one on_device.py run per candidate measured; nothing measured here instead
    assert sum("on_device.py" in r for r in runs) == len(measured) and any(r.startswith("-I -c") for r in runs)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["measured"]["measured_on"].startswith("ssh://") and manifest["measured"]["p50_ms"] > 0
    assert "measured_on" in (out / "recipe.toml").read_text()
    code, said, _ = run_cli(capsys, "verify", out, "--json")
    assert code == 0 and json.loads(said)["passed"]


@pytest.mark.parametrize(
    "url",
    [
        "ssh://-oProxyCommand=touch%20/tmp/edgeinfer-pwned",
        "ssh://host;touch /tmp/edgeinfer-pwned",
        "ssh://user@host:0",
        "ssh://$(touch /tmp/edgeinfer-pwned)",
        "ssh://",
    ],
)
def test_a_hostile_executor_url_is_refused_before_anything_runs(url, lenet_onnx, digits_eval, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "optimize", lenet_onnx, "--data", digits_eval, "--executor", url, "-o", tmp_path / "b"
    )
    assert code == 2 and ("ssh://[USER@]HOST[:PORT]" in " ".join(err.split()) or "port" in err)
    assert not Path("/tmp/edgeinfer-pwned").exists() and not (tmp_path / "b").exists()


def test_what_the_device_cannot_do_or_sends_back_wrong_is_one_line(
    device, lenet_onnx, digits_eval, tmp_path, capsys, monkeypatch
):
    """A device Python without onnxruntime, a --remote-python with a shell in it, an unreachable
    device, a device whose result is not a measurement: exit 2, one line, no bundle."""
    url, config, _, _ = device
    monkeypatch.setenv("EDGEINFER_SSH_CONFIG", str(config))
    out = tmp_path / "b"
    args = ("optimize", lenet_onnx, "--data", digits_eval, "-o", out, "--runs", "3", "--no-cache")

    code, _, err = run_cli(capsys, *args, "--executor", url, "--remote-python", "/bin/false")
    assert code == 2 and "needs Python with onnxruntime and numpy" in " ".join(err.split())
    code, _, err = run_cli(capsys, *args, "--executor", url, "--remote-python", "python3;reboot")
    assert code == 2 and "--remote-python" in err
    code, _, err = run_cli(capsys, *args, "--executor", f"ssh://127.0.0.1:{_free_port()}")
    assert code == 2 and "127.0.0.1" in err
    code, _, err = run_cli(capsys, *args, "--remote-python", "python3.12")
    assert code == 2 and "--executor ssh://HOST" in " ".join(err.split())

    liar = tmp_path / "liar-python"  # answers the probe, then "measures" 0 s and a huge memory
    liar.write_text(
        f'#!/bin/sh\ncase "$2" in */on_device.py) echo \'{{"schema": 1, "providers": [], "machine": "x", '
        f'"system": "x", "cpus": 1, "onnxruntime": "1", "python": "3", "times_s": {{"base": [0], "cand": [-1]}}}}\' '
        f'> "$3/result.json"; : > "$3/outputs.npz";; *) exec {sys.executable} "$@";; esac\n'
    )
    liar.chmod(0o755)
    code, _, err = run_cli(capsys, *args, "--executor", url, "--remote-python", liar)
    line = " ".join(err.split())
    assert code == 2 and "not a measurement" in line and "times_s" in line and not out.exists()
