"""The package: `import swinfuse` is lazy (no torch until a name needs it) and every public name resolves, the
`swinfuse_cli` alias is the same modules, and the default checkpoint is package data that a wheel carries."""

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import swinfuse
from swinfuse import api

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(swinfuse.__file__).resolve().parent
MEMBER = "swinfuse/weights/swinfuse-default.safetensors"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_default_weights_are_found_inside_the_package(monkeypatch):
    monkeypatch.delenv("SWINFUSE_WEIGHTS", raising=False)
    path = api.default_weights_path()
    # inside the package, not beside it: an installed wheel has no repository weights/ folder
    assert path.is_relative_to(PACKAGE) and path.is_file()
    assert path == PACKAGE / "weights" / api.DEFAULT_WEIGHTS_NAME


def test_swinfuse_weights_variable_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv("SWINFUSE_WEIGHTS", str(tmp_path / "mine.safetensors"))
    assert api.default_weights_path() == tmp_path / "mine.safetensors"


def test_the_readme_path_is_the_same_file():
    # README and benchmarks name weights/swinfuse-default.safetensors: a link to the package's one copy
    link = ROOT / "weights" / "swinfuse-default.safetensors"
    assert link.is_symlink() and link.resolve() == (PACKAGE / "weights" / api.DEFAULT_WEIGHTS_NAME).resolve()


def test_save_checkpoint_writes_through_a_symlink(tiny_model, tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint, save_checkpoint

    real = tmp_path / "pkg" / "w.safetensors"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "w.safetensors"
    link.symlink_to(real)
    save_checkpoint(tiny_model, link, {"note": "through the link"})
    assert link.is_symlink()  # --ship weights/swinfuse-default.safetensors updates the packaged copy
    assert load_checkpoint(real)[1]["provenance"] == {"note": "through the link"}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel offline needs setuptools")
def test_a_wheel_carries_the_default_checkpoint(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("swinfuse-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert MEMBER in zf.namelist()
        data = zf.read(MEMBER)
    assert hashlib.sha256(data).hexdigest() == _sha(PACKAGE / "weights" / api.DEFAULT_WEIGHTS_NAME)


def test_import_swinfuse_loads_no_torch_and_every_public_name_resolves():
    code = ("import sys, swinfuse; assert 'torch' not in sys.modules; swinfuse.SwinFuse; print('torch' in sys.modules)\n"
            "for name in swinfuse.__all__: getattr(swinfuse, name)  # an unresolvable name raises here")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"  # torch loads when a name that needs it is first used, not before


def test_old_import_name_is_the_same_module():
    import swinfuse.model.network as new
    import swinfuse_cli.model.network as old
    from swinfuse_cli.training.trainer import train

    assert old is new and train.__module__ == "swinfuse.training.trainer"
