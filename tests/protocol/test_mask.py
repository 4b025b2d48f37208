"""Masking (RFC 6455, section 5.3): the compiled ``_speedups`` and the pure-Python ``_mask``.

One test class runs against both implementations, so neither can drift. Without a
built extension its half of the class skips with a reason; the suite's conftest turns
that skip into a failure in CI.
"""

from __future__ import annotations

import importlib
import itertools
import operator
import os
import random
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openline.protocol import _mask, mask

ApplyMask = Callable[..., bytes]

SPEEDUPS_MODULE = "openline.protocol._speedups"
MISSING_SPEEDUPS = (
    "the C extension openline.protocol._speedups is not built "
    "(run: python setup.py build_ext --inplace)"
)
KEY = b"\x37\xfa\x21\x3d"
KiB = 1024
MiB = 1024 * KiB

keys = st.binary(min_size=4, max_size=4)
payloads = st.binary(max_size=300)


def import_speedups() -> ModuleType:
    try:
        return importlib.import_module(SPEEDUPS_MODULE)
    except ImportError:
        pytest.skip(MISSING_SPEEDUPS)


def xor_bytewise(data: bytes, key: bytes) -> bytes:
    """The obvious definition from section 5.3, independent of both implementations."""
    return bytes(map(operator.xor, data, itertools.cycle(key)))


# Module scope: hypothesis refuses function-scoped fixtures in @given tests.
@pytest.fixture(scope="module", params=["_mask", "_speedups"])
def apply_mask(request: pytest.FixtureRequest) -> ApplyMask:
    if request.param == "_mask":
        return _mask.apply_mask
    compiled: ApplyMask = import_speedups().apply_mask
    return compiled


class TestApplyMask:
    def test_rfc_6455_example_masks_hello(self, apply_mask: ApplyMask) -> None:
        # Section 5.7: a masked text frame containing "Hello".
        assert apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")

    def test_empty_payload_gives_empty_bytes(self, apply_mask: ApplyMask) -> None:
        assert apply_mask(b"", KEY) == b""

    @pytest.mark.parametrize("size", range(1, 18))
    def test_every_length_modulo_eight_matches_bytewise_xor(
        self, apply_mask: ApplyMask, size: int
    ) -> None:
        data = bytes(range(100, 100 + size))
        assert apply_mask(data, KEY) == xor_bytewise(data, KEY)

    @pytest.mark.parametrize("size", [1 * MiB, 16 * MiB], ids=["1MiB", "16MiB"])
    def test_large_payload_matches_bytewise_xor(self, apply_mask: ApplyMask, size: int) -> None:
        # 256 is a multiple of the key length, so the result repeats every 256 bytes
        # and the reference stays cheap while every position is still checked.
        period = bytes(range(256))
        result = apply_mask(period * (size // 256), KEY)
        assert result == xor_bytewise(period, KEY) * (size // 256)

    @pytest.mark.parametrize("size", [1 * MiB, 16 * MiB], ids=["1MiB", "16MiB"])
    def test_large_random_payload_round_trips(self, apply_mask: ApplyMask, size: int) -> None:
        data = random.Random(size).randbytes(size)
        masked = apply_mask(data, KEY)
        assert masked == _mask.apply_mask(data, KEY)
        assert apply_mask(masked, KEY) == data

    def test_result_is_bytes_for_bytearray_input(self, apply_mask: ApplyMask) -> None:
        data = bytearray(b"Hello")
        result = apply_mask(data, KEY)
        assert type(result) is bytes
        assert result == bytes.fromhex("7f9f4d5158")
        assert data == b"Hello"

    def test_result_is_bytes_for_memoryview_input(self, apply_mask: ApplyMask) -> None:
        result = apply_mask(memoryview(b"Hello"), KEY)
        assert type(result) is bytes
        assert result == bytes.fromhex("7f9f4d5158")

    @pytest.mark.parametrize("offset", range(1, 9))
    def test_unaligned_memoryview_slice_matches_bytewise_xor(
        self, apply_mask: ApplyMask, offset: int
    ) -> None:
        buffer = bytes(range(256))
        data = memoryview(buffer)[offset : offset + 100]
        assert apply_mask(data, KEY) == xor_bytewise(buffer[offset : offset + 100], KEY)

    def test_accepts_keyword_arguments(self, apply_mask: ApplyMask) -> None:
        assert apply_mask(data=b"Hello", mask=KEY) == bytes.fromhex("7f9f4d5158")

    @pytest.mark.parametrize("size", [0, 3, 5])
    def test_mask_of_wrong_length_raises_value_error(
        self, apply_mask: ApplyMask, size: int
    ) -> None:
        with pytest.raises(ValueError, match=rf"^mask must be 4 bytes, got {size} bytes$"):
            apply_mask(b"Hello", bytes(size))

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((b"", KEY, b""), {}),
            ((b"",), {}),
            ((), {}),
            ((b"",), {"data": b""}),
            ((b"", KEY), {"key": KEY}),
            (("text", KEY), {}),
        ],
        ids=["too-many", "missing-mask", "missing-both", "duplicate", "unknown-keyword", "str"],
    )
    def test_bad_arguments_raise_type_error(
        self, apply_mask: ApplyMask, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> None:
        with pytest.raises(TypeError):
            apply_mask(*args, **kwargs)

    @given(data=payloads, key=keys)
    def test_random_data_matches_both_references(
        self, apply_mask: ApplyMask, data: bytes, key: bytes
    ) -> None:
        result = apply_mask(data, key)
        assert result == xor_bytewise(data, key)
        assert result == _mask.apply_mask(data, key)

    @given(data=payloads, key=keys)
    def test_masking_twice_is_the_identity(
        self, apply_mask: ApplyMask, data: bytes, key: bytes
    ) -> None:
        assert apply_mask(apply_mask(data, key), key) == data


class TestImplementationChoice:
    def test_mask_module_uses_speedups_when_built(self) -> None:
        speedups = import_speedups()
        if os.environ.get(mask.ENV_VAR, "") not in ("", "0"):
            # The pure-Python pass of CI forces the fallback even where it is built.
            assert mask.SPEEDUPS is False
            assert mask.apply_mask is _mask.apply_mask
            return
        assert mask.SPEEDUPS is True
        assert mask.apply_mask is speedups.apply_mask

    def test_mask_module_falls_back_to_pure_python(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A None entry in sys.modules makes the import raise ImportError.
        monkeypatch.setitem(sys.modules, SPEEDUPS_MODULE, None)
        try:
            fallback = importlib.reload(mask)
            assert fallback.SPEEDUPS is False
            assert fallback.apply_mask is _mask.apply_mask
        finally:
            monkeypatch.undo()
            importlib.reload(mask)
