"""The command line's root, shared options and rendering (swinfuse/cli/root.py, options.py, render.py): the
entry point, exit codes, one-line errors, usage errors, prompts that are not text, and what it imports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import swinfuse
from conftest import asset_pair, run_main
from swinfuse import api


@pytest.mark.parametrize("args,message", [
    (["profile", "--device", "cuda"], "Error: --device cuda was asked for but CUDA is not available"),
    (["profile", "--size", "abc"], "Error: size must be H or HxW (e.g. 64 or 480x640), got 'abc'"),
    (["profile", "--embed-dim", "10", "--ex-num-heads", "3"], "Error: embed_dim=10 is not divisible by ex_num_heads entry 3"),
    (["profile", "--preset", "huge"], "Error: unknown preset 'huge'; choose one of ['default', 'halfres', 'smoke', 'swinfusion']"),
    (["profile", "--precision", "fp16", "--device", "cpu"], "Error: --precision fp16 needs a CUDA device"),
    (["summary", "--weights", "missing.safetensors"], "Error: weights file not found: missing.safetensors"),
])
def test_errors_are_one_line_on_stderr_with_exit_1(args, message, monkeypatch, capsys):
    from swinfuse.cli import main

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["swinfuse", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 1
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == ""


def test_main_prints_error_line(monkeypatch, capsys):
    from swinfuse.cli import main

    monkeypatch.setattr("sys.argv", ["swinfuse", "summary", "--weights", "nope.safetensors"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err == "Error: weights file not found: nope.safetensors\n"


# -- usage errors: typer's own short message and exit 2, whichever click typer carries ----------------------
@pytest.mark.parametrize("args,fragment", [
    (["fuse", "a.png", "b.png", "--promt", "x"], "No such option: --promt"),
    (["fuse", "a.png"], "Missing argument"),
    (["fuse", "a.png", "b.png", "--threads", "abc"], "--threads"),
    (["fsue"], "No such command 'fsue'"),
    (["--install-completion"], "No such option: --install-completion"),
    ([], "COMMAND [ARGS]"),
])
def test_usage_errors_exit_2_without_a_traceback(args, fragment, monkeypatch, capsys):
    code, captured = run_main(monkeypatch, capsys, args)
    output = captured.out + captured.err
    assert code == 2, output
    assert "Traceback" not in output and fragment in output


def test_usage_error_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "swinfuse", "fsue"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "No such command 'fsue'" in out.stderr and "Traceback" not in out.stderr


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "summarize_model", interrupted)
    code, captured = run_main(monkeypatch, capsys, ["summary"])
    assert code == 130 and "Traceback" not in captured.err


@pytest.mark.parametrize("command", [["fuse", "a.png", "b.png"], ["batch", "."], ["profile"]])
def test_negative_threads_are_a_usage_error(command, monkeypatch, capsys):
    code, captured = run_main(monkeypatch, capsys, [*command, "--threads", "-3"])
    assert code == 2 and "--threads" in captured.err and "Traceback" not in captured.err


# ---- prompts: a long one shown short, bytes that are not UTF-8 refused ---------------------------------------


def test_prompt_label_cuts_a_long_prompt():
    from swinfuse.cli.render import prompt_label

    assert prompt_label("low light") == "'low light'"
    assert prompt_label("x" * 61) == f"{'x' * 60!r}… (61 characters)"


@pytest.mark.parametrize("command", ["fuse", "batch", "profile", "summary"])
def test_a_prompt_that_is_not_utf8_is_a_usage_error(command, tmp_path, monkeypatch, capsys):
    from swinfuse.cli import main

    ir, vis = asset_pair()
    args = {"fuse": ["fuse", str(ir), str(vis), "-o", str(tmp_path / "o.png")],
            "batch": ["batch", str(tmp_path), "-o", str(tmp_path / "out")]}.get(command, [command])
    # bytes that are not UTF-8 reach sys.argv as lone surrogates (surrogateescape): b"dark \xff" -> "dark \udcff"
    monkeypatch.setattr("sys.argv", ["swinfuse", *args, "--prompt", b"dark \xff night".decode("utf-8", "surrogateescape")])
    with pytest.raises(SystemExit) as info:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2
    assert "the prompt is not valid UTF-8 (byte 0xff at position 5)" in err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "out").exists()


def test_the_command_tunes_the_process_before_torch_loads():
    # THP_MEM_ALLOC_ENABLE only takes effect if set before torch is imported (devices.tune_process).
    code = ("import os, sys; sys.argv = ['swinfuse', '--version']\n"
            "from swinfuse.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.splitlines()[-1] == "1 False", out.stdout + out.stderr


def test_the_command_imports_torch_with_the_collector_paused_and_frozen_a_library_caller_as_it_was():
    # A first image in two seconds (issue 21): importing torch makes ~190k objects that every full collection
    # (three during the import, the interpreter's at exit) traversed; the command's process freezes them.
    code = ("import gc, sys\n"
            "from swinfuse import devices\n"
            "full = []\n"
            "gc.callbacks.append(lambda phase, info: full.append(1) if phase == 'stop' and info['generation'] == 2 else None)\n"
            "if sys.argv[1] == 'command':\n    devices.tune_process()\n"
            "devices.resolve_device('cpu')\n"
            "print(len(full), gc.get_freeze_count() > 50_000, gc.isenabled())")
    runs = {who: subprocess.run([sys.executable, "-c", code, who], capture_output=True, text=True, timeout=120)
            for who in ("command", "library")}
    assert runs["command"].stdout.split() == ["0", "True", "True"], runs["command"].stderr
    assert runs["library"].stdout.split()[1:] == ["False", "True"], runs["library"].stderr


_TEARDOWN_PROBE = ("import atexit, os, sys\n"
                   "class Late:\n"
                   "    def __del__(self, write=os.write):\n"
                   "        write(1, b'teardown\\n')\n"
                   "late = Late()\n"
                   "atexit.register(lambda: print('exit handler', flush=True))\n"
                   "sys.argv = ['swinfuse', *sys.argv[1:]]\n"
                   "from swinfuse.cli import run\n"
                   "run()\n")


@pytest.mark.parametrize("args,code,out", [
    (["--version"], 0, ["swinfuse " + swinfuse.__version__, "exit handler"]),
    (["fsue"], 2, ["exit handler"]),  # a usage error
    (["batch", "/nonexistent/folder", "-o", "/nonexistent/out"], 1, ["exit handler"]),  # a library error
    (["train", "--help"], 0, None),  # train: Python's own exit, teardown included
])
def test_the_console_script_exits_with_the_commands_code_after_the_exit_handlers_without_the_teardown(args, code, out):
    # Python's teardown with torch loaded took 0.2-0.6 s after a command was done (issue 21).
    done = subprocess.run([sys.executable, "-c", _TEARDOWN_PROBE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    lines = done.stdout.splitlines()
    if out is None:
        assert lines[-2:] == ["exit handler", "teardown"]
    else:
        assert lines == out and "Traceback" not in done.stderr


def test_help_and_version_do_not_import_torch():
    code = ("import sys; sys.argv = ['swinfuse', '--help']\n"
            "from swinfuse.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "TORCH False" in out.stdout, out.stdout + out.stderr


def test_console_script_runs_profile_json():
    out = subprocess.run([sys.executable, "-m", "swinfuse", "profile", "--preset", "smoke", "--size", "67", "--json",
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


@pytest.mark.parametrize("args,fragment", [
    (["fuse", "a.png", "b.png", "--precision", "fp64"], "'fp64' is not one of fp32, bf16, fp16"),
    (["profile", "--precision", "fp64"], "'fp64' is not one of fp32, bf16, fp16"),
    (["fuse", "a.png", "b.png", "--device", "tpu"], "'tpu' is not one of auto, cpu, cuda, cuda:N"),
    (["train", "--data", "d", "--device", "tpu"], "'tpu' is not one of auto, cpu, cuda, cuda:N"),
    (["fuse", "a.png", "b.png", "--bit-depth", "12"], "12 is not 8 or 16"),
    (["batch", "d", "--shard", "x"], "shard 'x' is not of the form i/n"),
    (["batch", "d", "--shard", "3/2"], "out of range"),
    (["batch"], "give the folder of pairs"),
    (["train"], "give at least one folder of pairs to train on"),
    (["train", "--data", "d", "--steps", "0"], "--steps"),
    (["train", "--data", "d", "--batch-size", "0"], "--batch-size"),
    (["train", "--data", "d", "--lr", "-1"], "-1.0 is not a positive number"),
    (["train", "--data", "d", "--clean-share", "-0.5"], "--clean-share"),
])
def test_values_a_parser_can_check_are_usage_errors_before_anything_loads(args, fragment, monkeypatch, capsys):
    def loaded(*a, **k):
        raise AssertionError("a usage error reached the library")

    for name in ("fuse_pair", "fuse_batch", "profile_model", "train", "train_args"):
        monkeypatch.setattr(api, name, loaded)
    code, captured = run_main(monkeypatch, capsys, args)
    assert code == 2, captured.err
    assert fragment in " ".join(captured.err.replace("│", " ").split()), captured.err
    assert "Traceback" not in captured.err


def test_a_missing_swinfuse_weights_file_names_the_variable(monkeypatch, tmp_path):
    from swinfuse.errors import CheckpointError

    monkeypatch.setenv("SWINFUSE_WEIGHTS", str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match=r"^SWINFUSE_WEIGHTS names .*nope, which does not exist"):
        api.load_model(weights=None, device="cpu", require_weights=True)


def test_bf16_on_a_cpu_without_bf16_warns(monkeypatch):
    import torch

    from swinfuse import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="bf16 on a CPU without bf16 instructions"):
        devices.resolve_dtype("bf16", torch.device("cpu"))
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert devices.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_prompts_lists_what_the_checkpoint_was_trained_for_from_its_metadata(tiny_model, tmp_path, capsys,
                                                                             monkeypatch):
    from swinfuse.model.checkpoint import save_checkpoint

    own = save_checkpoint(tiny_model, tmp_path / "own.safetensors", {"degradations": ["vis_haze", "none"]})
    code, captured = run_main(monkeypatch, capsys, ["prompts", "--weights", own, "--json"])
    report = json.loads(captured.out)
    assert code in (0, None) and [k["kind"] for k in report["kinds"]] == ["vis_haze"]
    assert report["kinds"][0]["examples"][0] == "the visible image is hazy"
    assert report["neutral"] == "fuse the infrared and visible images" and "Any wording works" in report["note"]
    shipped = api.prompts()
    assert {k["kind"] for k in shipped["kinds"]} >= {"vis_low_light", "ir_stripe_noise"}
    bare = save_checkpoint(tiny_model, tmp_path / "bare.safetensors", {})
    code, captured = run_main(monkeypatch, capsys, ["prompts", "--weights", bare])
    assert "lists no degradations" in captured.out


@pytest.mark.parametrize("command", ["fuse", "batch", "profile", "summary", "train", "evaluate", "prompts"])
def test_help_reads_as_prose_with_plain_types(command):
    """Docstrings are not hard-wrapped into --help (the terminal wraps them), and the types read PATH, TEXT,
    INTEGER, nothing on a flag: not <bool>, <list[str]>, {ir} (issue 21)."""
    import inspect
    import re

    from typer.testing import CliRunner

    from swinfuse.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    assert not re.search(r"<(bool|list\[|str>|int>|path>|int range>)", text), text
    assert not re.search(r"\{[a-z_]+\}", text.splitlines()[1] if len(text.splitlines()) > 1 else "")
    info = next(i for i in app.registered_commands if (i.name or i.callback.__name__) == command)
    first = " ".join(inspect.getdoc(info.callback).split("\n\n")[0].split())
    flat = " ".join(line.strip(" │") for line in text.splitlines())
    assert first[:150] in " ".join(flat.split())  # one paragraph, however the terminal wraps it
    lines = [line.rstrip() for line in text.splitlines()]
    doc_line = next(line for line in lines if first[:30] in line)
    assert len(doc_line) > 110 or first[:len(doc_line.strip())] == first  # not cut at the docstring's line end
