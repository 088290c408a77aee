"""Hostile and broken input (issue 14): one or more cases per class, through the CLI.

Each case asserts the exit code, exactly one `Error:` line on stderr (none on success), that no
file was written or deleted outside what the user named, and, for the memory bombs, a peak RSS
under 2 GB. The memory cases run in a subprocess: an RLIMIT_AS of 2 GiB cannot be used as the
measure, because importing torch alone maps 3.5 GB of address space, so each child reports its own
ru_maxrss and runs under an 8 GiB RLIMIT_AS only as a safety net for this machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DIGIT = ROOT / "samples" / "digits" / "digit_7_pen-strokes.png"
SCENE = ROOT / "samples" / "scene.png"
BUNDLED_DIGITS = ROOT / "weights" / "deepconvnet.mnist.safetensors"
MAX_RSS_MB = 2000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def errors(stderr: str) -> list[str]:
    """The error lines: ours (`Error: …`), or a usage error's box where click prints with Rich."""
    return [line for line in stderr.splitlines() if line.startswith("Error:") or line.startswith("╭─ Error")]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and mtime: what a command may not change unasked."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def assert_failed_once(result, code: int, *words: str) -> str:
    """Exit `code`, one Error: line holding each of `words`, no traceback."""
    lines = errors(result.stderr)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # a safety net, not the measure
    from typer.testing import CliRunner
    from dlcli.cli.app import app
    results = []
    for args in json.loads(sys.argv[1]):
        r = CliRunner().invoke(app, args)
        results.append({"args": args, "code": r.exit_code, "stderr": r.stderr,
                        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
    print(json.dumps(results))
""")


def run_child(commands: list[list[str]], cwd: Path, dl_home: Path, timeout: float = 300) -> list[dict]:
    """Each `dl ARGS` of `commands` in turn, in one fresh process (one torch import): per command
    its exit code, stderr and the process's peak RSS so far (MB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DL_HOME": str(dl_home), "OMP_NUM_THREADS": "1",
           "TORCH_HOME": str(dl_home / "torch")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([[str(a) for a in c] for c in commands])],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def children_failed_once(cases: list[tuple[list[str], int, tuple[str, ...]]], cwd: Path, dl_home: Path) -> None:
    """Every case fails with its exit code and one Error: line holding its words, writes nothing,
    and the process never grows past MAX_RSS_MB."""
    before = tree(cwd)
    results = run_child([args for args, _, _ in cases], cwd, dl_home)
    for (args, code, words), r in zip(cases, results):
        lines = errors(r["stderr"])
        assert r["code"] == code and len(lines) == 1, r
        assert "internal error" not in r["stderr"] and "Traceback" not in r["stderr"], r
        for w in words:
            assert w in lines[0], (args, lines[0])
        assert r["rss_mb"] < MAX_RSS_MB, f"peak RSS {r['rss_mb']} MB after {args}"
    assert tree(cwd) == before  # a refused command writes nothing


def digits_meta() -> dict:
    from dlcli.weights.store import read_state_dict

    state, meta = read_state_dict(BUNDLED_DIGITS)
    return meta


def write_weights(path: Path, state: dict, meta: dict) -> Path:
    from dlcli.weights.store import save_weights_file

    save_weights_file(path, state, meta)
    return path


# --- 1. paths from the import index and the manifest stay inside their folders ----------------


def _import_digits(name: str) -> None:
    result = cli("weights", "import", name, BUNDLED_DIGITS, "-q")
    assert result.exit_code == 0, result.stderr


def test_index_file_outside_the_cache_is_refused_and_never_deleted(dl_home: Path, tmp_path: Path) -> None:
    _import_digits("deepconvnet.mine")
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    index = dl_home / "imported" / "index.json"
    data = json.loads(index.read_text())
    data["deepconvnet.mine"]["file"] = str(victim)
    index.write_text(json.dumps(data))

    loaded = cli("classify", DIGIT, "--model", "deepconvnet.mine")
    assert_failed_once(loaded, 3, "deepconvnet.mine", "corrupt")
    removed = cli("weights", "rm", "deepconvnet.mine")
    assert removed.exit_code == 0, removed.stderr
    assert victim.read_text() == "not yours"  # the record went, the file outside stayed
    assert str(victim) not in removed.stdout
    assert "deepconvnet.mine" not in json.loads(index.read_text())


def test_index_record_cannot_shadow_a_builtin_name(dl_home: Path) -> None:
    _import_digits("deepconvnet.other")
    index = dl_home / "imported" / "index.json"
    data = json.loads(index.read_text())
    data["deepconvnet.mnist"] = {**data["deepconvnet.other"], "name": "deepconvnet.mnist", "labels": list("abcdefghij")}
    index.write_text(json.dumps(data))
    result = cli("classify", DIGIT, "--model", "deepconvnet.mnist", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    top = json.loads(result.stdout)["images"][0]["predictions"][0]["label"]
    assert top in "0123456789"  # the built-in entry's labels, not the record's letters
    doctor = cli("doctor", "--no-verify", "--json")
    assert doctor.exit_code == 3 and any("built-in" in p for p in json.loads(doctor.stdout)["problems"])
    # rm drops the shadowing record but keeps the file the other entry still uses
    assert cli("weights", "rm", "deepconvnet.mnist").exit_code == 0
    assert (dl_home / "imported" / "deepconvnet.other.safetensors").is_file()
    assert cli("weights", "verify", "deepconvnet.other").exit_code == 0


def test_manifest_and_names_cannot_lead_outside(tmp_path: Path) -> None:
    from dlcli.errors import WeightsError
    from dlcli.weights import store
    from dlcli.weights.spec import BundledSource, WeightsSpec

    spec = WeightsSpec("deepconvnet.x", "deepconvnet", "classify", BundledSource("../../etc/passwd", "0" * 64))
    with pytest.raises(WeightsError, match="corrupt"):
        store.local_path(spec)
    result = cli("weights", "import", "deepconvnet.a/../../../x", BUNDLED_DIGITS)
    assert_failed_once(result, 2, "ARCH.TAG")


# --- 2. memory bombs by dimension: bounded before allocation, RSS < 2 GB -----------------------


@pytest.fixture()
def bombs(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    Image.new("RGB", (1, 60000), (200, 20, 20)).save(work / "tall.png")  # 320 bytes
    Image.new("RGB", (8000, 8000), (200, 20, 20)).save(work / "big.png")  # 200 KB
    Image.new("RGB", (64, 64), (20, 200, 20)).save(work / "small.png")
    os.mkfifo(work / "fifo.png")
    return work


def test_memory_bombs_are_refused_with_bounded_memory(bombs: Path, dl_home: Path) -> None:
    from dlcli.models.fcn_small import FCNSmall

    # A weights file whose metadata asks for width=100000 over tensors of width 16.
    meta = {"name": "fcn_small.wide", "arch": "fcn_small", "task": "segment", "preprocess": "tensor01",
            "config": {"num_classes": 5, "width": 100000}, "labels": ["a", "b", "c", "d", "e"]}
    write_weights(bombs / "wide.safetensors", FCNSmall(num_classes=5, width=16).state_dict(), meta)
    t0 = time.monotonic()
    children_failed_once([
        (["stylize", "small.png", "small.png", "--size", "100000", "--steps", "2"], 2, ("--size", "2048")),
        (["classify", "tall.png", "--model", "deepconvnet.mnist"], 2, ("tall.png", "50 times")),
        (["detect", "tall.png", "--offline"], 2, ("tall.png",)),
        (["stylize", "tall.png", "small.png", "--steps", "1"], 2, ("tall.png",)),
        (["segment", "big.png", "--offline"], 2, ("big.png", "50,000,000")),
        (["classify", "/dev/zero", "--model", "deepconvnet.mnist"], 2, ("regular file",)),
        (["classify", "fifo.png", "--model", "deepconvnet.mnist"], 2, ("fifo.png", "regular file")),  # no hang
        (["segment", "small.png", "--weights-file", "wide.safetensors"], 3, ("does not fit", "width")),
    ], bombs, dl_home)
    assert time.monotonic() - t0 < 120


@pytest.mark.slow
def test_large_but_allowed_image_stays_under_2gb(tmp_path: Path, dl_home: Path) -> None:
    """A 36-megapixel photo through segment (full-size mask, colour mask and overlay) and detect:
    bounded by the models' working sizes and banded upsampling."""
    Image.new("RGB", (6000, 6000), (30, 90, 200)).save(tmp_path / "photo.png")
    results = run_child([["segment", "photo.png", "--offline", "--out", "masks", "-q"],
                         ["detect", "photo.png", "--offline", "--out", "boxes", "-q"]], tmp_path, dl_home)
    for r in results:
        assert r["code"] == 0 and r["rss_mb"] < MAX_RSS_MB, r
    assert Image.open(tmp_path / "masks" / "photo_mask.png").size == (6000, 6000)


# --- 3. README examples whose digit preset met a blank tensor ------------------------------------


def test_summary_and_profile_of_the_digit_net() -> None:
    summary = cli("summary", "deepconvnet", "--channels", "1", "--input-size", "28", "--json")
    assert summary.exit_code == 0, summary.stderr
    assert json.loads(summary.stdout)["input_shape"] == [1, 28, 28]
    profile = cli("profile", "deepconvnet", "--repeats", "1", "--warmup", "0", "--json")
    assert profile.exit_code == 0, profile.stderr
    huge = cli("profile", "resnet18", "--batch-size", "100000")
    assert_failed_once(huge, 2, "GiB")


def ones_and_sevens(folder: Path, per_class: int = 3) -> Path:
    """An ImageFolder of drawn 1s and 7s (black on white, 40 px): a tiny fine-tuning set."""
    from PIL import ImageDraw

    for cls in ("one", "seven"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im = Image.new("L", (40, 40), 255)
            d = ImageDraw.Draw(im)
            if cls == "one":
                d.line((20, 5, 20 + i, 35), fill=0, width=4)
            else:
                d.line((8, 6, 32, 6), fill=0, width=4)
                d.line((32, 6, 14 + i, 36), fill=0, width=4)
            im.save(folder / cls / f"{i}.png")
    return folder


def test_fine_tune_from_the_digit_net(tmp_path: Path) -> None:
    ones_and_sevens(tmp_path / "data")
    result = cli("classify", "train", tmp_path / "data", "--from", "deepconvnet.mnist", "--epochs", "1",
                 "--no-augment", "--batch-size", "2", "--out", tmp_path / "run", "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run" / "best.safetensors").is_file()


# --- 4. one offline switch -------------------------------------------------------------------------


def test_dl_offline_stops_url_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    result = cli("classify", "https://example.com/x.jpg", "--model", "deepconvnet.mnist", env={"DL_OFFLINE": "1"})
    assert_failed_once(result, 2, "offline")


# --- 5. outputs of one run never collide; refusals come first -----------------------------------


def test_same_stem_inputs_get_distinct_outputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.open(SCENE).convert("RGB").save(tmp_path / "a" / "dog.jpg")
    Image.open(SCENE).convert("RGB").save(tmp_path / "b" / "dog.png")
    out = tmp_path / "D"
    first = cli("detect", tmp_path / "a" / "dog.jpg", tmp_path / "b" / "dog.png", "-o", out, "--offline", "-q")
    assert first.exit_code == 0 and errors(first.stderr) == [], first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["dog-2_det.png", "dog_det.png"]
    before = tree(tmp_path)
    again = cli("detect", tmp_path / "b" / "dog.png", tmp_path / "a" / "dog.jpg", "-o", out, "--offline", "-q")
    assert_failed_once(again, 2, "already exists", "--force")
    assert tree(tmp_path) == before  # refused before anything was written


# --- 6. concurrent imports of one name --------------------------------------------------------------


def test_concurrent_imports_of_one_name(tmp_path: Path, dl_home: Path) -> None:
    from dlcli.weights.store import sha256_file

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DL_HOME": str(dl_home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dlcli", "weights", "import", "deepconvnet.same", str(BUNDLED_DIGITS), "-q"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 3)
    assert len(errors(loser)) == 1 and "already imported" in loser
    record = json.loads((dl_home / "imported" / "index.json").read_text())["deepconvnet.same"]
    assert record["sha256"] == sha256_file(dl_home / "imported" / "deepconvnet.same.safetensors")


# --- 7. bad output paths are the user's, exit 2 naming the path; stale .part files go -----------


def test_bad_output_paths(tmp_path: Path) -> None:
    before = tree(tmp_path)
    bad = cli("classify", DIGIT, "--model", "deepconvnet.mnist", "--show-preprocessed", "/etc/passwd/x.png")
    assert_failed_once(bad, 2, "/etc/passwd")
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"x")
    as_dir = cli("detect", SCENE, "--offline", "-o", existing)
    assert_failed_once(as_dir, 2, str(existing))
    seg = cli("segment", SCENE, "--offline", "-o", existing)
    assert_failed_once(seg, 2, str(existing))
    if Path("/proc/self").is_dir():  # a folder nobody may write, root included
        ro = cli("generate", "--n", "1", "-o", "/proc/dl-test/grid.png")
        assert_failed_once(ro, 2, "/proc")
    assert tree(tmp_path) == {**before, "taken.png": tree(tmp_path)["taken.png"]}


def test_stale_part_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".grid.999999999-abc123.part.png"  # no such process
    stale.write_bytes(b"half")
    foreign = tmp_path / ".grid.tmp.png"  # not our naming: left alone
    foreign.write_bytes(b"theirs")
    result = cli("generate", "--n", "4", "-o", tmp_path / "grid.png", "-q")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and foreign.exists() and (tmp_path / "grid.png").is_file()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


# --- 8. malformed files are weights or input errors; doctor still reports ------------------------


def test_malformed_weights_files(tmp_path: Path) -> None:
    zero = tmp_path / "zero.pth"
    zero.write_bytes(b"")
    assert_failed_once(cli("classify", DIGIT, "--weights-file", zero), 3, "empty")
    state = {"w": torch.zeros(2)}
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "badjson.safetensors"), metadata={"dlcli": "{not json"})
    assert_failed_once(cli("classify", DIGIT, "--weights-file", tmp_path / "badjson.safetensors"), 3, "JSON")
    save_file(state, str(tmp_path / "types.safetensors"),
              metadata={"dlcli": json.dumps({"arch": "deepconvnet", "config": [1, 2], "labels": 5})})
    assert_failed_once(cli("classify", DIGIT, "--weights-file", tmp_path / "types.safetensors"), 3, "config")
    save_file(state, str(tmp_path / "list.safetensors"), metadata={"dlcli": "[1, 2]"})
    assert_failed_once(cli("classify", DIGIT, "--weights-file", tmp_path / "list.safetensors"), 3, "not an object")
    assert_failed_once(cli("classify", DIGIT, "--weights-file", tmp_path), 2, "folder")


