# worker.capnp - what a worker tells mtapy-workerd on its channel (fd 3)
#
# WIRE  The daemon hands each worker one end of a socketpair as fd 3. The worker sends one
#       Hello once it has imported its generation's policy and passed its self_test(). It then
#       waits for one byte from the daemon before it takes any call, and afterwards only reads
#       single bytes (workerd/worker/serve.h):
#         "g"          go: take calls (sent at once to a worker of the live generation; a new
#                      generation gets it only when all of its workers are ready)
#         "r" or EOF   retire: take no more calls, exit 0 (reload, recycle)
#         "d"          drain: answer every call already queued, then exit 0 (daemon stop)
#       Calls never pass through this channel: workers take them from the pool's sockets.
#
# EXIT STATUS  (worker-main.c++ kExit*) 0 recycled or told to stop; 70 boot error before the
#       privilege drop (bad user, setuid failed); 71 the policy failed to load or its
#       self_test() failed; 72 lost its channel; other values and signals are crashes.

@0x89d5ee02558d5dc6;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mtapy::proto");

using Policy = import "policy.capnp";

struct Hello {
  union {
    ready @0 :Void;
    # Privileges dropped, CPython started, the policy imported and self-tested: may take calls.
    bootError @1 :Policy.Failure;
    # The worker cannot serve (message and traceback say why); it exits right after.
  }
  code @2 :CodeIdentity;
  # With ready: the code this worker runs (the same for every worker of a generation).
}

struct CodeIdentity {
  sha256 @0 :Text;     # of the policy file's bytes, hex
  mtimeNs @1 :Int64;   # the policy file's modification time when it was read
  files @2 :UInt32;    # source files in the generation's snapshot (policy and its modules)
}
