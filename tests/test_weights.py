"""Tests of src.weights and scripts/convert_weights.py against files written by torch itself.

The fixtures (tests/fixtures/weights/, made by make_fixtures.py with real torch and safetensors)
hold a reduced ResNet with torchvision's names, random weights and random BatchNorm statistics,
plus the torch module's own layer2/layer3 outputs for a fixed input. The key check is that the
MindSpore backbone loaded from each file reproduces those outputs.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import src.runtime
from src import weights
from src.errors import WeightsError

src.runtime.configure("CPU")

import mindspore as ms  # noqa: E402  (after configure: it sets GLOG_v and oneDNN first)

from scripts.convert_weights import main as convert_main  # noqa: E402
from src.models.backbone import WideResNet  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "weights"
ZIP = FIXTURES / "tiny_resnet.pth"
LEGACY = FIXTURES / "tiny_resnet_legacy.pth"
SAFETENSORS = FIXTURES / "tiny_resnet.safetensors"
MIXED = FIXTURES / "tiny_resnet_mixed.pth"
ALL_FILES = (ZIP, LEGACY, SAFETENSORS, MIXED)
TINY = {"depths": (1, 1, 1, 1), "width_per_group": 16, "stem_channels": 8}
TOLERANCE = 1e-4  # max abs error / max abs reference


def tiny_network(out_layers: tuple[str, ...] = ("layer2", "layer3"), **overrides) -> WideResNet:
    return WideResNet(out_layers=out_layers, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference_outputs.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def torch_state() -> dict[str, np.ndarray]:
    """The fixture's state dict read by the safetensors package itself (independent reader)."""
    return load_file(str(SAFETENSORS))


def torchvision_name(name: str) -> str:
    """Our parameter name -> torchvision's, spelled out independently of src.weights."""
    module, _, leaf = name.rpartition(".")
    table = {
        "gamma": "weight",
        "beta": "bias",
        "moving_mean": "running_mean",
        "moving_variance": "running_var",
    }
    return f"{module}.{table.get(leaf, leaf)}"


def parameters(network: WideResNet) -> dict[str, np.ndarray]:
    return {name: p.asnumpy().copy() for name, p in network.parameters_and_names()}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run(network: WideResNet, image: np.ndarray) -> list[np.ndarray]:
    return [out.asnumpy() for out in network(ms.Tensor(image.astype(np.float32)))]


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (ZIP, "torch-zip"),
        (LEGACY, "torch-legacy"),
        (SAFETENSORS, "safetensors"),
        (MIXED, "torch-zip"),
    ],
)
def test_format_detected_by_content_not_extension(tmp_path, path, expected):
    renamed = tmp_path / "weights.bin"
    shutil.copy(path, renamed)
    assert weights.detect_format(renamed) == expected
    assert set(weights.read_weights(renamed)) == set(weights.read_weights(path))


def test_three_formats_give_identical_arrays(torch_state):
    for path in (ZIP, LEGACY, SAFETENSORS):
        state = weights.read_weights(path)
        assert set(state) == set(torch_state), path
        for name, value in torch_state.items():
            assert state[name].dtype == value.dtype, (path, name)
            np.testing.assert_array_equal(state[name], value, err_msg=f"{path}: {name}")
    assert torch_state["layer2.0.bn1.num_batches_tracked"].dtype == np.int64