def test_index_of_the_wrong_shape_and_doctor(dl_home: Path) -> None:
    (dl_home / "imported").mkdir(parents=True)
    (dl_home / "imported" / "index.json").write_text(json.dumps({"deepconvnet.x": {"name": "deepconvnet.x"},
                                                                 "deepconvnet.y": [1, 2]}))
    (dl_home / "hashes.json").write_text("[]")
    ok = cli("classify", DIGIT, "--model", "deepconvnet.mnist", "-q")  # other entries still work
    assert ok.exit_code == 0, ok.stderr
    assert_failed_once(cli("classify", DIGIT, "--model", "deepconvnet.x"), 3, "corrupt", "file")
    doctor = cli("doctor", "--no-verify", "--json")
    assert doctor.exit_code == 3 and len(errors(doctor.stderr)) == 1, doctor.stderr
    problems = json.loads(doctor.stdout)["problems"]
    assert len(problems) == 3 and any("hashes.json" in p for p in problems)
    (dl_home / "imported" / "index.json").write_text("{broken")
    doctor = cli("doctor", "--no-verify")
    # The table wraps the long path where the terminal width says: read the cells' text as one line.
    table_text = " ".join(re.sub(r"[│┃]", " ", doctor.stdout).split())
    assert doctor.exit_code == 3 and "not valid JSON" in table_text + doctor.stderr
    assert_failed_once(cli("weights", "import", "deepconvnet.z", BUNDLED_DIGITS), 3, "index.json")


