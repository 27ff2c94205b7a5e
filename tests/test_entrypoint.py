import json
import subprocess
import sys


def test_help_and_version_do_not_import_torch():
    code = ("import sys; sys.argv = ['swinfuse', '--help']\n"
            "from swinfuse.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "TORCH False" in out.stdout, out.stdout + out.stderr


def test_console_script_runs_profile_json():
    out = subprocess.run([sys.executable, "-m", "swinfuse", "profile", "--size", "67", "--json",
                          "--repetitions", "1", "--warmup", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sizes"][0]["output_shape"] == [1, 1, 134, 134]


def test_version():
    out = subprocess.run([sys.executable, "-m", "swinfuse", "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("swinfuse ")


def test_failed_command_exits_non_zero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "swinfuse", "evaluate", str(tmp_path / "nothing"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("Error: ") and out.stderr.count("\n") == 1


def test_the_command_line_imports_the_library_face_only():
    """swinfuse.cli imports swinfuse.api (and the error and JSON leaves), never the packages behind the api."""
    import ast
    from pathlib import Path

    import swinfuse.cli

    allowed = {"swinfuse", "swinfuse.api", "swinfuse.errors", "swinfuse.jsonable"}
    for path in Path(swinfuse.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("swinfuse"):
                names = [node.module] if node.module != "swinfuse" else [f"swinfuse.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("swinfuse")]
            else:
                continue
            for name in names:
                assert name in allowed or name.startswith("swinfuse.cli") or name == "swinfuse.__version__", \
                    f"{path.name} imports {name}"
