"""Hardening: untrusted and damaged files, the baseline store, ini values and the command line.

tests/test_loading.py already checks that pickles which would run code are refused in
torch files, SB3 ``data`` entries and VecNormalize pickles; this module adds the other
ways a file can be crafted or damaged. Fuzzing of every argument is in
tests/test_fuzz.py, interruptions in tests/test_interrupts.py.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rli
from pytest_rli import baseline
from rli.cli import main

pytest_plugins = ["pytester"]
CHECKPOINT = Path(__file__).parent.parent / "examples" / "checkpoints" / "cartpole_ppo_seed0.zip"


class Payload:
    """Unpickling this runs ``touch marker``: the canary for code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite_zip(source: Path, target: Path, **replace: bytes) -> Path:
    """A copy of the zip ``source`` with some entries' bytes replaced (deflated, as SB3 writes them)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, replace.get(name.replace(".", "_"), src.read(name)))
    return target


def _one_line_error(call) -> str:
    with pytest.raises(rli.RliError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------------ untrusted files
def test_pickle_in_an_sb3_policy_pth_is_refused(tmp_path):
    """``policy.pth`` is read with ``torch.load(weights_only=True)``: a pickle that runs code is refused."""
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"mlp_extractor.policy_net.0.weight": Payload(marker)}, buffer)
    evil = _rewrite_zip(CHECKPOINT, tmp_path / "evil.zip", policy_pth=buffer.getvalue())
    message = _one_line_error(lambda: rli.load_policy(evil))
    assert "trust=True" in message and "evil.zip/policy.pth holds a pickled posix.system" in message
    assert not marker.exists()


def test_trust_must_be_a_real_bool(tmp_path):
    """``trust="false"`` (from a config file, say) must not count as True and run the payload."""
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "x": Payload(marker)}, tmp_path / "evil.pt")
    for value in ("false", "no", 0, 1, None):
        assert "trust must be True or False" in _one_line_error(
            lambda value=value: rli.load_policy(tmp_path / "evil.pt", trust=value))
    assert not marker.exists()


def _safetensors(path: Path, header: bytes | dict, body: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def _tensor(shape: list[int], offsets: list[int], dtype: str = "F32") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


SAFETENSORS_HEADERS = {
    "header length past the file": (struct.pack("<Q", 2**63 - 1) + b"{}", None),
    "offsets past the file": ({"w": _tensor([10**6, 10**6], [0, 4 * 10**12])}, b""),
    "negative shape": ({"w": _tensor([-1], [0, 4])}, b"\0" * 4),
    "unknown dtype": ({"w": _tensor([1], [0, 4], "X9")}, b"\0" * 4),
    "header not UTF-8": (b"\xff\xfe{}", None),
    "overlapping tensors": ({"a": _tensor([1], [0, 4]), "b": _tensor([1], [0, 4])}, b"\0" * 4),
    "arch metadata of absurd size": ({"__metadata__": {"rli.arch": json.dumps({"mlp": [4, 10**12]})},
                                      "0.weight": _tensor([1], [0, 4])}, b"\0" * 4),
    "arch metadata not an object": ({"__metadata__": {"rli.arch": "[28, 4]"}, "0.weight": _tensor([1], [0, 4])},
                                    b"\0" * 4),
    "arch metadata not JSON": ({"__metadata__": {"rli.arch": "{mlp"}, "0.weight": _tensor([1], [0, 4])}, b"\0" * 4),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_HEADERS))
def test_crafted_safetensors_headers_are_refused(tmp_path, case):
    header, body = SAFETENSORS_HEADERS[case]
    path = tmp_path / "crafted.safetensors"
    if body is None:
        path.write_bytes(header)
    else:
        _safetensors(path, header, body)
    tracemalloc.start()
    try:
        _one_line_error(lambda: rli.load_policy(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # the sizes the header claims are never allocated


def test_zip_bomb_data_entry_is_refused_unread(tmp_path):
    """A ``data`` entry that unpacks to 200 MB (from 200 kB) is refused from its size, before unpacking."""
    with zipfile.ZipFile(CHECKPOINT) as src:
        data = src.read("data")
    bomb = _rewrite_zip(CHECKPOINT, tmp_path / "bomb.zip", data=data + b" " * (200 * 2**20))
    assert bomb.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        message = _one_line_error(lambda: rli.load_policy(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "unpacks to" in message and peak < 20 * 2**20


@pytest.mark.parametrize(("entry", "content", "message"), [
    ("data", b"[1, 2]", "not a JSON object"),
    ("data", b"\xff\xfe", "not a readable Stable-Baselines3 model"),
    ("data", b"{", "not a readable Stable-Baselines3 model"),
    ("policy_pth", b"garbage", "policy.pth"),
])
def test_damaged_sb3_entries(tmp_path, entry, content, message):
    damaged = _rewrite_zip(CHECKPOINT, tmp_path / "damaged.zip", **{entry: content})
    assert message in _one_line_error(lambda: rli.load_policy(damaged))
    if entry == "data":  # SB3's own loader, when trusted, trips over it too: still one clear line
        _one_line_error(lambda: rli.load_policy(damaged, trust=True))


def test_bit_flipped_zip_entry_fails_its_checksum(tmp_path):
    raw = bytearray(CHECKPOINT.read_bytes())
    with zipfile.ZipFile(CHECKPOINT) as archive:
        info = archive.getinfo("data")
    raw[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # inside the compressed bytes of 'data'
    (tmp_path / "flipped.zip").write_bytes(bytes(raw))
    _one_line_error(lambda: rli.load_policy(tmp_path / "flipped.zip"))


@pytest.mark.parametrize(("make", "message"), [("plain zip", "is a zip but not a Stable-Baselines3 model"),
                                               ("npy", "not a readable torch checkpoint"),
                                               ("directory", "no such policy file"),
                                               ("png", "is not a zip archive")])
def test_wrong_file_types(tmp_path, make, message):
    path = tmp_path / "policy.zip"
    if make == "plain zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    elif make == "npy":
        path = tmp_path / "policy.npy"
        np.save(path, np.zeros(3))
    elif make == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert message in _one_line_error(lambda: rli.load_policy(path))


def test_obsset_load_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "obs.npz", obs=np.array([Payload(marker)], dtype=object))
    np.savez(tmp_path / "label.npz", obs=np.zeros((2, 3)), **{"label:y": np.array([Payload(marker)] * 2, dtype=object)})
    with open(tmp_path / "pickled.npz", "wb") as out:
        pickle.dump({"obs": Payload(marker)}, out)
    for name in ("obs.npz", "label.npz", "pickled.npz"):
        _one_line_error(lambda name=name: rli.ObsSet.load(tmp_path / name))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "npy", "meta list", "meta not JSON", "text", "missing", "dir"])
def test_damaged_obsset_files(tmp_path, damage):
    good = rli.ObsSet(np.zeros((4, 2)), labels={"y": np.arange(4.0)}).save(tmp_path / "good.npz")
    path = tmp_path / "bad.npz"
    if damage == "truncated":
        path.write_bytes(good.read_bytes()[:60])
    elif damage == "npy":
        np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
        path = tmp_path / "bad.npy"
    elif damage == "meta list":
        np.savez(path, obs=np.zeros((4, 2)), meta=np.asarray("[1, 2]"))
    elif damage == "meta not JSON":
        np.savez(path, obs=np.zeros((4, 2)), meta=np.asarray("{nope"))
    elif damage == "text":
        path.write_text("obs,1,2\n")
    elif damage == "dir":
        path = tmp_path
    _one_line_error(lambda: rli.ObsSet.load(path))


def test_obsset_save_reports_where_it_cannot_write(tmp_path):
    obs = rli.ObsSet(np.zeros((2, 2)))
    assert "is a directory" in _one_line_error(lambda: obs.save(tmp_path))
    assert "cannot write" in _one_line_error(lambda: obs.save(tmp_path / "missing" / "obs.npz"))
    assert "JSON" in _one_line_error(lambda: rli.ObsSet(np.zeros((2, 2)), meta={"x": object()}).save(tmp_path / "m"))
    assert not list(tmp_path.glob("*.npz"))


# --------------------------------------------------------------------------------------------- baseline store
def _baseline(tests: dict) -> str:
    return json.dumps({"version": 1, "tests": tests})


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe", json.dumps([1, 2]).encode(), json.dumps({"version": 2, "tests": {}}).encode(),
    _baseline({"test_x.py::test_a": "garbage"}).encode(),
    _baseline({"test_x.py::test_a": {"assert_probe_r2[x]": {"value": "high"}}}).encode(),
    _baseline({"test_x.py::test_a": {"assert_probe_r2[x]": {"value": float("nan")}}}).encode(),
], ids=["not JSON", "not UTF-8", "a list", "another version", "entry not an object", "value not a number",
        "value NaN"])
def test_corrupt_baseline_is_reported_and_never_overwritten(pytester, content):
    path = pytester.path / "rli-baseline.json"
    path.write_bytes(content)
    before = path.read_bytes()
    pytester.makepyfile("def test_a():\n    pass\n")
    for extra in ([], ["--rli-update-baseline"]):
        result = pytester.runpytest("-p", "no:cacheprovider", f"--rli-baseline={path}", *extra)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*rli-baseline.json*regenerate it with --rli-update-baseline*"])
        assert path.read_bytes() == before


@pytest.mark.parametrize(("ini", "message"), [
    ("rli_episodes = many", "rli_episodes ini key must be an integer of at least 2*got 'many'"),
    ("rli_episodes = 0", "rli_episodes ini key must be an integer of at least 2"),
    ("rli_seed = -1", "rli_seed ini key must be an integer between 0 and 4294967295"),
    ("rli_obs_size = 2.5", "rli_obs_size ini key must be an integer of at least 1"),
    ("rli_baseline_tolerance = lots", "rli_baseline_tolerance must be a number"),
    ("rli_baseline_tolerance = nan", "rli_baseline_tolerance must be a finite number"),
    ("rli_baseline_tolerance = -0.1", "rli_baseline_tolerance must be a finite number"),
    ("rli_trust = maybe", "rli_trust must be true or false*maybe"),
])
def test_bad_ini_values_are_usage_errors(pytester, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


MANY_CLAIMS = """
import numpy as np
import pytest
import torch
import torch.nn as nn

