import subprocess
import sys

HEAVY = ["torch", "onnxruntime", "transformers", "llama_cpp"]


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('LOADED:', *[m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.rsplit("LOADED:", 1)[1].split())


def test_import_edgeinfer_loads_no_heavy_backend():
    assert _loaded_after("import edgeinfer, edgeinfer.cli, edgeinfer.core.artifact, edgeinfer.devices") == set()


def test_help_loads_no_heavy_backend_and_lists_commands():
    code = (
        "import sys\nsys.argv=['edgeinfer','--help']\nfrom edgeinfer.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert _loaded_after(code) == set()
    out = subprocess.run([sys.executable, "-m", "edgeinfer", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("export", "run", "bench", "devices", "demo"):
        assert command in out.stdout
