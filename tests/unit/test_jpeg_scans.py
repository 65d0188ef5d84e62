"""A progressive JPEG decodes at 1/8 scale from its DC scans to the whole file's pixels."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
import pyvips
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.vips.jpeg_scans import dc_scans_only
from corpus import CORPUS, needs_corpus

NONE = pyvips.enums.ForeignKeep.NONE


def noise(width: int, height: int) -> pyvips.Image:
    """Three bands of seeded noise over a gradient: every coefficient band carries data."""
    ramp = pyvips.Image.xyz(width, height)[0].linear(200 / max(width, 1), 20)
    bands = [ramp + pyvips.Image.gaussnoise(width, height, sigma=30, seed=s) for s in (1, 2, 3)]
    return bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")


def progressive(image: pyvips.Image, **options: object) -> bytes:
    return bytes(image.jpegsave_buffer(Q=85, interlace=True, keep=NONE, **options))


def at_one_eighth(data: bytes) -> bytes:
    """The pixels libjpeg gives at 1/8 scale; any libjpeg warning is an error."""
    image = pyvips.Image.jpegload_buffer(data, shrink=8, fail_on="warning")
    return bytes(image.write_to_memory())


SAMPLES = {
    "4:4:4": progressive(noise(1001, 667), subsample_mode="off"),
    "4:2:0": progressive(noise(1001, 667), subsample_mode="on"),
    "grey": progressive(noise(333, 77).colourspace("b-w")),
    "cmyk": progressive(noise(97, 61).colourspace("cmyk")),
    "optimised scans": progressive(noise(640, 480), optimize_scans=True, subsample_mode="off"),
    "17x9 pixels": progressive(noise(17, 9), subsample_mode="off"),
    "one block": progressive(noise(8, 8), subsample_mode="off"),
    "nine pixels": progressive(noise(9, 9), subsample_mode="on"),
    "40000 blocks": progressive(noise(1600, 1600), subsample_mode="off"),
}
PROGRESSIVE_PHOTOS = [
    CORPUS / "large" / "volna-5120x2880.jpg",  # 4:4:4
    CORPUS / "photos" / "colorfulcups-2560x1600.jpg",  # 4:2:2: its chroma keeps its scans
]


@pytest.mark.parametrize("name", SAMPLES)
def test_the_dc_scans_give_the_pixels_of_the_whole_file(name: str) -> None:
    data = SAMPLES[name]
    reduced = dc_scans_only(data)
    assert reduced is not None
    assert len(reduced) < len(data)
    assert at_one_eighth(reduced) == at_one_eighth(data)


@needs_corpus
@pytest.mark.parametrize("photo", PROGRESSIVE_PHOTOS, ids=lambda p: p.stem)
def test_progressive_corpus_photos_lose_most_of_their_bytes_and_none_of_their_pixels(
    photo: Path,
) -> None:
    data = photo.read_bytes()
    reduced = dc_scans_only(data)
    assert reduced is not None
    assert len(reduced) < len(data) / 2
    assert at_one_eighth(reduced) == at_one_eighth(data)


def test_only_the_ac_scans_of_full_resolution_components_go() -> None:
    # 4:2:0: the chroma is decoded with a 2x2 IDCT at 1/8 scale and needs its AC
    # coefficients, so only the luma's (component 1) AC scans can go.
    data = SAMPLES["4:2:0"]
    reduced = dc_scans_only(data)
    assert reduced is not None
    before = [_scan(unit) for unit in _units(data)[1]]
    after = [_scan(unit) for unit in _units(reduced)[1]]
    zero_luma = Scan(frozenset({1}), 1, 63, 0, 0)
    assert after == [s for s in before if s.first == 0 or s.components != {1}] + [zero_luma]


@attrs.frozen
class Scan:
    components: frozenset[int]
    first: int
    last: int
    high: int  # Ah
    low: int  # Al


_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _units(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """The file as (head, scans, end): each scan with the tables sent just before it."""
    units: list[bytes] = []
    head = pending = b""
    at = 2
    while data[at + 1] != 0xD9:
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if data[at + 1] == 0xDA:
            end = _NEXT_MARKER.search(data, end).start()
            units.append(pending + data[at:end])
            pending = b""
        elif units:
            pending += data[at:end]
        else:
            head += data[at:end]
        at = end
    return data[:2] + head, units, pending + data[at:]


def _scan(unit: bytes) -> Scan:
    at = unit.find(b"\xff\xda") + 4
    count = unit[at]
    components = frozenset(unit[at + 1 + 2 * i] for i in range(count))
    first, last, approximation = unit[at + 1 + 2 * count : at + 4 + 2 * count]
    return Scan(components, first, last, approximation >> 4, approximation & 0x0F)


def _without_last_scan(data: bytes) -> bytes:
    head, units, end = _units(data)
    return head + b"".join(units[:-1]) + end


def _completed_by_a_two_bit_refinement(data: bytes) -> bytes:
    """A band refined from Al=2 straight to Al=0 (libjpeg refuses a refinement of two bits)."""
    head, units, end = _units(data)
    two = next(i for i, u in enumerate(units) if (_scan(u).high, _scan(u).low) == (2, 1))
    twice = attrs.evolve(_scan(units[two]), high=1, low=0)
    edited = bytearray(units[two])
    sos = edited.find(b"\xff\xda")
    edited[sos + 7 + 2 * edited[sos + 4]] = 0x20  # Ah=2, Al=0
    units[two] = bytes(edited)
    units = [u for u in units if _scan(u) != twice]
    return head + b"".join(units) + end


def _refinement_skipped(data: bytes) -> bytes:
    """The Ah=2 -> Al=1 refinement of a band left out: the next one refines from the wrong bit."""
    head, units, end = _units(data)
    units = [u for u in units if (_scan(u).high, _scan(u).low) != (2, 1)]
    return head + b"".join(units) + end


def _sent_from_bit_14(data: bytes) -> bytes:
    """A chroma AC band sent at Al=14 (libjpeg takes at most 13), then refined bit by bit to 0.

    Only the headers matter to the rewrite; the refinement scans carry one byte of data.
    """
    head, units, end = _units(data)
    component = next(iter(_scan(units[-1]).components))
    units = [u for u in units if _scan(u).first == 0 or _scan(u).components != {component}]

    def scan(high: int, low: int) -> bytes:
        return bytes([0xFF, 0xDA, 0, 8, 1, component, 0x11, 1, 63, high << 4 | low, 0])

    refinements = [scan(high, high - 1) for high in range(14, 0, -1)]
    return head + b"".join(units) + scan(0, 14) + b"".join(refinements) + end


def _ac_before_dc(data: bytes) -> bytes:
    """The first AC scan moved ahead of the DC scan (libjpeg warns of the progression)."""
    head, units, end = _units(data)
    first_ac = next(i for i, u in enumerate(units) if _scan(u).first > 0)
    units.insert(0, units.pop(first_ac))
    return head + b"".join(units) + end


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("baseline", bytes(noise(64, 64).jpegsave_buffer(keep=NONE))),
        ("cut in the last scan", SAMPLES["4:4:4"][:-100]),
        ("cut before its end marker", SAMPLES["4:4:4"][:-2]),
        ("cut in a table", SAMPLES["4:4:4"][:30]),
        ("a band never sent", _without_last_scan(SAMPLES["4:4:4"])),
        ("arithmetic coding", SAMPLES["4:4:4"].replace(b"\xff\xc2", b"\xff\xca", 1)),
        ("a refinement of two bits", _completed_by_a_two_bit_refinement(SAMPLES["4:4:4"])),
        ("an AC scan before its DC", _ac_before_dc(SAMPLES["4:4:4"])),
        ("a refinement skipped", _refinement_skipped(SAMPLES["4:4:4"])),
        ("a band sent from bit 14", _sent_from_bit_14(SAMPLES["4:4:4"])),
        ("no JPEG at all", b"GIF89a" + bytes(100)),
        ("empty", b""),
    ],
)
def test_anything_but_a_whole_progressive_huffman_jpeg_is_left_alone(
    name: str, data: bytes
) -> None:
    assert dc_scans_only(data) is None, name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(["4:4:4", "4:2:0", "optimised scans"]),
    edits=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.integers(0, 255), st.booleans()), min_size=1, max_size=3
    ),
)
def test_a_damaged_file_is_left_alone_or_still_decodes_to_the_same_pixels(
    sample: str, edits: list[tuple[float, int, bool]]
) -> None:
    data = bytearray(SAMPLES[sample])
    for where, value, cut in edits:
        at = 2 + int(where * max(0, len(data) - 3))
        if at >= len(data):
            continue
        if cut:
            del data[at:]
        else:
            data[at] = value
    reduced = dc_scans_only(bytes(data))
    if reduced is None:
        event("left alone")
        return
    try:
        whole = at_one_eighth(bytes(data))
    except pyvips.Error:
        event("rewritten; libjpeg refuses the damaged whole file")
        return
    event("rewritten; compared")
    assert at_one_eighth(reduced) == whole
