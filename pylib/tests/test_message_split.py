"""mtapy.testing.split_message() splits every message of tests/vectors/message-split.txt.

The same vectors pin mtapyctl's C++ split (workerd/ctl/message-split-test.c++) and are checked
against Exim 4.96 itself by tests/exim/test_exim_message_split.py.
"""

import pathlib
import sys

import pytest

from mtapy.testing import split_message

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "vectors"))
from message_split_vectors import cases  # noqa: E402

CASES = cases()


def test_the_vectors_cover_the_cases_that_matter():
    assert len(CASES) >= 20 and any(b"\r\n" in case.raw for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_split_message_splits_as_exim_does(case):
    headers, offset = split_message(case.raw)
    assert (headers, case.raw[offset:]) == (case.headers, case.body)
