"""Backbone weights: read torchvision, timm and MindSpore files without torch, load them strictly.

PatchCore's accuracy rests on ImageNet-pretrained WideResNet-50-2 features, and users arrive with
one of three files (docs/weights.md says where each comes from):

- the MindSpore Hub PatchCore checkpoint (``.ckpt``, MindSpore's protobuf format), whose names
  already use MindSpore's BatchNorm spelling (gamma, beta, moving_mean, moving_variance);
- torchvision's ``wide_resnet50_2`` state dict (``.pth`` written by ``torch.save``, zip or legacy
  format);
- timm's ``wide_resnet50_2`` weights (``.safetensors`` or ``.pth``, torchvision's names).

The format is detected from the content. ``.pth`` files are pickles, and unpickling can run code
chosen by whoever made the file, so they are read by a restricted unpickler that accepts only
the few globals a state dict needs (mapped to inert stand-ins defined here), never imports torch
and never calls anything named in the file. Names are then mapped to the backbone's
(:func:`to_backbone_names`) and matched strictly against the network: every parameter must be
present with its exact shape, extra entries (fc, layer4, optimizer state ...) are reported once.
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import json
import logging
import os
import pickle
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from src.errors import ConfigError, WeightsError
from src.models import STAGE_NAMES

if TYPE_CHECKING:
    from mindspore import nn

logger = logging.getLogger(__name__)

#: sha256 of released weight files -> what they are. Only files whose hash we have seen published
#: belong here; the loader names the release in its log when a file matches.
KNOWN_RELEASES: dict[str, str] = {
    "1342f00c640e2309eef894789239615f36db0fa75a3e93dbb12c13330b256d31": (
        "MindSpore Hub PatchCore checkpoint, v1.8.0 "
        "(patchcore_ascend_v180_mvtecad_official_cv_meanimage-level98.28_meanpixel-level97.72.ckpt):"
        " WideResNet-50-2 converted from torchvision's IMAGENET1K_V1 weights"
    ),
}

FORMAT_MINDSPORE = "mindspore-ckpt"
FORMAT_TORCH_ZIP = "torch-zip"
FORMAT_TORCH_LEGACY = "torch-legacy"
FORMAT_SAFETENSORS = "safetensors"


_HOW_TO_FIX = (
    "Set backbone.checkpoint to an original WideResNet-50-2 file (torchvision .pth, timm "
    ".safetensors/.pth or the MindSpore Hub PatchCore .ckpt) or to the output of "
    "scripts/convert_weights.py; see docs/weights.md."
)

# torch.save's legacy (non-zip) files start with a protocol-2 pickle of this number.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + _TORCH_LEGACY_MAGIC.to_bytes(10, "little")
_TORCH_LEGACY_PROTOCOL = 1001

# Element types by torch's dtype name: numpy type code (byte order added per file). bfloat16 has
# no numpy type: its raw 16 bits are read as uint16 and widened to float32.
_ELEMENT_TYPES: dict[str, str] = {
    "float64": "f8",
    "float32": "f4",
    "float16": "f2",
    "bfloat16": "u2",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint64": "u8",
    "uint32": "u4",
    "uint16": "u2",
    "uint8": "u1",
    "bool": "b1",
}

# Legacy typed storage classes (what torch 2.x still writes for these dtypes) -> dtype name.
_STORAGE_CLASSES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# safetensors dtype codes -> dtype name.
_SAFETENSORS_TYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}

# Checkpoint dicts that wrap the state dict, e.g. {"state_dict": ..., "epoch": 90}.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")

_BN_SUFFIXES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_BN_MODULE = re.compile(r"(?:^|\.)(?:bn\d+|downsample\.1)$")
_STAGE_IN_PREFIX = re.compile(r"(?:^|\.)layer\d+\.")
_STEM_WEIGHT = "conv1.weight"
_MAX_LISTED = 20


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone_weights` loaded.

    Attributes:
        path: the weights file as given.
        format: one of "mindspore-ckpt", "torch-zip", "torch-legacy", "safetensors".
        sha256: hex digest of the file's bytes.
        release: description of the known release the file is, or None.
        loaded: number of network parameters set from the file.
        extra_names: sorted names (after renaming) in the file that the network does not use.
        fingerprint: :func:`weights_fingerprint` of the network after loading.
    """

    path: Path
    format: str
    sha256: str
    release: str | None
    loaded: int
    extra_names: tuple[str, ...]
    fingerprint: str