def test_dtypes_views_offsets_and_wrapper_dict(torch_state, reference):
    """float16/bfloat16/float64 storages, non-contiguous views, storage offsets, {"state_dict"}."""
    state = weights.read_weights(MIXED)
    assert set(state) == {n for n in torch_state if not n.startswith(("layer4.", "fc."))}
    lossy = {name[len("mixed/") :] for name in reference if name.startswith("mixed/")}
    assert len(lossy) == 5
    assert state["layer1.0.conv2.weight"].dtype == np.float16
    assert state["layer1.0.bn1.running_var"].dtype == np.float32  # bfloat16 widened
    assert state["layer2.0.bn2.running_mean"].dtype == np.float64
    for name, value in state.items():
        assert value.flags.c_contiguous and value.flags.writeable, name
        expected = reference[f"mixed/{name}"] if name in lossy else torch_state[name]
        np.testing.assert_array_equal(value.astype(expected.dtype), expected, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Loading into the MindSpore backbone
# --------------------------------------------------------------------------------------------------


def test_values_arrive_in_the_right_places(torch_state):
    network = tiny_network()
    report = weights.load_backbone_weights(network, ZIP)
    loaded = parameters(network)
    assert report.loaded == len(loaded) == 65
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, torch_state[torchvision_name(name)], err_msg=name)
    # Spot checks of the renaming, including running statistics and the downsample branch.
    np.testing.assert_array_equal(loaded["bn1.moving_mean"], torch_state["bn1.running_mean"])
    np.testing.assert_array_equal(
        loaded["layer3.0.downsample.1.moving_variance"],
        torch_state["layer3.0.downsample.1.running_var"],
    )
    np.testing.assert_array_equal(loaded["layer2.0.bn3.gamma"], torch_state["layer2.0.bn3.weight"])


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_outputs_match_the_torch_reference(path, reference):
    """THE key check: MindSpore layer2/layer3 outputs equal torch's within 1e-4 relative."""
    network = tiny_network()
    weights.load_backbone_weights(network, path)
    layer2, layer3 = run(network, reference["input"])
    if path == MIXED:
        # Some weights are stored in float16/bfloat16 there: agreement within rounding only.
        assert relative_error(layer2, reference["layer2"]) < 5e-3
        assert relative_error(layer3, reference["layer3"]) < 5e-3
        return
    assert layer2.shape == reference["layer2"].shape == (2, 64, 8, 8)
    assert layer3.shape == reference["layer3"].shape == (2, 128, 4, 4)
    assert relative_error(layer2, reference["layer2"]) < TOLERANCE
    assert relative_error(layer3, reference["layer3"]) < TOLERANCE


def test_swapped_batchnorm_statistics_would_be_caught(tmp_path, torch_state, reference):
    """The reference check is sensitive: one swapped pair of BN statistics breaks it."""
    swapped = dict(torch_state)
    swapped["layer2.0.bn2.running_mean"] = torch_state["layer2.0.bn2.running_var"]
    swapped["layer2.0.bn2.running_var"] = torch_state["layer2.0.bn2.running_mean"]
    path = tmp_path / "swapped.safetensors"
    save_file(swapped, str(path))
    network = tiny_network()
    weights.load_backbone_weights(network, path)
    layer2, _ = run(network, reference["input"])
    assert relative_error(layer2, reference["layer2"]) > 100 * TOLERANCE


def test_all_formats_load_identical_parameters():
    fingerprints = set()
    loaded = []
    for path in (ZIP, LEGACY, SAFETENSORS):
        network = tiny_network()
        fingerprints.add(weights.load_backbone_weights(network, path).fingerprint)
        loaded.append(parameters(network))
    assert len(fingerprints) == 1
    for other in loaded[1:]:
        assert other.keys() == loaded[0].keys()
        for name in other:
            np.testing.assert_array_equal(other[name], loaded[0][name])


def test_extras_are_allowed_and_reported_once(caplog):
    network = tiny_network()
    with caplog.at_level(logging.INFO, logger="src.weights"):
        report = weights.load_backbone_weights(network, ZIP)
    assert "fc.weight" in report.extra_names
    assert "layer4.0.downsample.1.moving_mean" in report.extra_names
    assert not any("num_batches_tracked" in name for name in report.extra_names)
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1
    assert f"ignored {len(report.extra_names)} entries" in ignored[0]
    # A file without extras logs no such line.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="src.weights"):
        assert weights.load_backbone_weights(tiny_network(), MIXED).extra_names == ()
    assert not any("ignored" in r.getMessage() for r in caplog.records)


def test_missing_and_misshaped_entries_are_all_listed(tmp_path, torch_state):
    broken = dict(torch_state)
    del broken["layer3.0.conv2.weight"]
    del broken["bn1.running_var"]
    broken["layer2.0.bn1.weight"] = np.ones(5, np.float32)
    broken["layer1.0.downsample.0.weight"] = np.ones((32, 8, 3, 3), np.float32)
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    network = tiny_network()
    before = weights.weights_fingerprint(network)
    with pytest.raises(WeightsError) as info:
        weights.load_backbone_weights(network, path)
    message = str(info.value)
    assert "2 parameters missing" in message and "2 parameters with the wrong shape" in message
    for name in (
        "layer3.0.conv2.weight",
        "bn1.moving_variance",
        "layer2.0.bn1.gamma: file (5,), network (4,)",
        "layer1.0.downsample.0.weight: file (32, 8, 3, 3), network (32, 8, 1, 1)",
    ):
        assert name in message
    assert weights.weights_fingerprint(network) == before  # nothing was half-loaded


