"""A sample Courier filter: refuse mail whose Subject says "spam" (courier-pythonfilter API)."""

import sys

from courier import control, xfilter


def init_filter():
    sys.stderr.write("Initialized the spamsubject python filter\n")


def do_filter(body_path, control_paths):
    message = xfilter.XFilter("spamsubject", body_path, control_paths).get_message()
    if "spam" not in str(message.get("Subject", "")).lower():
        return ""
    return ("550-5.7.1 This message looks like spam\n"
            f"550 5.7.1 sender {control.get_sender(control_paths)} please rephrase")