# --------------------------------------------------------------------------------------------------
# Restricted unpickling of torch.save files
# --------------------------------------------------------------------------------------------------


class _StorageClass(NamedTuple):
    """Stand-in for torch.FloatStorage & co. (and UntypedStorage, whose elements are bytes)."""

    dtype: str


class _DType(NamedTuple):
    """Stand-in for a torch dtype object such as torch.float32."""

    name: str


class _StorageRef(NamedTuple):
    """A storage named by the pickle; its bytes live in a zip record or after the legacy pickle.

    ``start`` is non-zero only for legacy "views" of a larger root storage (elements).
    """

    key: str
    dtype: str
    start: int


class _TensorRef(NamedTuple):
    """A strided view of a storage, turned into a numpy array once all storages are read."""

    storage: _StorageRef
    dtype: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise WeightsError(f"malformed tensor record: {what} {value!r} is not a tuple of sizes.")
    return tuple(value)


def _tensor_ref(storage: Any, offset: Any, size: Any, stride: Any, dtype: str) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise WeightsError(f"malformed tensor record: {storage!r} is not a storage reference.")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise WeightsError(f"malformed tensor record: storage offset {offset!r}.")
    size_t, stride_t = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise WeightsError(f"malformed tensor record: size {size_t} but stride {stride_t}.")
    return _TensorRef(storage, dtype, storage.start + offset, size_t, stride_t)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor (files from old torch versions)."""
    return _tensor_ref(storage, storage_offset, size, stride, getattr(storage, "dtype", ""))


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor_v2: a typed storage, the tensor has its dtype."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor_v3: an untyped (byte) storage plus a dtype."""
    if not isinstance(dtype, _DType) or getattr(storage, "dtype", None) != "uint8":
        raise WeightsError(f"malformed tensor record: dtype {dtype!r} on storage {storage!r}.")
    if storage.start:
        raise WeightsError("malformed tensor record: a storage view under an untyped storage.")
    return _tensor_ref(storage, storage_offset, size, stride, dtype.name)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """Stand-in for torch._utils._rebuild_parameter: a Parameter is just its tensor here."""
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> Any:
    """Stand-in for torch._utils._rebuild_parameter_with_state."""
    return data


class _Inert:
    """A stand-in callable that the pickle cannot modify.

    Pickle's BUILD opcode can set attributes on any object on its stack; without a __dict__ and
    with setattr refused, a file cannot alter the stand-ins (e.g. their defaults) for later files.
    """

    __slots__ = ("_function",)

    def __init__(self, function: Any) -> None:
        object.__setattr__(self, "_function", function)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{name} is read-only")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)


def _safe_globals() -> dict[str, Any]:
    table: dict[str, Any] = {
        # The container of every state dict: an immutable C type, calling it only builds a dict.
        "collections.OrderedDict": collections.OrderedDict,
        "torch._utils._rebuild_tensor": _Inert(_rebuild_tensor),
        "torch._utils._rebuild_tensor_v2": _Inert(_rebuild_tensor_v2),
        "torch._utils._rebuild_tensor_v3": _Inert(_rebuild_tensor_v3),
        "torch._utils._rebuild_parameter": _Inert(_rebuild_parameter),
        "torch._utils._rebuild_parameter_with_state": _Inert(_rebuild_parameter_with_state),
        # NamedTuple instances: no __dict__ and read-only fields, so also immune to BUILD.
        "torch.storage.UntypedStorage": _StorageClass("uint8"),
        "torch.UntypedStorage": _StorageClass("uint8"),
    }
    for name, dtype in _STORAGE_CLASSES.items():
        table[f"torch.{name}"] = _StorageClass(dtype)
    for dtype in _ELEMENT_TYPES:
        table[f"torch.{dtype}"] = _DType(dtype)
    return table


