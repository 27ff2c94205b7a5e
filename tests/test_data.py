"""Image reading and writing, pair discovery, shards and streaming (swinfuse.data)."""

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from swinfuse.data import io
from swinfuse.data.io import (compose_output, output_bit_depth, quantize, read_infrared, read_visible,
                                  write_image_atomic)
from swinfuse.data.pairs import find_pairs, parse_shard, shard
from swinfuse.data.stream import AsyncWriter, prefetch
from swinfuse.errors import InputError, OutputError

ASSETS = Path(__file__).parent / "assets"
rng = np.random.default_rng(0)


def image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def color8(h=20, w=24):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- reading ---------------------------------------------------------------------------------------

def test_infrared_gray_8bit(tmp_path):
    raw = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    ir = read_infrared(image(tmp_path / "a.png", raw))
    assert ir.shape == (17, 23) and ir.dtype == np.float32
    np.testing.assert_allclose(ir, raw / 255, atol=1e-6)


def test_infrared_three_channel_gray_is_reduced(tmp_path):
    raw = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    ir = read_infrared(image(tmp_path / "a.png", np.dstack([raw] * 3)))
    np.testing.assert_allclose(ir, raw / 255, atol=1e-6)


def test_infrared_true_colour_becomes_luminance(tmp_path):
    raw = color8()
    ir = read_infrared(image(tmp_path / "a.png", raw))
    np.testing.assert_allclose(ir, cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY) / 255, atol=1 / 255)


def test_infrared_16bit_and_alpha(tmp_path):
    raw = rng.integers(0, 65536, (16, 20), dtype=np.uint16)
    np.testing.assert_allclose(read_infrared(image(tmp_path / "a.png", raw)), raw / 65535, atol=1e-6)
    bgra = np.dstack([raw, raw, raw, np.zeros_like(raw)])
    np.testing.assert_allclose(read_infrared(image(tmp_path / "b.png", bgra)), raw / 65535, atol=1e-6)


def test_visible_colour_is_bt601_ycrcb(tmp_path):
    raw = color8()
    vis = read_visible(image(tmp_path / "a.png", raw))
    reference = cv2.cvtColor(raw, cv2.COLOR_BGR2YCrCb) / 255
    assert vis.is_color and vis.bit_depth == 8 and not vis.had_alpha
    for got, channel in zip((vis.y, vis.cr, vis.cb), range(3)):
        np.testing.assert_allclose(got, reference[:, :, channel], atol=1.5 / 255)  # uint8 rounds twice


@pytest.mark.parametrize("channels", [1, 3])
def test_visible_gray_has_no_chroma(tmp_path, channels):
    raw = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    vis = read_visible(image(tmp_path / "a.png", np.dstack([raw] * channels) if channels == 3 else raw))
    assert not vis.is_color and vis.cr is None and vis.cb is None
    np.testing.assert_allclose(vis.y, raw / 255, atol=1e-6)


def test_visible_16bit_and_alpha_recorded(tmp_path):
    raw = rng.integers(0, 65536, (16, 20, 4), dtype=np.uint16)
    vis = read_visible(image(tmp_path / "a.png", raw))
    assert vis.bit_depth == 16 and vis.had_alpha and vis.is_color
    np.testing.assert_allclose(vis.y, raw[:, :, :3] / 65535 @ [0.114, 0.587, 0.299], atol=1e-5)


def test_real_assets_read_as_aligned_pairs():
    found = find_pairs(ASSETS)
    assert len(found.pairs) == 3 and not found.unmatched_ir and not found.unmatched_vis
    for pair in found.pairs:
        ir, vis = read_infrared(pair.ir), read_visible(pair.vis)
        assert ir.shape == vis.y.shape == (40, 60) and vis.is_color


# --- bad input: one line naming the file and the problem --------------------------------------------

def _missing(path):
    return path


def _directory(path):
    path.mkdir()
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _text(path):
    path.write_text("not an image")
    return path