def test_binary_labels_file(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(bytes(range(256)) * 4)
    result = cli("weights", "import", "deepconvnet.lab", BUNDLED_DIGITS, "--labels", labels)
    assert_failed_once(result, 2, "--labels")


# --- 9. stylize at its minimum size, tiny content, tiny style, extreme aspect ---------------------


@pytest.fixture()
def tiny_vgg(tmp_path: Path) -> Path:
    from dlcli.models.vgg_features import VGGFeatures

    torch.manual_seed(0)
    widths = [4, 8, 8, 16, 16]
    return write_weights(tmp_path / "vgg.safetensors", VGGFeatures(widths=tuple(widths)).state_dict(), {
        "name": "vgg19_features.tiny", "arch": "vgg19_features", "task": "stylize", "preprocess": "imagenet",
        "config": {"widths": widths, "pool": "max"}})


@pytest.mark.parametrize("content_size,args,expect", [
    ((40, 30), ["--size", "16"], (16, 12)),           # the documented minimum, short side under 16
    ((40, 30), ["--size", "15"], None),               # below it: refused
    ((1, 1), ["--size", "0"], (1, 1)),                # tiny content at its own size
    ((40, 40), ["--size", "32", "--style-scale", "0.01"], (32, 32)),
    ((400, 8), ["--size", "64"], (64, 1)),            # 50:1, the widest accepted
])
def test_stylize_boundaries(tiny_vgg: Path, tmp_path: Path, content_size, args, expect) -> None:
    Image.new("RGB", content_size, (120, 60, 200)).save(tmp_path / "content.png")
    Image.new("RGB", (300, 6), (10, 200, 90)).save(tmp_path / "style.png")  # a thin style image
    out = tmp_path / "out.png"
    result = cli("stylize", tmp_path / "content.png", tmp_path / "style.png", "--weights-file", tiny_vgg,
                 "--steps", "1", "-o", out, "-q", *args)
    if expect is None:
        assert_failed_once(result, 2, "--size")
        assert not out.exists()
    else:
        assert result.exit_code == 0, result.stderr
        assert Image.open(out).size == expect


# --- 10. labels must match the model's outputs ------------------------------------------------------


def test_label_count_must_match_the_outputs(tmp_path: Path) -> None:
    result = cli("weights", "import", "deepconvnet.inet", BUNDLED_DIGITS, "--labels", "imagenet")
    assert_failed_once(result, 2, "1000 labels", "10 outputs")
    from dlcli.weights.store import read_state_dict

    state, _ = read_state_dict(BUNDLED_DIGITS)
    five = write_weights(tmp_path / "five.safetensors", state, {**digits_meta(), "labels": list("abcde")})
    assert_failed_once(cli("classify", DIGIT, "--weights-file", five), 3, "5 labels")


# --- 11. one image the detector cannot take fails alone ---------------------------------------------


def test_detect_batch_survives_one_bad_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.tasks import detect as task

    real = task.Detector.prepare

    def picky(self, image):
        if image.size == (17, 23):
            raise RuntimeError("the model cannot take this one")
        return real(self, image)

    monkeypatch.setattr(task.Detector, "prepare", picky)
    Image.new("RGB", (17, 23), (9, 9, 9)).save(tmp_path / "odd.png")
    out = tmp_path / "out"
    result = cli("detect", SCENE, tmp_path / "odd.png", ROOT / "samples" / "scene2.png", "-o", out, "--offline",
                 "--batch-size", "4", "-q")
    assert result.exit_code == 7, result.stderr
    assert len(errors(result.stderr)) == 1 and "odd.png" in errors(result.stderr)[0]
    assert sorted(p.name for p in out.iterdir()) == ["scene2_det.png", "scene_det.png"]


# --- 12. the smaller ones ---------------------------------------------------------------------------


def test_one_bad_input_is_said_once(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG garbage" * 10)
    assert_failed_once(cli("classify", junk, "--model", "deepconvnet.mnist"), 2, "junk.png")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (200, 100, 10)).save(blank)
    assert_failed_once(cli("classify", blank, "--model", "deepconvnet.mnist"), 2, "blank.png", "no digit")


def test_pickle_refusal_never_suggests_weights_only_false(tmp_path: Path) -> None:
    import pickle

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Path("x")))
    result = cli("classify", DIGIT, "--weights-file", evil)
    line = assert_failed_once(result, 3, "cannot be loaded safely")
    assert "weights_only" not in result.stderr and "Warning" not in result.stderr, line