_SAFE_GLOBALS = _safe_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only state-dict globals, each to an inert stand-in.

    Everything else (os.system, builtins.eval, subprocess.Popen, torch.nn.Module ...) is refused
    before it is imported, so nothing named by the file is ever called.

    Args:
        file: binary stream positioned at a pickle.
        source: file name for messages.
        storages: filled with the storages the pickle refers to (key -> reference).
    """

    def __init__(
        self, file: io.BufferedIOBase, source: str, storages: dict[str, _StorageRef]
    ) -> None:
        super().__init__(file, encoding="utf-8")
        self.source = source
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles may spell globals the Python 2 way (__builtin__.eval); translate them
        # as the standard unpickler would, so that messages name what would really have run.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[qualified]
        raise WeightsError(
            f"refused to read {self.source}: its pickle asks for the global {qualified!r}, which a "
            "plain state dict never needs (only tensors, storages and OrderedDict are allowed). "
            "The file may try to run code when loaded, or hold a whole pickled model instead of "
            "a state dict. Use the original weights file or a .safetensors file; if you trust "
            "this file, re-save it with torch.save(model.state_dict(), path)."
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise WeightsError(f"malformed storage record {pid!r} in {self.source}.")
        storage_class, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_class, _StorageClass) or not isinstance(key, str):
            raise WeightsError(f"malformed storage record {pid!r} in {self.source}.")
        if not isinstance(numel, int) or numel < 0:
            raise WeightsError(f"malformed storage size {numel!r} in {self.source}.")
        known = self.storages.get(key)
        if known is not None and known.dtype != storage_class.dtype:
            raise WeightsError(
                f"storage {key} of {self.source} is used as both {known.dtype} and "
                f"{storage_class.dtype}."
            )
        self.storages[key] = _StorageRef(key, storage_class.dtype, 0)
        if view is None:
            return self.storages[key]
        # Very old legacy files: (view key, element offset into the root storage, view size).
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int)):
            raise WeightsError(f"malformed storage view {view!r} in {self.source}.")
        return _StorageRef(key, storage_class.dtype, view[1])


def _unpickle(stream: io.BufferedIOBase, source: str, storages: dict[str, _StorageRef]) -> Any:
    """Run the restricted unpickler, turning any parse failure into a WeightsError."""
    try:
        return _RestrictedUnpickler(stream, source, storages).load()
    except WeightsError:
        raise
    except (EOFError, struct.error) as exc:
        raise WeightsError(
            f"{source} ends in the middle of its pickle: the file is truncated. Download it again."
        ) from exc
    except (
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        RecursionError,
        UnicodeDecodeError,
    ) as exc:
        raise WeightsError(
            f"{source} holds a malformed pickle ({type(exc).__name__}: {exc}). The file is "
            f"corrupt or not a torch.save state dict. {_HOW_TO_FIX}"
        ) from exc


def _numpy_dtype(dtype: str, little_endian: bool, source: str) -> np.dtype:
    code = _ELEMENT_TYPES.get(dtype)
    if code is None:
        raise WeightsError(
            f"{source} stores a tensor of type {dtype!r}, which is not supported (float64, "
            "float32, float16, bfloat16 and integer types are)."
        )
    return np.dtype(("<" if little_endian else ">") + code)


def _array_from_storage(
    ref: _TensorRef, raw: bytes, little_endian: bool, name: str, source: str
) -> np.ndarray:
    """Copy the strided view ``ref`` of the storage bytes ``raw`` into a native numpy array."""
    dtype = _numpy_dtype(ref.dtype, little_endian, source)
    count = len(raw) // dtype.itemsize
    if any(n == 0 for n in ref.size):
        array = np.zeros(ref.size, dtype=dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= count:
            # Checked before as_strided, which would otherwise read outside the buffer.
            raise WeightsError(
                f"tensor {name!r} in {source} reaches element {last} of a storage holding "
                f"{count}: the file is corrupt or truncated."
            )
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :],
            shape=ref.size,
            strides=tuple(s * dtype.itemsize for s in ref.stride),
            writeable=False,
        )
        array = np.array(view, order="C")  # a copy: owns its memory, C order
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if ref.dtype == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _select_state_dict(obj: Any, source: str) -> dict[str, _TensorRef]:
    """Find the name -> tensor mapping in an unpickled object (possibly a checkpoint wrapper)."""
    current = obj
    for _ in range(len(_WRAPPER_KEYS) + 1):
        if not isinstance(current, Mapping):
            break
        tensors = {k: v for k, v in current.items() if isinstance(v, _TensorRef)}
        if tensors:
            skipped = [str(k) for k in current if not isinstance(current[k], _TensorRef)]
            if skipped:
                logger.debug("%s: ignored non-tensor entries %s", source, skipped[:5])
            if not all(isinstance(k, str) for k in tensors):
                raise WeightsError(f"{source} has a state dict with non-string keys.")
            return tensors
        inner = next(
            (current[k] for k in _WRAPPER_KEYS if isinstance(current.get(k), Mapping)), None
        )
        if inner is None:
            break
        current = inner
    kind = type(obj).__name__
    keys = list(obj)[:8] if isinstance(obj, Mapping) else []
    raise WeightsError(
        f"{source} holds no state dict of tensors (found a {kind} with keys {keys}; looked inside "
        f"{', '.join(_WRAPPER_KEYS)}). {_HOW_TO_FIX}"
    )


def _materialise(
    obj: Any, raw: Mapping[str, bytes], little_endian: bool, source: str
) -> dict[str, np.ndarray]:
    tensors = _select_state_dict(obj, source)
    state = {}
    for name, ref in tensors.items():
        data = raw.get(ref.storage.key)
        if data is None:
            raise WeightsError(f"{source} lacks the data of storage {ref.storage.key} ({name}).")
        state[name] = _array_from_storage(ref, data, little_endian, name, source)
    return state


def _read_torch_zip(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WeightsError(
            f"{source} starts like a torch.save zip archive but cannot be opened as one ({exc}): "
            "the file is truncated or corrupt. Download it again."
        ) from exc
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            hint = ""
            if any(n.endswith("constants.pkl") for n in names):
                hint = " It looks like a TorchScript model: save model.state_dict() instead."
            raise WeightsError(
                f"{source} is a zip archive but not a torch.save state dict (expected one "
                f"'<folder>/data.pkl', found {pickles or 'none'}).{hint} {_HOW_TO_FIX}"
            )
        prefix = pickles[0][: -len("data.pkl")]
        try:
            order = (
                archive.read(prefix + "byteorder").decode("ascii").strip()
                if prefix + "byteorder" in names
                else "little"  # files from before torch recorded it are little-endian
            )
            storages: dict[str, _StorageRef] = {}
            obj = _unpickle(io.BytesIO(archive.read(pickles[0])), source, storages)
            raw = {}
            for key in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise WeightsError(f"{source} lacks the record {record} its pickle refers to.")
                raw[key] = archive.read(record)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as exc:
            raise WeightsError(
                f"{source}: a record of the zip archive cannot be read ({exc}); the file is "
                "corrupt. Download it again."
            ) from exc
    if order not in ("little", "big"):
        raise WeightsError(f"{source} declares an unknown byte order {order!r}.")
    return _materialise(obj, raw, order == "little", source)


def _read_torch_legacy(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    truncated = f"{source} ends early: the file is truncated. Download it again."
    with open(path, "rb") as stream:
        magic = _unpickle(stream, source, {})
        protocol = _unpickle(stream, source, {})
        sys_info = _unpickle(stream, source, {})
        if magic != _TORCH_LEGACY_MAGIC or protocol != _TORCH_LEGACY_PROTOCOL:
            raise WeightsError(
                f"{source} is not a torch.save legacy file (magic {magic!r}, protocol "
                f"{protocol!r}). {_HOW_TO_FIX}"
            )
        little_endian = not isinstance(sys_info, Mapping) or bool(
            sys_info.get("little_endian", True)
        )
        storages: dict[str, _StorageRef] = {}
        obj = _unpickle(stream, source, storages)
        keys = _unpickle(stream, source, {})
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise WeightsError(f"{source}: malformed storage key list after the pickle.")
        raw = {}
        for key in keys:
            ref = storages.get(key)
            if ref is None:
                raise WeightsError(f"{source} stores data for storage {key} that nothing uses.")
            head = stream.read(8)
            if len(head) < 8:
                raise WeightsError(truncated)
            # Each storage is preceded by its element count, in the file's byte order.
            (count,) = struct.unpack("<q" if little_endian else ">q", head)
            nbytes = count * _numpy_dtype(ref.dtype, little_endian, source).itemsize
            if count < 0:
                raise WeightsError(f"{source}: negative storage size {count}; file corrupt.")
            data = stream.read(nbytes)
            if len(data) < nbytes:
                raise WeightsError(truncated)
            raw[key] = data
    return _materialise(obj, raw, little_endian, source)


# --------------------------------------------------------------------------------------------------
# safetensors and MindSpore checkpoints
# --------------------------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Parse a .safetensors file: u64 header size, JSON header, then one flat byte buffer."""
    source = str(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise WeightsError(f"{source} is too short for a safetensors file: truncated.")
    (header_size,) = struct.unpack("<Q", data[:8])
    if 8 + header_size > len(data):
        raise WeightsError(
            f"{source}: the safetensors header claims {header_size} bytes but the file has "
            f"{len(data)}: the file is truncated. Download it again."
        )
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{source}: unreadable safetensors header ({exc}).") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{source}: the safetensors header is not a JSON object.")
    body = memoryview(data)[8 + header_size :]
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            shape = _int_tuple(shape, "shape")
            if not (isinstance(begin, int) and isinstance(end, int)):
                raise TypeError("data_offsets")
        except (KeyError, TypeError, ValueError, WeightsError) as exc:
            raise WeightsError(
                f"{source}: malformed safetensors entry {name!r}: {info!r}."
            ) from exc
        if dtype_code not in _SAFETENSORS_TYPES:
            raise WeightsError(
                f"{source}: tensor {name!r} has safetensors dtype {dtype_code!r}, which is not "
                f"supported ({', '.join(_SAFETENSORS_TYPES)} are)."
            )
        dtype_name = _SAFETENSORS_TYPES[dtype_code]
        dtype = _numpy_dtype(dtype_name, True, source)
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end <= len(body) or end - begin != expected:
            raise WeightsError(
                f"{source}: tensor {name!r} {shape} needs {expected} bytes but its offsets are "
                f"[{begin}, {end}) in a buffer of {len(body)}: the file is truncated or corrupt."
            )
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        array = array.astype(dtype.newbyteorder("="), copy=True)
        if dtype_name == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        state[name] = array
    return state


