# policy.capnp - one policy call: what an MTA shim asks and what it gets back
#
# WIRE  A shim sends each Request as one datagram to its pool's socket
#       (SOCKET_DIR/pools/NAME.sock, see datagram.h): whichever worker of the pool is idle takes
#       it and sends the Response, with the same `id`, back to the shim's own address. When that
#       worker dies or overruns the deadline, the daemon sends the Response instead, so a
#       caller may see an answer twice and keeps the first whose id matches. A Request may
#       carry the message body of localScan, or doFilter's data and control files, as
#       SCM_RIGHTS descriptors.
#
# WHY NOT capnp RPC on the shim side  The RPC client needs kj-async inside the MTA process: it
#       sets SIGPIPE to SIG_IGN process-wide, costs ~2.2 ms to dlopen (docs/design.md section 1)
#       and spends three messages per call (Call, Return, Finish). A framed request/response
#       pair keeps the shim to libcapnp + libkj, blocking I/O with MSG_NOSIGNAL, two messages.
#
# AUTH  The pool socket's ACL admits only the pool's clients; the worker checks the sender's
#       uid again from SCM_CREDENTIALS, never from a message field.

@0xb30c799dd4922e6d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mtapy::proto");

struct Request {
  id @0 :UInt64;
  # Chosen by the caller, echoed in the Response.

  pool @1 :Text;
  # The pool to run in. Empty: the one pool whose `clients` include the caller's uid (an error
  # if there are several). The caller must be allowed to use the pool either way.

  timeoutMs @2 :UInt32;
  # The caller's own deadline for this call, counted from when a worker takes it. 0: the
  # pool's `timeout`. The smaller of the two applies.

  messageId @3 :Text;
  # The MTA's message id when known; only for logs.

  union {
    expand @4 :Expand;
    localScan @5 :LocalScan;
    doFilter @6 :DoFilter;
  }
}

struct Expand {
  # An Exim string expansion: ${dlfunc{mtapy_exim.so}{python}{function}{arg}...}.
  function @0 :Data;
  # A callable of the policy module; dots resolve through attributes ("limits.check").
  args @1 :List(Data);
  # Exim strings as bytes; the worker decodes them as UTF-8 with surrogateescape.
}

struct LocalScan {
  # An Exim local_scan() of a received message, for the elspy API. The message's spool data
  # file travels as the descriptor attached to this Request, opened read-only by the shim.
  bodyOffset @0 :UInt64;
  # Where the body starts in that file (after Exim's "<id>-D" line).
  senderAddress @1 :Data;
  recipients @2 :List(Data);
  senderHostAddress @3 :Data;     # empty for locally submitted mail
  senderHostName @4 :Data;
  senderHostPort @5 :Int32;
  senderHostAuthenticated @6 :Data;
  interfaceAddress @7 :Data;
  interfacePort @8 :Int32;
  receivedProtocol @9 :Data;
  bodyLinecount @10 :Int32;
  bodyZerocount @11 :Int32;
  headers @12 :List(Data);
  # Each header as Exim holds it: "Name: value\n", folded lines kept, raw 8-bit bytes kept.
  # Headers Exim already marked deleted are not sent.
  senderHeloName @13 :Data;       # what the client said in HELO/EHLO
}

struct DoFilter {
  # A Courier global filter call (mtapy-courierfilter), for courier-pythonfilter's
  # do_filter(body_path, control_paths). The message's data file and then each control file,
  # in this order, travel as descriptors attached to the Request, opened read-write by
  # mtapy-courierfilter as Courier's user: the filter reads and edits exactly this message
  # (XFilter rewrites the data file, courier.control appends to control files) although the
  # pool's user cannot open anything in Courier's spool. The body never passes the daemon.
  dataPath @0 :Text;
  controlPaths @1 :List(Text);
  # The paths as Courier sent them; a filter opening one of them gets its descriptor.
}

struct Response {
  id @0 :UInt64;
  union {
    value @1 :Data;
    # expand: the result string (a str result encoded UTF-8 with surrogateescape).
    forcedFail @2 :Void;
    # expand: the policy returned None (Exim's forced failure).
    failure @3 :Failure;
    # The call did not produce an answer; the MTA must fail temporarily (451 / DEFER).
    # When a pool is fail-open (on_error = "accept") the daemon answers with an accepting
    # value or verdict instead and never sends a Failure.
    scan @4 :ScanResult;
    filterReply @5 :Data;
    # doFilter: "" (next filter), "200 ..." (accept, stop this chain), "000 ..." (accept,
    # stop all Courier filters), "4xx ..."/"5xx ..." (reject; several lines allowed).
  }
}

struct Failure {
  kind @0 :Kind;
  enum Kind {
    policyError @0;    # the policy raised, or returned something unusable
    timeout @1;        # the call ran past its deadline; its worker was killed
    workerCrashed @2;  # the worker died during the call
    noWorker @3;       # the pool has no worker (all failing to start: see the daemon's log)
    overloaded @4;     # the pool's queue_limit calls were already waiting
    notAllowed @5;     # the caller's uid may not use that pool, or no pool serves it
    badRequest @6;     # the request made no sense (unknown pool, wrong kind, ...)
    shuttingDown @7;   # the daemon is stopping
    unavailable @8;    # (shim only) the daemon could not be reached or did not answer in time
  }
  message @1 :Text;
  # One line for the MTA's log and, where the MTA shows it, the SMTP client.
  traceback @2 :Text;
  # The Python traceback, when there is one. The daemon logs it; shims do not show it.
}

struct ScanResult {
  verdict @0 :Verdict;
  enum Verdict {
    accept @0;
    reject @1;       # 550 (Exim LOCAL_SCAN_REJECT)
    tempReject @2;   # 451 (Exim LOCAL_SCAN_TEMPREJECT)
  }
  message @1 :Data;
  # The text the SMTP client sees for reject/tempReject; on accept, $local_scan_data.
  addRecipients @2 :List(Data);
  removeRecipients @3 :List(Data);
  addHeaders @4 :List(Data);
  # Complete header lines "Name: value", without the final newline.
  removeHeaders @5 :List(Data);
  # Header names; every header of that name is removed.
}
