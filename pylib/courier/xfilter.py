"""courier.xfilter - change a message during Courier's global filtering, as documented.

DESCRIPTION  XFilter(filter_name, body_path, control_paths) loads the message as an
             email.message.Message; after changes, submit() writes it back in place of the
             original data file (Courier has not queued it yet when filters run) and returns
             '' so the filter chain goes on. Without submit() nothing changes.
             DummyXFilter's submit() writes nothing, for trying a filter by hand.
"""

import email
import io
import email.generator
import email.policy
from typing import List

import courier.config  # noqa: F401  (upstream's xfilter imports it; filters rely on that)
from courier import control


class XFilterError(Exception):
    """What XFilter raises."""


class InitError(XFilterError):
    """The message's data file or a control file could not be read."""


class XFilter:
    """Its attributes are upstream's: filter_name, body_path, control_paths, message,
    control_data."""

    def __init__(self, filter_name: str, body_path: str, control_paths: List[str]):
        self.filter_name = filter_name
        self.body_path = body_path
        self.control_paths = control_paths
        try:
            with open(body_path, "rb") as body:
                self.message = email.message_from_binary_file(body, policy=email.policy.compat32)
            self.control_data = control.get_control_data(control_paths)
        except Exception as e:  # as upstream: whatever kept the message from loading
            raise InitError(f"{filter_name}: cannot read the message: {e}") from e

    def get_message(self) -> email.message.Message:
        return self.message

    def set_message(self, message: email.message.Message) -> None:
        self.message = message

    def get_control_data(self) -> dict:
        return self.control_data

    def submit(self) -> str:
        # Whole, then written: a message that cannot be serialized must not leave the data
        # file empty (an empty message would go on to be delivered).
        out = io.BytesIO()
        email.generator.BytesGenerator(out, mangle_from_=False).flatten(self.message)
        data = out.getvalue()
        if not data.endswith(b"\n"):
            data += b"\n"
        with open(self.body_path, "r+b") as body:
            body.write(data)
            body.truncate()
        return ""

    # The names of older pythonfilter releases.
    getMessage = get_message
    setMessage = set_message
    getControlData = get_control_data


class DummyXFilter(XFilter):
    def submit(self) -> str:
        return ""