def _import_mindspore() -> Any:
    from src.runtime import quiet_mindspore_logs

    quiet_mindspore_logs()
    import mindspore

    return mindspore


def _tensor_to_numpy(value: Any) -> np.ndarray:
    ms = _import_mindspore()
    if value.dtype == ms.bfloat16:  # numpy has no bfloat16
        value = value.astype(ms.float32)
    return np.array(value.asnumpy())


def _read_mindspore_ckpt(path: Path) -> dict[str, np.ndarray]:
    ms = _import_mindspore()
    with tempfile.TemporaryDirectory(prefix="weights-") as folder:
        target = path
        if path.suffix != ".ckpt":
            # mindspore.load_checkpoint insists on the .ckpt extension; detection is by content.
            target = Path(folder) / "weights.ckpt"
            os.symlink(path.resolve(), target)
        try:
            params = ms.load_checkpoint(str(target))
        except Exception as exc:  # MindSpore raises ValueError/RuntimeError/TypeError variously
            raise WeightsError(
                f"{path} looks like a MindSpore checkpoint but cannot be parsed ({exc}). The "
                "file is truncated or corrupt; download it again."
            ) from exc
    state = {}
    for name, value in params.items():
        if isinstance(value, ms.Tensor):
            state[name] = _tensor_to_numpy(value)
        else:  # save_checkpoint(append_dict=...) may hold strings or numbers
            logger.debug("%s: ignored non-tensor entry %s", path, name)
    return state