def _truncated(ext):
    def make(path):
        data = cv2.imencode(ext, color8(32, 40))[1].tobytes()
        path.write_bytes(data[: len(data) // 2])
        return path
    return make


def _float_tiff(path):
    return image(path.with_suffix(".tif"), np.zeros((4, 4), np.float32))


NOT_AN_IMAGE = "not a readable image, or truncated (expected png, jpg, jpeg, bmp, tif, tiff)"


@pytest.mark.parametrize("make, problem", [
    (_missing, "no such file"),
    (_directory, "is a directory, expected an image file"),
    (_empty, "file is empty (0 bytes)"),
    (_text, NOT_AN_IMAGE),
    (_truncated(".png"), "file is truncated (PNG data ends early)"),
    (_truncated(".jpg"), "file is truncated (JPEG data ends early)"),
    (_float_tiff, "unsupported sample type float32 (expected 8- or 16-bit)"),
])
@pytest.mark.parametrize("reader, role", [(read_infrared, "infrared"), (read_visible, "visible")])
def test_bad_input_messages(tmp_path, make, problem, reader, role):
    path = make(tmp_path / "x.png")
    with pytest.raises(InputError) as info:
        reader(path)
    assert str(info.value) == f"{role} image {path}: {problem}"


def _corrupt_png(path):
    data = bytearray(cv2.imencode(".png", color8(32, 40))[1].tobytes())
    start = data.find(b"IDAT") + 4
    data[start + 2:start + 40] = b"\x00" * 38  # compressed data destroyed, chunk layout and IEND intact
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make, problem", [
    (_truncated(".png"), "file is truncated (PNG data ends early)"),
    (_corrupt_png, NOT_AN_IMAGE),
])
def test_a_bad_png_prints_no_decoder_line(tmp_path, capfd, make, problem):
    # libpng writes `libpng error: ...` to fd 2 and OpenCV logs `[ WARN...]` lines; our error is the only line
    path = make(tmp_path / "x.png")
    with pytest.raises(InputError) as info:
        read_visible(path)
    assert str(info.value) == f"visible image {path}: {problem}"
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_the_cli_says_one_line_for_a_truncated_png(tmp_path, capfd, monkeypatch):
    from swinfuse.cli import main

    ir = image(tmp_path / "ir.png", np.zeros((32, 40), np.uint8))
    data = image(tmp_path / "full.png", color8(32, 40)).read_bytes()
    vis = tmp_path / "vis.png"
    vis.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr("sys.argv", ["swinfuse", "fuse", str(ir), str(vis), "-o", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    assert capfd.readouterr().err == f"Error: visible image {vis}: file is truncated (PNG data ends early)\n"


def test_a_good_decode_keeps_what_others_write_to_stderr(tmp_path, capfd):
    data = np.frombuffer(cv2.imencode(".png", color8())[1].tobytes(), np.uint8)
    with io.quiet_decoder() as failed:
        os.write(2, b"another thread's line\n")  # written while fd 2 is captured
        failed[0] = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is None
    assert capfd.readouterr().err == "another thread's line\n"


def test_unreadable_permissions_message(tmp_path, monkeypatch):
    # The suite may run as root, which chmod cannot lock out, so the permission check is simulated.
    path = image(tmp_path / "a.png", color8())
    monkeypatch.setattr(io.os, "access", lambda *a, **k: False)
    with pytest.raises(InputError, match=r"^visible image .*a\.png: permission denied$"):
        read_visible(path)


# --- composing and writing ------------------------------------------------------------------------

def test_colour_round_trip_keeps_chroma(tmp_path):
    raw = color8(17, 23)
    vis = read_visible(image(tmp_path / "a.png", raw))
    out = compose_output(vis.y, vis)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert np.abs(out.astype(int) - raw).max() <= 1


def test_16bit_round_trip_stays_16bit(tmp_path):
    raw = rng.integers(0, 65536, (16, 20, 3), dtype=np.uint16)
    vis = read_visible(image(tmp_path / "a.png", raw))
    out = compose_output(vis.y, vis)
    assert out.dtype == np.uint16 and np.abs(out.astype(int) - raw).max() <= 1
    assert compose_output(vis.y, vis, bit_depth=8).dtype == np.uint8


def test_gray_only_and_gray_visible_give_one_channel(tmp_path):
    vis = read_visible(image(tmp_path / "a.png", color8()))
    assert compose_output(vis.y, vis, gray_only=True).shape == vis.y.shape
    gray = read_visible(image(tmp_path / "b.png", rng.integers(0, 256, (16, 20), dtype=np.uint8)))
    assert compose_output(gray.y, gray).shape == (16, 20)


def test_values_are_clipped_not_stretched(tmp_path):
    gray = read_visible(image(tmp_path / "a.png", np.zeros((8, 8), np.uint8)))
    y = np.full((8, 8), 0.5, np.float32)
    y[0, 0], y[0, 1] = -3.0, 7.0
    out = compose_output(y, gray)
    assert out[0, 0] == 0 and out[0, 1] == 255 and (out[1:] == 128).all()


def test_upscaled_y_gets_resized_chroma(tmp_path):
    vis = read_visible(image(tmp_path / "a.png", color8(9, 11)))
    y = cv2.resize(vis.y, (22, 18), interpolation=cv2.INTER_CUBIC)
    assert compose_output(y, vis).shape == (18, 22, 3)


def test_quantize_rounds_once():
    assert quantize(np.array([0.0, 0.5, 1.0]), 8).tolist() == [0, 128, 255]
    assert quantize(np.array([1.0]), 16).tolist() == [65535]


def test_output_bit_depth_follows_the_format():
    assert output_bit_depth("a.png", None, 16) == 16
    assert output_bit_depth("a.tif", None, 16) == 16
    assert output_bit_depth("a.jpg", None, 16) == 8
    assert output_bit_depth("a.jpg", 8, 16) == 8
    with pytest.raises(OutputError, match=r"^a\.jpg: \.jpg cannot store 16-bit images; use \.png or \.tif$"):
        output_bit_depth("a.jpg", 16, 8)


def test_write_creates_folders_and_round_trips(tmp_path):
    raw = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    path = tmp_path / "new" / "deeper" / "out.png"
    write_image_atomic(path, raw)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), raw)
    assert os.listdir(path.parent) == ["out.png"]


