// message-split.h - Exim's reading of a raw message: its header lines and where the body starts
// DESCRIPTION  mtapyctl scan hands a policy the header lines Exim would: lines end at LF or
//              CRLF (stored as LF), a line starting with a space or tab folds into the previous
//              one, a blank line or the first line that is not a header ends them, and a leading
//              mbox "From " line is dropped. pylib/mtapy/testing.py split_message() does the same
//              in Python; tests/vectors/message-split.txt states every rule and pins both.
// SEE ALSO     message-split-test.c++, mtapyctl.c++, tests/exim/test_exim_message_split.py
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mtapy::ctl {

// Append `raw`'s header lines to `headers`, each ending in "\n" as Exim stores it (folded lines
// keep their inner "\n"); return the offset of the body's first byte in `raw`.
size_t splitHeaders(std::string_view raw, std::vector<std::string>& headers);

}  // namespace mtapy::ctl