# --------------------------------------------------------------------------------------------------
# Public reading API
# --------------------------------------------------------------------------------------------------


def _existing_file(path: str | os.PathLike) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise WeightsError(f"backbone weights file {resolved} does not exist. {_HOW_TO_FIX}")
    return resolved


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of a weights file from its first bytes (the extension is not used).

    Returns:
        "torch-zip", "torch-legacy", "safetensors" or "mindspore-ckpt".

    Raises:
        WeightsError: if the file is missing, empty or of no supported format.
    """
    resolved = _existing_file(path)
    with open(resolved, "rb") as stream:
        head = stream.read(16)
    if not head:
        raise WeightsError(f"backbone weights file {resolved} is empty. {_HOW_TO_FIX}")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return FORMAT_TORCH_ZIP
    if head.startswith(_TORCH_LEGACY_PREFIX):
        return FORMAT_TORCH_LEGACY
    if len(head) >= 9 and head[8:9] == b"{":
        # A little-endian u64 header size; sane sizes only, so random bytes are not taken for it.
        (header_size,) = struct.unpack("<Q", head[:8])
        if header_size < 1 << 30:
            return FORMAT_SAFETENSORS
    if head[0] == 0x0A:
        # MindSpore's Checkpoint protobuf: field 1 (repeated value), length-delimited.
        return FORMAT_MINDSPORE
    hint = ""
    if head[:1] == b"\x80":
        hint = " It is a bare pickle, not a torch.save file; re-save it with torch.save."
    raise WeightsError(
        f"cannot read backbone weights {resolved}: its content (first bytes {head[:8].hex()}) is "
        "none of the supported formats: MindSpore .ckpt, torch.save .pth (zip or legacy), "
        f".safetensors.{hint} {_HOW_TO_FIX}"
    )


_READERS = {
    FORMAT_TORCH_ZIP: _read_torch_zip,
    FORMAT_TORCH_LEGACY: _read_torch_legacy,
    FORMAT_SAFETENSORS: _read_safetensors,
    FORMAT_MINDSPORE: _read_mindspore_ckpt,
}


def _read_with_format(path: str | os.PathLike) -> tuple[Path, str, dict[str, np.ndarray]]:
    resolved = _existing_file(path)
    fmt = detect_format(resolved)
    state = _READERS[fmt](resolved)
    if not state:
        raise WeightsError(f"{resolved} ({fmt}) holds no tensors. {_HOW_TO_FIX}")
    return resolved, fmt, state


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a weights file, in any supported format, without torch.

    Args:
        path: a MindSpore .ckpt, a torch.save .pth (zip or legacy; a bare state dict or one
            wrapped under "state_dict"/"model") or a .safetensors file. The format is detected
            from the content.

    Returns:
        name -> array, names exactly as stored in the file. bfloat16 tensors are widened to
        float32; other dtypes are kept; arrays are C-contiguous, native byte order, writable.

    Raises:
        WeightsError: missing, truncated, corrupt or unsupported file, or a pickle that asks for
            anything but state-dict globals.
    """
    return _read_with_format(path)[2]