def test_write_to_a_directory_is_an_error(tmp_path):
    with pytest.raises(OutputError) as info:
        write_image_atomic(tmp_path, color8())
    assert str(info.value) == f"{tmp_path}: is an existing directory, expected an output file path"


def test_write_to_unwritable_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(io.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError) as info:
        write_image_atomic(tmp_path / "a.png", color8())
    assert str(info.value) == f"{tmp_path / 'a.png'}: folder {tmp_path} is not writable"


def test_write_unknown_format_is_an_error(tmp_path):
    with pytest.raises(OutputError, match=r"unsupported output format '\.xyz' \(use \.png, \.jpg, \.bmp or \.tif\)$"):
        write_image_atomic(tmp_path / "a.xyz", color8())


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_no_temp_file_and_keeps_the_old_one(tmp_path, monkeypatch, failure):
    path = tmp_path / "a.png"
    old = color8()
    write_image_atomic(path, old)

    def broken_fsync(fd):
        raise failure
    monkeypatch.setattr(io.os, "fsync", broken_fsync)
    expected = OutputError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        write_image_atomic(path, color8())
    if expected is OutputError:
        assert str(info.value) == f"{path}: cannot write (No space left on device)"
    assert os.listdir(tmp_path) == ["a.png"]
    np.testing.assert_array_equal(cv2.imread(str(path)), old)


# --- pairing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ir_name, vis_name", [
    ("ir", "vis"), ("ir", "vi"), ("Infrared", "Visible"), ("IR", "VI_Y"), ("IR", "Vis"), ("INFRARED", "visible"),
])
def test_every_layout_pairs_by_stem(tmp_path, ir_name, vis_name):
    for stem in ("b", "a", "c"):
        image(tmp_path / ir_name / f"{stem}.png", np.zeros((4, 4), np.uint8))
    for stem in ("a", "b", "d"):
        image(tmp_path / vis_name / f"{stem}.jpg", np.zeros((4, 4, 3), np.uint8))
    found = find_pairs(tmp_path)
    assert [p.stem for p in found.pairs] == ["a", "b"]
    assert found.pairs[0].ir == tmp_path / ir_name / "a.png" and found.pairs[0].vis == tmp_path / vis_name / "a.jpg"
    assert found.unmatched_ir == [tmp_path / ir_name / "c.png"]
    assert found.unmatched_vis == [tmp_path / vis_name / "d.jpg"]


def test_extensions_hidden_files_and_duplicates(tmp_path):
    for name in ("a.PNG", "b.Tiff", "c.bmp", "d.jpeg", ".e.png"):
        image(tmp_path / "ir" / name, np.zeros((4, 4), np.uint8))
    (tmp_path / "ir" / "notes.txt").write_text("not an image, ignored")
    for name in ("a.png", "b.TIF", "c.BMP", "d.JPG", "d.png", ".e.png"):
        image(tmp_path / "vis" / name, np.zeros((4, 4), np.uint8))
    found = find_pairs(tmp_path)
    assert [p.stem for p in found.pairs] == ["a", "b", "c", "d"]
    assert found.pairs[3].vis.name == "d.JPG"  # the first in sorted order
    assert found.duplicates == [tmp_path / "vis" / "d.png"]
    assert not found.unmatched_ir and not found.unmatched_vis


def test_recursive_is_opt_in_and_mirrors_subfolders(tmp_path):
    for side in ("ir", "vis"):
        image(tmp_path / side / "top.png", np.zeros((4, 4), np.uint8))
        image(tmp_path / side / "night" / "x.png", np.zeros((4, 4), np.uint8))
    image(tmp_path / "ir" / "day" / "y.png", np.zeros((4, 4), np.uint8))
    assert [p.rel for p in find_pairs(tmp_path).pairs] == ["top"]
    found = find_pairs(tmp_path, recursive=True)
    assert [p.rel for p in found.pairs] == ["night/x", "top"]
    assert found.unmatched_ir == [tmp_path / "ir" / "day" / "y.png"]