def test_long_mismatch_lists_are_cut_with_a_count():
    network = tiny_network(depths=(2, 2, 2, 1))  # the file has one block per stage
    with pytest.raises(WeightsError) as info:
        weights.load_backbone_weights(network, ZIP)
    missing = [n for n, _ in network.parameters_and_names() if re.match(r"layer\d\.1\.", n)]
    assert f"{len(missing)} parameters missing" in str(info.value)
    assert f"... and {len(missing) - 20} more" in str(info.value)


def test_non_finite_values_are_refused(tmp_path, torch_state):
    broken = dict(torch_state)
    broken["layer1.0.bn2.running_var"] = np.full(2, np.nan, np.float32)
    path = tmp_path / "nan.safetensors"
    save_file(broken, str(path))
    with pytest.raises(WeightsError, match=r"layer1\.0\.bn2\.moving_variance: non-finite"):
        weights.load_backbone_weights(tiny_network(), path)


def test_known_release_is_named(monkeypatch, caplog):
    assert weights.load_backbone_weights(tiny_network(), SAFETENSORS).release is None
    digest = weights.file_sha256(SAFETENSORS)
    monkeypatch.setitem(weights.KNOWN_RELEASES, digest, "test release: tiny ResNet")
    with caplog.at_level(logging.INFO, logger="src.weights"):
        report = weights.load_backbone_weights(tiny_network(), SAFETENSORS)
    assert report.sha256 == digest and report.format == "safetensors"
    assert report.release == "test release: tiny ResNet"
    assert any("known release: test release" in r.getMessage() for r in caplog.records)


def test_hub_hash_is_known():
    assert (
        "meanimage-level98.28"
        in weights.KNOWN_RELEASES[
            "1342f00c640e2309eef894789239615f36db0fa75a3e93dbb12c13330b256d31"
        ]
    )


def test_fingerprint_tracks_values_and_survives_a_round_trip(tmp_path):
    network = tiny_network()
    report = weights.load_backbone_weights(network, ZIP)
    assert report.fingerprint == weights.weights_fingerprint(network)
    assert len(report.fingerprint) == 64

    saved = tmp_path / "roundtrip.ckpt"
    ms.save_checkpoint(network, str(saved))
    reloaded = tiny_network()
    assert weights.load_backbone_weights(reloaded, saved).fingerprint == report.fingerprint

    param = dict(network.parameters_and_names())["layer2.0.bn1.moving_mean"]
    value = param.asnumpy().copy()
    value[1] += 1e-6
    param.set_data(ms.Tensor(value))
    assert weights.weights_fingerprint(network) != report.fingerprint


# --------------------------------------------------------------------------------------------------
# MindSpore checkpoints and conversion
# --------------------------------------------------------------------------------------------------