def _backbone_prefix(names: Iterable[str]) -> str:
    """The prefix in front of the backbone's names ("" if none), e.g. "network." or "module.".

    The stem convolution ``conv1.weight`` exists in every file we accept, so whatever precedes a
    stage-free ``...conv1.weight`` is a candidate. With several candidates (an optimizer copy
    such as "moments.network.") the one carried by the most entries wins, then the shortest.
    """
    names = list(names)
    candidates = {
        name[: -len(_STEM_WEIGHT)]
        for name in names
        if name.endswith(_STEM_WEIGHT)
        and (name == _STEM_WEIGHT or name[: -len(_STEM_WEIGHT)].endswith("."))
        and not _STAGE_IN_PREFIX.search(name[: -len(_STEM_WEIGHT)])
    }
    if not candidates:
        return ""
    return min(candidates, key=lambda p: (-sum(n.startswith(p) for n in names), len(p), p))


def to_backbone_names(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map torchvision/timm (or prefixed MindSpore) names to the backbone's parameter names.

    - strips the prefix in front of the backbone (e.g. "network.", "module.", "backbone.");
      entries without it keep their names (they end up as extras);
    - drops BatchNorm ``num_batches_tracked`` counters;
    - renames weight/bias/running_mean/running_var to gamma/beta/moving_mean/moving_variance,
      only for BatchNorm modules: those with a ``running_mean`` entry, or named ``bn<k>`` /
      ``downsample.1`` with 1-D weights. Convolutions and ``fc`` keep their names. MindSpore
      names pass through unchanged.

    Args:
        state: name -> array as read by :func:`read_weights`.

    Returns:
        new dict name -> the same arrays (not copied).

    Raises:
        WeightsError: if two entries map to the same name.
    """
    prefix = _backbone_prefix(state)
    stripped: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if name.rsplit(".", 1)[-1] == "num_batches_tracked":
            continue
        stripped[name[len(prefix) :] if prefix and name.startswith(prefix) else name] = value
    bn_modules = {n[: -len(".running_mean")] for n in stripped if n.endswith(".running_mean")}
    renamed: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for name, value in stripped.items():
        module, _, leaf = name.rpartition(".")
        target = name
        if leaf in _BN_SUFFIXES and (
            module in bn_modules or (_BN_MODULE.search(module) and np.ndim(value) == 1)
        ):
            target = f"{module}.{_BN_SUFFIXES[leaf]}"
        if target in renamed:
            raise WeightsError(
                f"two entries of the weights file map to {target!r} ({sources[target]!r} and "
                f"{name!r}); the file mixes naming schemes. Convert it with "
                "scripts/convert_weights.py from an original file."
            )
        renamed[target] = value
        sources[target] = name
    return renamed


# --------------------------------------------------------------------------------------------------
# Loading into the network
# --------------------------------------------------------------------------------------------------


def _listing(items: Sequence[str]) -> str:
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {shown}{more}"


def _assign(network: nn.Cell, state: Mapping[str, np.ndarray], source: str) -> list[str]:
    """Set every network parameter from ``state`` after checking all of them; return extras.

    Raises:
        WeightsError: listing every missing, mis-shaped, non-float or non-finite entry; the
            network is left unchanged then.
    """
    ms = _import_mindspore()
    params = dict(network.parameters_and_names())
    missing = [name for name in params if name not in state]
    misshaped = [
        f"{name}: file {tuple(state[name].shape)}, network {tuple(param.shape)}"
        for name, param in params.items()
        if name in state and tuple(state[name].shape) != tuple(param.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} parameters missing from the file:{_listing(missing)}")
    if misshaped:
        problems.append(f"{len(misshaped)} parameters with the wrong shape:{_listing(misshaped)}")
    if problems:
        raise WeightsError(
            f"{source} does not match the backbone ({len(params)} parameters, e.g. "
            f"{next(iter(params))}): " + "; ".join(problems) + ". The file must hold the "
            "same architecture as backbone.* in the config (WideResNet-50-2 for the released "
            f"weights) up to the deepest layer used. {_HOW_TO_FIX}"
        )
    values = {}
    bad = []
    for name, param in params.items():
        value = state[name]
        if value.dtype.kind != "f":
            bad.append(f"{name}: dtype {value.dtype}")
            continue
        value = np.ascontiguousarray(value, dtype=ms.dtype_to_nptype(param.dtype))
        if not np.isfinite(value).all():
            bad.append(f"{name}: non-finite values")
        values[name] = value
    if bad:
        raise WeightsError(f"{source} has unusable entries:{_listing(bad)}. {_HOW_TO_FIX}")
    for name, param in params.items():
        param.set_data(ms.Tensor(values[name]))
    return sorted(set(state) - set(params))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_fingerprint(network: nn.Cell) -> str:
    """sha256 over the network's parameters: name, shape, dtype and bytes, in sorted name order.

    Any changed value, name, shape or dtype changes it; saving and reloading does not. Each field
    is length-prefixed so that no two different parameter sets hash the same byte stream.

    Args:
        network: any MindSpore cell.

    Returns:
        64 hex characters.
    """
    digest = hashlib.sha256()
    for name, param in sorted(network.parameters_and_names(), key=lambda item: item[0]):
        value = np.ascontiguousarray(_tensor_to_numpy(param))
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        for field in (
            name.encode("utf-8"),
            repr(tuple(value.shape)).encode("ascii"),
            value.dtype.str.encode("ascii"),
            value.tobytes(),
        ):
            digest.update(struct.pack("<Q", len(field)))
            digest.update(field)
    return digest.hexdigest()


def load_backbone_weights(network: nn.Cell, path: str | os.PathLike) -> LoadReport:
    """Load a weights file (any supported format) into the backbone, strictly.

    Every parameter of ``network`` must be in the file with the right shape; extra entries are
    ignored and reported in one log line. The file's sha256 is compared with KNOWN_RELEASES.

    Args:
        network: the backbone, e.g. ``WideResNet(out_layers=("layer2", "layer3"))``; it only
            has the stages up to its deepest output, so only those are required.
        path: weights file (see :func:`read_weights`).

    Returns:
        LoadReport with the format, sha256, known release, counts and fingerprint.

    Raises:
        WeightsError: unreadable file (see :func:`read_weights`), or missing / mis-shaped /
            non-float / non-finite entries (all listed; the network is then left unchanged).
    """
    resolved, fmt, raw = _read_with_format(path)
    sha256 = file_sha256(resolved)
    release = KNOWN_RELEASES.get(sha256)
    extra = _assign(network, to_backbone_names(raw), str(resolved))
    loaded = len(list(network.parameters_and_names()))
    if extra:
        logger.info(
            "backbone weights: ignored %d entries of %s that the backbone does not use (%s%s)",
            len(extra),
            resolved.name,
            ", ".join(extra[:4]),
            ", ..." if len(extra) > 4 else "",
        )
    fingerprint = weights_fingerprint(network)
    logger.info(
        "backbone weights: loaded %d parameters from %s (%s, sha256 %s), fingerprint %s",
        loaded,
        resolved,
        fmt,
        sha256,
        fingerprint,
    )
    if release is not None:
        logger.info("backbone weights: %s is a known release: %s", resolved.name, release)
    return LoadReport(
        path=Path(path),
        format=fmt,
        sha256=sha256,
        release=release,
        loaded=loaded,
        extra_names=tuple(extra),
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------


def _infer_architecture(
    state: Mapping[str, np.ndarray], deepest: str, source: str
) -> tuple[tuple[int, ...], int, int]:
    """(depths, width_per_group, stem_channels) of the ResNet stored in ``state``.

    Stages deeper than ``deepest`` are not built, so their depth is reported as 1.
    """
    stem = state.get(_STEM_WEIGHT)
    first = state.get("layer1.0.conv1.weight")
    if stem is None or first is None or stem.ndim != 4 or first.ndim != 4:
        raise WeightsError(
            f"{source} does not hold a torchvision-style ResNet (no 4-D conv1.weight / "
            f"layer1.0.conv1.weight after renaming; first names: {sorted(state)[:6]}). "
            f"{_HOW_TO_FIX}"
        )
    stem_channels = int(stem.shape[0])
    # layer1's bottleneck width is planes * width_per_group / 64 with planes == stem channels.
    width_per_group = int(first.shape[0]) * 64 // stem_channels
    depths = []
    for index, stage in enumerate(STAGE_NAMES):
        blocks = {int(m.group(1)) for n in state if (m := re.match(rf"{stage}\.(\d+)\.", n))}
        if index > STAGE_NAMES.index(deepest):
            depths.append(1)
        elif not blocks:
            raise WeightsError(
                f"{source} has no {stage} entries, so it cannot provide the stages up to "
                f"{deepest}. Convert with --layers naming only stages the file has."
            )
        else:
            depths.append(max(blocks) + 1)
    return tuple(depths), width_per_group, stem_channels


def convert_weights(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layers: Sequence[str] = STAGE_NAMES,
) -> Path:
    """Convert a weights file to a MindSpore .ckpt holding exactly the backbone's parameters.

    The architecture (depths, width, stem) is read off the file, the backbone up to the deepest
    of ``layers`` is built and loaded strictly, and its parameters are saved in network order
    as float32. fc, deeper stages, num_batches_tracked and any other entries are left out.
    The file is written to a temporary name in the destination folder and then renamed, so
    ``dst`` is either the old file or the complete new one.

    Args:
        src: any file :func:`read_weights` accepts.
        dst: output path (conventionally ``*.ckpt``); its folder is created if needed.
        layers: stages PatchCore will read; the stem and every stage up to the deepest are kept.

    Returns:
        ``dst`` as a Path.

    Raises:
        ConfigError: if ``layers`` names no stage or an unknown one.
        WeightsError: unreadable source, or one that lacks the requested stages.
    """
    unknown = [name for name in layers if name not in STAGE_NAMES]
    if not layers or unknown:
        raise ConfigError(
            f"layers must name stages among {', '.join(STAGE_NAMES)}; got {list(layers)!r}."
        )
    deepest = max(layers, key=STAGE_NAMES.index)
    source, fmt, raw = _read_with_format(src)
    state = to_backbone_names(raw)
    depths, width_per_group, stem_channels = _infer_architecture(state, deepest, str(source))

    ms = _import_mindspore()
    from src.models.backbone import WideResNet

    network = WideResNet(
        out_layers=(deepest,),
        depths=depths,
        width_per_group=width_per_group,
        stem_channels=stem_channels,
    )
    extra = _assign(network, state, str(source))
    params = [{"name": name, "data": param} for name, param in network.parameters_and_names()]

    target = Path(dst).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    # save_checkpoint appends ".ckpt" to names without it, so the temporary name ends with it.
    partial = target.parent / f".{target.name}.{os.getpid()}.partial.ckpt"
    try:
        ms.save_checkpoint(params, str(partial))
        os.replace(partial, target)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WeightsError(f"cannot write {target}: {exc}") from exc
        raise
    logger.info(
        "converted %s (%s; depths %s, width_per_group %d, stem %d) -> %s: %d parameters up to "
        "%s, %d entries left out, fingerprint %s",
        source,
        fmt,
        depths[: STAGE_NAMES.index(deepest) + 1],
        width_per_group,
        stem_channels,
        target,
        len(params),
        deepest,
        len(extra),
        weights_fingerprint(network),
    )
    return target