def test_explicit_folders(tmp_path):
    image(tmp_path / "thermal" / "a.png", np.zeros((4, 4), np.uint8))
    image(tmp_path / "rgb" / "a.png", np.zeros((4, 4), np.uint8))
    found = find_pairs(ir_dir=tmp_path / "thermal", vis_dir=tmp_path / "rgb")
    assert [p.stem for p in found.pairs] == ["a"]
    with pytest.raises(InputError, match=r"^give both the infrared and the visible folder"):
        find_pairs(ir_dir=tmp_path / "thermal")


def test_folder_problems_are_one_line(tmp_path):
    with pytest.raises(InputError) as info:
        find_pairs(tmp_path)
    assert str(info.value) == (f"{tmp_path}: no infrared/visible folders found (looked for ir/+vis/, ir/+vi/, "
                               "Infrared/+Visible/, IR/+VI_Y/ (any case)); give the folders with --ir-dir and --vis-dir")
    with pytest.raises(InputError, match=r": no such folder$"):
        find_pairs(tmp_path / "missing")
    (tmp_path / "ir").mkdir()
    image(tmp_path / "vis" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError) as info:
        find_pairs(tmp_path)
    assert str(info.value) == (f"{tmp_path}: no image pairs found (looked for png/jpg/jpeg/bmp/tif/tiff files "
                               "with the same name in ir/ and vis/)")


# --- shards ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 5, 10, 17])
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover(count, n):
    items = list(range(count))
    slices = [shard(items, i, n) for i in range(1, n + 1)]
    assert sum(slices, []) == items  # in order, each item exactly once
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 1/1 ") == (1, 1)
    for text in ("0/4", "5/4", "1/0", "-1/2"):
        with pytest.raises(InputError) as info:
            parse_shard(text)
        assert str(info.value) == f"shard {text!r} is out of range: need 1 <= i <= n (i is 1-based)"
    for text in ("2", "a/b", "1/2/3", ""):
        with pytest.raises(InputError, match=r"is not of the form i/n \(e\.g\. 2/4\)$"):
            parse_shard(text)


# --- streaming ------------------------------------------------------------------------------------

def test_prefetch_keeps_order_and_turns_errors_into_records():
    def load(x):
        if x == 2:
            raise InputError("two is bad\nsecond line")
        return x * 10
    records = list(prefetch(range(5), load))
    assert [r.item for r in records] == [0, 1, 2, 3, 4]
    assert [r.value for r in records] == [0, 10, None, 30, 40]
    assert records[2].error == "two is bad"
    assert all(r.load_ms >= 0 for r in records)


def test_prefetch_reads_ahead_a_bounded_amount_and_stops_on_break():
    loaded = []
    stream = prefetch(range(100), lambda x: loaded.append(x) or x, depth=2)
    assert next(stream).value == 0
    time.sleep(0.3)
    assert len(loaded) <= 4  # one consumed + two queued + one waiting to be put
    stream.close()
    time.sleep(0.3)
    assert len(loaded) <= 4
    assert not any(t.name == "swinfuse-prefetch" for t in threading.enumerate())


def test_async_writer_writes_and_reports_failures(tmp_path):
    with AsyncWriter(depth=1) as writer:
        writer.submit(tmp_path / "a.png", color8(), tag="a")
        writer.submit(tmp_path, color8(), tag="dir")
        results = writer.drain() + writer.close()
    by_tag = {r.tag: r for r in results}
    assert by_tag["a"].error is None and (tmp_path / "a.png").is_file()
    assert by_tag["dir"].error == f"{tmp_path}: is an existing directory, expected an output file path"


# --- alpha and EXIF orientation: the same rule for both images ---------------------------------------------

def test_infrared_alpha_is_dropped_with_a_note(tmp_path):
    bgra = np.dstack([color8(8, 12), np.full((8, 12), 128, np.uint8)])
    path = image(tmp_path / "ir.png", bgra)
    notes: list[str] = []
    ir = read_infrared(path, notes)
    assert ir.shape == (8, 12) and notes == [f"alpha channel of {path} dropped"]
    assert read_visible(path).had_alpha  # the visible's alpha gives the same note (data.loading)
    notes = []
    read_infrared(image(tmp_path / "plain.png", color8(8, 12)), notes)
    assert notes == []


def test_exif_orientation_is_ignored_for_both_images(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    stored = color8(16, 24)  # H 16, W 24 as stored; orientation 6 would show it rotated, 24x16
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored[:, :, ::-1]).save(path, exif=exif, quality=95)
    assert cv2.imread(str(path)).shape[:2] == (24, 16)  # OpenCV's default honours the tag: the trap avoided
    assert read_infrared(path).shape == (16, 24)
    assert read_visible(path).y.shape == (16, 24)
