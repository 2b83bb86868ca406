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
  }
}

struct AdminResponse {
  union {
    obsoleteCall @0 :Policy.Response;
    status @1 :Status;
    error @2 :Text;
  }
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
  workers @9 :List(WorkerStatus);
  functions @10 :List(FunctionCount);
  socket @11 :Text;               # where the pool's callers send (mtapyctl call uses it)
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