import rli
from pytest_rli.assertions import assert_representation_similar

torch.manual_seed(0)
POLICY = rli.load_policy(nn.Sequential(nn.Linear(3, 8), nn.Tanh()))
OBS = np.random.default_rng(0).normal(size=(64, 3))


@pytest.mark.parametrize("i", range(8))
def test_claim(i):
    assert_representation_similar(policy=POLICY, obs=OBS * (i + 1), layer=1, reference=POLICY, min_cka=0.5)
"""


def test_concurrent_baseline_updates_under_xdist_lose_nothing(pytester):
    pytester.makepyfile(test_many=MANY_CLAIMS)
    path = pytester.path / "b.json"
    path.write_text(_baseline({"test_old.py::test_kept": {"k": {"metric": "cka", "value": 0.5}}}))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", f"--rli-baseline={path}",
                                           "--rli-update-baseline")
    result.assert_outcomes(passed=8)
    stored = json.loads(path.read_text())["tests"]
    assert set(stored) == {f"test_many.py::test_claim[{i}]" for i in range(8)} | {"test_old.py::test_kept"}
    assert all(entry for entry in stored.values())
    assert not list(pytester.path.glob(".b.json.*"))  # no temporary file left behind


def test_baseline_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "b.json"
    baseline.write(path, {"t::a": {"k": {"value": 1.0}}})
    before = path.read_bytes()

    def broken_replace(*_):
        raise OSError("disk full")

    class HalfWriter(io.StringIO):
        def write(self, text):
            super().write(text[: len(text) // 2])
            raise OSError("no space left on device")

    def half_fdopen(handle, *_, **__):
        os.close(handle)
        return HalfWriter()

    for replacement, error in (("replace", OSError), ("dumps", TypeError), ("fdopen", OSError)):
        with monkeypatch.context() as patch:
            if replacement == "replace":
                patch.setattr(os, "replace", broken_replace)
            elif replacement == "dumps":
                patch.setattr(json, "dumps", lambda *_, **__: (_ for _ in ()).throw(TypeError("not serialisable")))
            else:
                patch.setattr(os, "fdopen", half_fdopen)
            with pytest.raises(error):
                baseline.write(path, {"t::a": {"k": {"value": 2.0}}, "t::b": {}})
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # no temporary file left
    baseline.write(path, {"t::a": {"k": {"value": 2.0}}})
    assert baseline.read(path) == {"t::a": {"k": {"value": 2.0}}}


# ------------------------------------------------------------------------------------------- command line
def test_cli_exit_codes(tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "x": Payload(marker)}, tmp_path / "evil.pt")
    (tmp_path / "broken.zip").write_bytes(CHECKPOINT.read_bytes()[:500])
    torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), tmp_path / "weights.pt")
    cases = [
        (["layers", str(CHECKPOINT)], 0, None),
        (["layers", str(tmp_path / "missing.zip")], 1, "no such policy file"),
        (["layers", str(tmp_path / "evil.pt")], 1, "trust"),
        (["layers", str(tmp_path / "broken.zip")], 1, "broken.zip"),
        (["layers", str(tmp_path / "weights.pt"), "--arch", "mlp:a,b"], 1, "--arch sizes must be integers"),
        (["layers", str(tmp_path / "weights.pt"), "--arch", "mlp:3,-2"], 1, "arch['mlp']"),
        (["layers", str(tmp_path / "weights.pt"), "--arch", "mlp:3,5"], 1, "do not fit"),
        (["layers"], 2, None),
        (["no-such-command"], 2, None),
        (["layers", str(CHECKPOINT), "--no-such-option"], 2, None),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        if code == 1:
            assert err.startswith("rli: error: ") and err.count("\n") == 1 and message in err, err
    assert not marker.exists()
