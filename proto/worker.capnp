# worker.capnp - what a worker tells mtapy-workerd on its own socket
#
# WIRE  The daemon hands each worker one end of a socketpair as fd 3. The worker first sends
#       one Hello, then serves policy.capnp Requests one at a time on the same socket, each
#       answered with a policy.capnp Response. End of file on fd 3 tells the worker to exit
#       (exit status 0, "recycled"). The daemon enforces deadlines by killing the worker.
#
# EXIT STATUS  (worker-main.c++ kExit*) 0 recycled or told to stop; 70 boot error before the
#       privilege drop (bad user, setuid failed); 71 the policy failed to import; 72 lost its
#       socket mid-call; other values and signals are crashes.

@0x89d5ee02558d5dc6;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mtapy::proto");

using Policy = import "policy.capnp";

struct Hello {
  union {
    ready @0 :Void;
    # Privileges dropped, CPython started, the policy imported: send calls.
    bootError @1 :Policy.Failure;
    # The worker cannot serve (message and traceback say why); it exits right after.
  }
}
