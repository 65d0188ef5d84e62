"""A file's output record id: derived from its input's, never one `new_id` makes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imagecore.model import is_object_id, new_id, paired_record_id

ANY_ID = st.binary(min_size=12, max_size=12).map(bytes.hex)


@given(ANY_ID)
def test_the_pair_map_is_its_own_inverse_and_never_the_same_id(record_id: str) -> None:
    paired = paired_record_id(record_id)
    assert is_object_id(paired)
    assert paired != record_id
    assert paired_record_id(paired) == record_id


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_an_output_id_keeps_its_time_and_is_no_id_new_id_makes(seconds: int) -> None:
    made = {new_id(seconds) for _ in range(64)}
    outputs = {paired_record_id(i) for i in made}
    assert not made & outputs
    assert {o[:8] for o in outputs} == {i[:8] for i in made}
    # The bit that tells them apart: set in every output id, clear in every new id.
    assert all(int(o[8], 16) >= 8 for o in outputs)
    assert all(int(i[8], 16) < 8 for i in made)