@pytest.mark.parametrize("args,code,word", [
    (["classify", str(DIGIT), "--model", "deepconvnet.mnist", "--seed", str(2**64)], 2, "--seed"),
    (["generate", "--ncols", "-2"], 2, "--ncols"),
    (["generate", "--ncols", "1e8"], 2, "Error"),
    (["generate", "--ncols", "100000000"], 2, "--ncols"),
    (["stylize", str(DIGIT), str(DIGIT), "--style-layers", ""], 2, "--style-layers"),
    (["train-mnist", "--evaluate", "--model", "deepconvnet.mnist", "--weights-file", "x.safetensors"], 2,
     "not both"),
    (["summary", "vgg16", "--input-size", "100000"], 2, "--input-size"),
])
def test_bad_numbers_and_option_combinations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args, code,
                                             word) -> None:
    monkeypatch.chdir(tmp_path)
    assert_failed_once(cli(*args), code, word)
    assert list(tmp_path.iterdir()) == []


def test_nan_weights_exit_3(tmp_path: Path) -> None:
    from dlcli.weights.store import read_state_dict

    state, _ = read_state_dict(BUNDLED_DIGITS)
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    path = write_weights(tmp_path / "nan.safetensors", nan, digits_meta())
    result = cli("classify", DIGIT, "--weights-file", path, "--json")
    assert_failed_once(result, 3, "NaN")
    assert "null" not in result.stdout


# --- the sweep beyond the list ----------------------------------------------------------------


@pytest.mark.parametrize("args,code", [
    (["classify", "{tmp}", "--model", "deepconvnet.mnist"], 2),               # a folder without images
    (["classify", "{tmp}/empty.png", "--model", "deepconvnet.mnist"], 2),     # 0 bytes
    (["detect", "{tmp}/empty.png", "--offline"], 2),
    (["caption", "{tmp}/empty.png"], 2),
    (["weights", "import", "deepconvnet.e", "{tmp}/empty.png"], 3),            # not a known format: refused
    (["weights", "info", "../../etc"], 3),
    (["generate", "-o", "{tmp}"], 2),                                         # a folder as the output file
    (["profile", "deepconvnet", "--input-size", "0"], 2),
    (["summary", "deepconvnet", "--channels", "-3"], 2),
    (["detect", "eval", "-n", "0"], 2),
])
def test_odd_inputs_sweep(tmp_path: Path, args, code) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli(*args)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    assert len(errors(result.stderr)) == 1 and "internal error" not in result.stderr, result.stderr
