"""elspy.info - EximInfo, what Exim knows about the message besides its headers and body.

DESCRIPTION  Attributes, all present even when Exim had no value (then "" or 0):
               sender_address, sender_host_address ("" for local mail), sender_host_name,
               sender_host_port, sender_host_authenticated, sender_helo_name,
               interface_address, interface_port, received_protocol, message_id,
               body_linecount, body_zerocount: str or int;
               recipients_list: a plain, mutable list of str. Append, remove or assign it;
               mtapy.local_scan applies the difference to the message when it is accepted.
               (`recipients` is the same list; `recipients_count` its length.)
             Exim's strings are bytes and need not be UTF-8: they are decoded as UTF-8 with
             errors="surrogateescape", so `.encode("utf-8", "surrogateescape")` restores them.
             Fields the caller adds beyond these become attributes too.
SEE ALSO     mtapy/local_scan.py
"""

from typing import Any, Dict, List, Mapping, Optional

STRING_FIELDS = (
    "sender_address",
    "sender_host_address",
    "sender_host_name",
    "sender_host_authenticated",
    "sender_helo_name",
    "interface_address",
    "received_protocol",
    "message_id",
)
INT_FIELDS = ("sender_host_port", "interface_port", "body_linecount", "body_zerocount")


def to_text(value: Any) -> Any:
    """bytes -> str (UTF-8, surrogateescape); lists element-wise; anything else as is."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple)):
        return [to_text(item) for item in value]
    return value


class EximInfo:
    """The SMTP transaction and envelope of one message (elspy's EximInfo)."""

    recipients_list: List[str]
    sender_address: str
    sender_host_address: str
    sender_host_name: str
    sender_host_authenticated: str
    sender_helo_name: str
    interface_address: str
    received_protocol: str
    message_id: str
    sender_host_port: int
    interface_port: int
    body_linecount: int
    body_zerocount: int

    def __init__(self, fields: Optional[Mapping[str, Any]] = None) -> None:
        for name in STRING_FIELDS:
            setattr(self, name, "")
        for name in INT_FIELDS:
            setattr(self, name, 0)
        self.recipients_list = []
        for key, value in (fields or {}).items():
            setattr(self, "recipients_list" if key == "recipients" else key, to_text(value))
        if not isinstance(self.recipients_list, list):
            self.recipients_list = list(self.recipients_list)

    @property
    def recipients(self) -> List[str]:
        """The same list object as recipients_list."""
        return self.recipients_list

    @recipients.setter
    def recipients(self, value: List[str]) -> None:
        self.recipients_list = value

    @property
    def recipients_count(self) -> int:
        """How many recipients the message has now."""
        return len(self.recipients_list)

    def as_dict(self) -> Dict[str, Any]:
        """All fields as a dict (a shallow copy; recipients_list is copied too)."""
        fields = dict(vars(self))
        fields["recipients_list"] = list(self.recipients_list)
        return fields

    def __repr__(self) -> str:
        return (
            f"<EximInfo {self.message_id or '-'} from <{self.sender_address}>"
            f" host {self.sender_host_address or 'local'}"
            f" to {len(self.recipients_list)} recipient(s)>"
        )


__all__ = ["EximInfo", "STRING_FIELDS", "INT_FIELDS", "to_text"]
