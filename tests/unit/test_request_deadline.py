"""The request deadline (SPEC §4): the smaller of the Lambda's time left and HTTP API's 30 s from the
request's arrival, less a margin; an arrival time no gateway could be waiting on is no arrival time."""

from dnd_rag.logic.common.clock import seconds_to_answer

NOW = 1_796_400_000.0


def test_a_request_that_arrived_20_s_ago_has_what_the_gateway_still_waits():
    assert seconds_to_answer(29.0, NOW - 20, NOW, margin=3.0) == 30 - 20 - 3


def test_a_fresh_request_has_what_the_lambda_has_left():
    assert seconds_to_answer(12.0, NOW - 1, NOW, margin=3.0) == 12 - 3


def test_no_arrival_time_or_one_in_seconds_as_sam_local_sends_it_leaves_the_lambda_s_time():
    assert seconds_to_answer(29.0, None, NOW, margin=3.0) == 26
    assert seconds_to_answer(29.0, NOW / 1000, NOW, margin=3.0) == 26  # timeEpoch in s read as ms
    assert seconds_to_answer(29.0, NOW + 3600, NOW, margin=3.0) == 26
