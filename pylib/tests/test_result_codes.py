"""The result codes of mtapy.result_codes are those of workerd/worker/result-codes.h.

Names are compared without case and underscores (kScanTempReject is SCAN_TEMPREJECT), so a
constant added, renamed or renumbered on one side only fails here.
"""

import pathlib
import re

from mtapy import result_codes

HEADER = pathlib.Path(__file__).resolve().parents[2] / "workerd" / "worker" / "result-codes.h"


def normal(name):
    return name.replace("_", "").upper()


def cpp_codes():
    """{normalised name: value} of every `constexpr int kName = N;` in result-codes.h."""
    found = re.findall(r"constexpr int k(\w+) = (\d+);", HEADER.read_text())
    return {normal(name): int(value) for name, value in found}


def python_codes():
    """{normalised name: value} of every constant in mtapy.result_codes."""
    return {normal(name): value for name, value in vars(result_codes).items() if name.isupper()}


def test_python_and_cpp_name_the_same_codes_with_the_same_values():
    assert len(cpp_codes()) >= 7  # the pattern still finds the constants
    assert python_codes() == cpp_codes()