def test_prefixed_mindspore_checkpoint_with_extras_loads(tmp_path):
    """Like the Hub file: MindSpore names under "network.", plus head / optimizer entries."""
    source = tiny_network(out_layers=("layer4",))
    weights.load_backbone_weights(source, ZIP)
    entries = [{"name": f"network.{n}", "data": p} for n, p in source.parameters_and_names()]
    entries += [
        {"name": "moments.network.conv1.weight", "data": ms.Tensor(np.zeros((8, 3, 7, 7)))},
        {"name": "network.fc.weight", "data": ms.Tensor(np.zeros((10, 256), np.float32))},
        {"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))},
    ]
    path = tmp_path / "patchcore_hub_like.ckpt"
    ms.save_checkpoint(entries, str(path))

    network = tiny_network()
    report = weights.load_backbone_weights(network, path)
    assert report.format == "mindspore-ckpt"
    assert {"fc.weight", "global_step", "moments.network.conv1.weight"} <= set(report.extra_names)
    reference_net = tiny_network()
    weights.load_backbone_weights(reference_net, ZIP)
    expected = parameters(reference_net)
    for name, value in parameters(network).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_converted_checkpoint_matches_loading_the_original(tmp_path, reference):
    converted = weights.convert_weights(ZIP, tmp_path / "out" / "tiny.ckpt", ("layer2", "layer3"))
    assert converted == tmp_path / "out" / "tiny.ckpt"
    assert sorted(p.name for p in converted.parent.iterdir()) == ["tiny.ckpt"]  # no temp left
    stored = weights.read_weights(converted)
    assert len(stored) == 65 and all(v.dtype == np.float32 for v in stored.values())
    assert not any(n.startswith(("fc.", "layer4.")) for n in stored)

    from_original, from_converted = tiny_network(), tiny_network()
    original_report = weights.load_backbone_weights(from_original, LEGACY)
    converted_report = weights.load_backbone_weights(from_converted, converted)
    assert converted_report.format == "mindspore-ckpt" and converted_report.extra_names == ()
    assert converted_report.fingerprint == original_report.fingerprint
    image = reference["input"]
    for a, b in zip(run(from_original, image), run(from_converted, image), strict=True):
        np.testing.assert_array_equal(a, b)


def test_convert_default_keeps_all_four_stages(tmp_path):
    converted = weights.convert_weights(SAFETENSORS, tmp_path / "all.ckpt")
    stored = weights.read_weights(converted)
    assert any(name.startswith("layer4.") for name in stored)
    assert not any(name.startswith("fc.") for name in stored)
    # The mixed file has no layer4: converting all four stages from it must say so.
    with pytest.raises(WeightsError, match="no layer4 entries"):
        weights.convert_weights(MIXED, tmp_path / "fails.ckpt")
    assert not (tmp_path / "fails.ckpt").exists()


def test_convert_script(tmp_path, capsys):
    out = tmp_path / "script.ckpt"
    assert convert_main([str(LEGACY), str(out), "--layers", "layer2", "layer3"]) == 0
    assert weights.load_backbone_weights(tiny_network(), out).loaded == 65

    shallow = tmp_path / "layer1_only.ckpt"
    assert convert_main([str(ZIP), str(shallow), "--layers", "layer1"]) == 0
    with pytest.raises(WeightsError, match=r"layer2\.0\.conv1\.weight"):
        weights.load_backbone_weights(tiny_network(), shallow)

    assert convert_main([str(tmp_path / "absent.pth"), str(tmp_path / "x.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([str(ZIP), str(out), "--layers", "layer9"])


# --------------------------------------------------------------------------------------------------
# Hostile and broken files
# --------------------------------------------------------------------------------------------------


class _Payload:
    """Pickles as a call of ``function(*args)``, the way a malicious .pth runs code."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "os.system": _Payload(os.system, (f"touch {marker}",)),
        "builtins.eval": _Payload(eval, (f"open({str(marker)!r}, 'w').close()",)),
        "builtins.exec": _Payload(exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.Popen": _Payload(subprocess.Popen, (["touch", str(marker)],)),
        "builtins.open": _Payload(open, (str(marker), "w")),
    }


def _as_torch_zip(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")


def _as_torch_legacy(path: Path, payload: bytes) -> None:
    header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}]
    path.write_bytes(b"".join(pickle.dumps(obj, protocol=2) for obj in header) + payload)


def test_the_payloads_do_run_under_plain_pickle(tmp_path):
    """Control: the harmless open() payload really creates the marker when unpickled naively."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_payloads(marker)["builtins.open"], protocol=2)).close()
    assert marker.exists()


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec",
                                  "subprocess.Popen", "builtins.open"])  # fmt: skip
@pytest.mark.parametrize("nested", [False, True], ids=["bare", "inside-state-dict"])
def test_malicious_pickle_is_refused_without_running(tmp_path, container, kind, nested):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[kind]
    obj = collections.OrderedDict([("conv1.weight", payload)]) if nested else payload
    data = pickle.dumps(obj, protocol=2)
    path = tmp_path / "evil.pth"
    (_as_torch_zip if container == "zip" else _as_torch_legacy)(path, data)
    # The global as pickle names it (os.system is posix.system, open is io.open).
    expected_global = f"{payload.function.__module__}.{payload.function.__qualname__}"
    with pytest.raises(WeightsError, match=f"refused .*'{re.escape(expected_global)}'"):
        weights.read_weights(path)
    with pytest.raises(WeightsError, match="refused"):
        weights.load_backbone_weights(tiny_network(), path)
    assert not marker.exists()


def test_malicious_storage_type_is_refused(tmp_path):
    """A global smuggled into a storage record (persistent id) is refused before it is used."""
    marker = tmp_path / "marker"
    # PROTO 2; MARK 'storage' GLOBAL(posix.system) '0' 'cpu' 1 TUPLE; BINPERSID; STOP
    data = (
        b"\x80\x02(X\x07\x00\x00\x00storage"
        + b"cposix\nsystem\n"
        + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ."
    )
    path = tmp_path / "evil.pth"
    _as_torch_zip(path, data)
    with pytest.raises(WeightsError, match=r"refused .*'posix\.system'"):
        weights.read_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("path", [*ALL_FILES], ids=lambda p: p.name)
@pytest.mark.parametrize("keep", [0.5, 0.97, 20])
def test_truncated_files_raise_weights_error(tmp_path, path, keep):
    data = path.read_bytes()
    cut = tmp_path / path.name
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(WeightsError):
        weights.read_weights(cut)


def test_truncated_mindspore_checkpoint(tmp_path):
    full = weights.convert_weights(ZIP, tmp_path / "full.ckpt", ("layer3",))
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(WeightsError, match="MindSpore checkpoint"):
        weights.read_weights(cut)


def test_storage_smaller_than_its_tensor_is_refused(tmp_path):
    """A record too short for the tensor's size/stride must fail, not read outside the buffer."""
    doctored = tmp_path / "short_record.pth"
    with zipfile.ZipFile(ZIP) as source, zipfile.ZipFile(doctored, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data/0"):
                data = data[:8]
            target.writestr(item, data)
    with pytest.raises(WeightsError, match="reaches element"):
        weights.read_weights(doctored)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\x13\x37 this is not a weights file at all" * 10, "none of the supported formats"),
        (pickle.dumps({"a": 1}, protocol=4), "bare pickle"),
        (b"\x0a\xff\xff\xff garbage that looks like protobuf", "MindSpore checkpoint"),
        (b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}', "truncated"),
        (b'\x08\x00\x00\x00\x00\x00\x00\x00{"a": 1}', "malformed safetensors entry"),
    ],
    ids=["empty", "garbage", "bare-pickle", "bad-protobuf", "short-header", "bad-entry"],
)
def test_garbage_files_raise_weights_error(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        weights.read_weights(path)


def test_missing_file_and_stateless_pickle(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        weights.load_backbone_weights(tiny_network(), tmp_path / "nope.pth")
    path = tmp_path / "no_tensors.pth"
    _as_torch_zip(path, pickle.dumps({"epoch": 3, "arch": "resnet"}, protocol=2))
    with pytest.raises(WeightsError, match="holds no state dict"):
        weights.read_weights(path)


# --------------------------------------------------------------------------------------------------
# Name mapping
# --------------------------------------------------------------------------------------------------


def test_to_backbone_names():
    v = np.zeros(4, np.float32)
    conv = np.zeros((4, 4, 1, 1), np.float32)
    state = {
        "module.conv1.weight": conv,
        "module.bn1.weight": v,
        "module.bn1.bias": v,
        "module.bn1.running_mean": v,
        "module.bn1.running_var": v,
        "module.bn1.num_batches_tracked": np.array(3),
        "module.layer1.0.conv1.weight": conv,
        "module.layer1.0.downsample.0.weight": conv,
        "module.layer1.0.downsample.1.weight": v,
        "module.layer1.0.downsample.1.bias": v,
        "module.fc.weight": np.zeros((2, 4), np.float32),
        "module.fc.bias": np.zeros(2, np.float32),
        "module.norm.weight": v,  # BatchNorm by its running_mean, whatever its name
        "module.norm.running_mean": v,
        "optimizer_step": np.array(1),
    }
    assert set(weights.to_backbone_names(state)) == {
        "conv1.weight",
        "bn1.gamma",
        "bn1.beta",
        "bn1.moving_mean",
        "bn1.moving_variance",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.gamma",
        "layer1.0.downsample.1.beta",
        "fc.weight",
        "fc.bias",
        "norm.gamma",
        "norm.moving_mean",
        "optimizer_step",
    }
    mindspore_names = {"network.backbone.conv1.weight": conv, "network.backbone.bn1.gamma": v}
    assert set(weights.to_backbone_names(mindspore_names)) == {"conv1.weight", "bn1.gamma"}
    # An optimizer copy of the stem does not win over the network's own prefix.
    prefixed = {"network.conv1.weight": conv, "network.bn1.beta": v, "moments.conv1.weight": conv}
    assert "conv1.weight" in weights.to_backbone_names(prefixed)
    with pytest.raises(WeightsError, match=r"map to 'bn1\.gamma'"):
        weights.to_backbone_names({"conv1.weight": conv, "bn1.weight": v, "bn1.gamma": v})
