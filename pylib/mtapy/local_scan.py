"""mtapy.local_scan - run one message through an elspy-style local_scan() policy.

DESCRIPTION  mtapy._worker calls run() for each Exim local_scan request. run() builds elspy's
             EximInfo and HeaderList from what C++ decoded, calls
             ``policy.local_scan(info, headers, fd)``, and turns the outcome into a plain
             tuple (all bytes and ints, so the C++ side stays small):
               (verdict, message, add_recipients, remove_recipients,
                add_headers, remove_headers, traceback)
             verdict    ACCEPT 0 (return normally or AcceptMessage), REJECT 1 (RejectMessage
                        and subclasses: 550), TEMPREJECT 2 (TempRejectMessage: 451),
                        FAILURE 3 (any other exception: the pool's on_error action).
             message    the verdict's text; on accept, AcceptMessage's text ($local_scan_data);
                        on failure b"ExcType: text".
             recipients bytes addresses: the difference between info.recipients_list before
                        and after the call (as multisets, in list order). Exim applies them
                        with receive_remove_recipient / receive_add_recipient.
             headers    add_headers: full lines b"Name: value" without the final newline,
                        possibly folded with b"\\n " inside; remove_headers: names of received
                        headers to drop. Apply removals first, then additions.
             traceback  on failure, the formatted traceback without run()'s own frame.
             Changes are returned only with ACCEPT; a reject or failure returns empty lists.
DIAGNOSTICS  run() never raises: a bad policy, a bad return, a recipient that is not a string,
             even sys.exit() in the policy, all become FAILURE with a traceback.
SEE ALSO     elspy/ (the API the policy sees), mtapy/result_codes.py, mtapy/testing.py,
             README.md ("Whole messages", the contract for policy authors)
"""

import sys
import traceback
from collections import Counter
from typing import Any, Callable, Iterable, List, Sequence, Tuple

from elspy.headers import HeaderList
from elspy.info import EximInfo
from elspy.verdicts import (
    AcceptMessage,
    MessageDisposition,
    RejectMessage,
    TempRejectMessage,
    verdict_text,
)
from mtapy.result_codes import SCAN_ACCEPT as ACCEPT
from mtapy.result_codes import SCAN_FAILURE as FAILURE
from mtapy.result_codes import SCAN_REJECT as REJECT
from mtapy.result_codes import SCAN_TEMPREJECT as TEMPREJECT

VERDICT_NAMES = {ACCEPT: "accept", REJECT: "reject", TEMPREJECT: "tempreject", FAILURE: "failure"}

Outcome = Tuple[int, bytes, List[bytes], List[bytes], List[bytes], List[bytes], str]


def run(policy: Any, info: dict, headers: Sequence[bytes], fd: int) -> Outcome:
    """Call policy.local_scan(info, headers, fd) and return the outcome tuple; never raises."""
    try:
        scan = entry_point(policy)
        info_obj = EximInfo(info)
        header_obj = HeaderList(headers)
        before = list(info_obj.recipients_list)
        try:
            result = scan(info_obj, header_obj, fd)
        except MessageDisposition as verdict:
            result = verdict
        return outcome(result, before, info_obj, header_obj)
    except BaseException:  # even sys.exit() in a policy is its failure, not the worker's end
        return failure()


def entry_point(policy: Any) -> Callable[..., Any]:
    """The policy's local_scan, or the policy itself if it is a plain callable."""
    scan = getattr(policy, "local_scan", None)
    if scan is None and callable(policy) and not isinstance(policy, type(sys)):
        scan = policy
    if not callable(scan):
        name = getattr(policy, "__file__", None) or repr(policy)
        raise LookupError(f"the policy {name} defines no callable local_scan(info, headers, fd)")
    return scan


def verdict_code(verdict: MessageDisposition) -> int:
    """The verdict code for a raised (or returned) verdict exception."""
    if isinstance(verdict, TempRejectMessage):
        return TEMPREJECT
    if isinstance(verdict, RejectMessage):
        return REJECT
    if isinstance(verdict, AcceptMessage):
        return ACCEPT
    raise TypeError(f"{type(verdict).__name__} is not a verdict; raise a subclass")


def outcome(result: Any, before: List[str], info: EximInfo, headers: HeaderList) -> Outcome:
    """The tuple for a scan that ended with `result` (a verdict or a plain return value)."""
    code, message = ACCEPT, b""
    if isinstance(result, MessageDisposition):
        code, message = verdict_code(result), verdict_text(result) or b""
    if code != ACCEPT:
        return code, message, [], [], [], [], ""
    added, removed = recipient_changes(before, info.recipients_list)
    add_headers, remove_headers = headers.changes()
    return code, message, added, removed, add_headers, remove_headers, ""


def _address(item: Any) -> bytes:
    """One recipient as bytes; a policy bug (wrong type, empty, line break) raises."""
    if isinstance(item, str):
        data = item.encode("utf-8", "surrogateescape")
    elif isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    else:
        raise TypeError(f"recipients_list items must be str, not {type(item).__name__}")
    if not data.strip() or any(c in data for c in b"\r\n\0"):
        raise ValueError(f"invalid recipient address {item!r}")
    return data


def recipient_changes(before: Iterable[Any], after: Any) -> Tuple[List[bytes], List[bytes]]:
    """(added, removed): the multiset difference between two recipient lists, in order."""
    if not isinstance(after, (list, tuple)):
        raise TypeError(f"recipients_list must be a list, not {type(after).__name__}")
    old = [_address(item) for item in before]
    unmatched = Counter(old)
    added = []
    for address in map(_address, after):
        if unmatched[address] > 0:
            unmatched[address] -= 1
        else:
            added.append(address)
    removed = []
    for address in old:
        if unmatched[address] > 0:
            unmatched[address] -= 1
            removed.append(address)
    return added, removed


def failure() -> Outcome:
    """The pending exception as a FAILURE outcome, without run()'s own frame."""
    kind, value, tb = sys.exc_info()
    assert kind is not None and value is not None and tb is not None
    try:
        text = str(value)
    except BaseException:  # an exception whose __str__ fails must not escape run()
        text = "<unprintable exception>"
    message = f"{kind.__name__}: {text}" if text else kind.__name__
    try:
        formatted = "".join(traceback.format_exception(kind, value, tb.tb_next or tb))
    except BaseException:
        formatted = f"Traceback unavailable\n{message}\n"
    return FAILURE, message.encode("utf-8", "replace"), [], [], [], [], formatted
