# admin.capnp - mtapyctl <-> mtapy-workerd on the admin socket (root only)
#
# WIRE  Same framing as policy.capnp: one AdminRequest, then one AdminResponse, alternating.
#       The daemon accepts only callers whose SO_PEERCRED uid is 0.

@0xbada2567e81596fd;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mtapy::proto");

using Policy = import "policy.capnp";

struct AdminRequest {
  union {
    obsoleteCall @0 :Policy.Request;
    # Retired: the daemon is off the call path; mtapyctl calls a pool on its socket (Status).
    status @1 :Void;
    reload @2 :Text;
    # Re-read workerd.toml and start a new generation of the named pool ("" = every pool).
    # Answered once the new generation takes the calls and the old one has exited, or failed.
  }
}

struct AdminResponse {
  union {
    obsoleteCall @0 :Policy.Response;
    status @1 :Status;
    error @2 :Text;
    reload @3 :ReloadReport;
  }
}

struct ReloadReport {
  configErrors @0 :List(Text);    # "file:line: what"; when not empty, nothing was changed
  pools @1 :List(PoolReload);
  notes @2 :List(Text);           # settings that changed but need a restart, and the like
  error @3 :Text;                 # the reload itself failed (e.g. out of descriptors)
}

struct PoolReload {
  name @0 :Text;
  outcome @1 :Outcome;
  enum Outcome {
    reloaded @0;   # a new generation serves; the old one has exited
    added @1;
    removed @2;    # its sockets are gone; its workers answered what was queued
    failed @3;     # the old generation serves on, untouched
  }
  generation @2 :UInt32;          # the new generation's number
  code @3 :Text;                  # what it runs: "sha256 ab12cd34ef56, mtime ..."
  message @4 :Text;               # why it failed
  traceback @5 :Text;
  liveAfterMs @6 :UInt32;         # from the request to the new generation taking calls
  drainedAfterMs @7 :UInt32;      # from the request to the old generation's exit
}

struct Status {
  pid @0 :Int32;
  uptimeSeconds @1 :UInt64;
  pools @2 :List(PoolStatus);
}

struct PoolStatus {
  name @0 :Text;
  user @1 :Text;
  policy @2 :Text;
  throttledSeconds @3 :UInt32;   # > 0: workers failed to start; no respawn until then
  obsoleteQueued @4 :UInt32;      # retired: calls now wait in the kernel, which does not count them
  calls @5 :UInt64;               # answered calls, including failures
  failures @6 :UInt64;            # calls that ended in a Failure (before on_error)
  p50Micros @7 :UInt32;           # latency of recent calls, as workers measured them
  p99Micros @8 :UInt32;
  obsoleteWorkers @9 :List(WorkerStatus);   # retired: each generation lists its workers
  functions @10 :List(FunctionCount);
  socket @11 :Text;               # where the pool's callers send (mtapyctl call uses it)
  generations @12 :List(GenerationStatus);   # the live one first
  reloadFailure @13 :Text;        # the last reload's error and traceback, until one succeeds
  reloadFailedSecondsAgo @14 :UInt64;
}

struct GenerationStatus {
  number @0 :UInt32;
  state @1 :Text;                 # live | starting (a reload) | draining
  code @2 :Text;                  # "sha256 ab12cd34ef56, mtime 2026-12-02 14:00:01, 3 files"
  loadedSecondsAgo @3 :UInt64;    # since its code was read
  workers @4 :List(WorkerStatus);
}

struct WorkerStatus {
  pid @0 :Int32;
  state @1 :Text;                 # starting | idle | busy | stopping (from the scoreboard)
  calls @2 :UInt64;
}

struct FunctionCount {
  name @0 :Text;
  calls @1 :UInt64;
  failures @2 :UInt64;
}
