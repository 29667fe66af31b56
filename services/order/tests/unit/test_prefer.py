import pytest

from order.api.prefer import requested_wait


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        (["wait=10"], 10.0),
        (["WAIT = 7"], 7.0),
        (['wait="3"'], 3.0),
        (["respond-async, wait=5"], 5.0),
        (["respond-async", "wait=4"], 4.0),
        (["wait=2; foo=bar"], 2.0),
        (["wait=0"], 0.0),
        (["wait=31"], 30.0),
        (["wait=" + "9" * 5000], 30.0),
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait=abc"], None),
        (["wait="], None),
        (["wait"], None),
        (["wait=١٢"], None),  # non-ASCII digits
        (["handling=lenient"], None),
        (["wait=abc, wait=6"], 6.0),
        (["waiting=5"], None),
    ],
)
def test_the_wait_preference_is_parsed_leniently_and_clamped(
    headers: list[str], expected: float | None
) -> None:
    assert requested_wait(headers, 30.0) == expected
