"""The cache folder seen and kept in bounds: `edgeinfer cache` lists it, `cache clean` empties it,
and the least recently used files go when it grows past its cap."""

from __future__ import annotations

import json
import os
import time

from tests.conftest import run_cli


def _fill(root, name: str, mib: float, age_days: float) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * int(mib * 2**20))
    then = time.time() - age_days * 86400
    os.utime(path, (then, then))


def test_cache_lists_cleans_and_evicts_least_recently_used(tmp_path, monkeypatch, capsys):
    from edgeinfer.core.cache import enforce_cap

    monkeypatch.setenv("EDGEINFER_CACHE", str(tmp_path))
    _fill(tmp_path, "logits/old.npz", 3, 10)
    _fill(tmp_path, "logits/recent.npz", 3, 1)
    _fill(tmp_path, "measurements/a.json", 0.01, 20)
    _fill(tmp_path, "smollm2-135m-instruct-hf/model.safetensors", 4, 5)
    code, out, _ = run_cli(capsys, "cache", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["bytes"] > 10 * 2**20
    assert {e["name"]: e["files"] for e in listed["entries"]} == {
        "logits": 2,
        "measurements": 1,
        "smollm2-135m-instruct-hf": 1,
    }
    monkeypatch.setenv("EDGEINFER_CACHE_MAX_MB", "8")
    _fill(tmp_path, "logits/new.npz", 3, 0)
    freed = enforce_cap(keep=tmp_path / "logits" / "new.npz")
    # Oldest first: the 20-day entry, the 10-day logits, then the model folder as a whole (5 days).
    assert not (tmp_path / "measurements" / "a.json").exists() and not (tmp_path / "logits" / "old.npz").exists()
    assert not (tmp_path / "smollm2-135m-instruct-hf").exists() and freed >= 7 * 2**20
    assert (tmp_path / "logits" / "new.npz").exists() and (tmp_path / "logits" / "recent.npz").exists()
    code, out, _ = run_cli(capsys, "cache", "clean", "--older-than", "0.5", "--json")
    assert code == 0 and json.loads(out)["files_removed"] == 1  # recent.npz, a day old
    code, out, _ = run_cli(capsys, "cache", "clean")
    assert code == 0 and "removed 1 files" in out and not any(tmp_path.iterdir())
    monkeypatch.setenv("EDGEINFER_CACHE_MAX_MB", "lots")
    code, _, err = run_cli(capsys, "cache")
    assert code == 2 and "EDGEINFER_CACHE_MAX_MB" in err
