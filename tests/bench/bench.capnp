# bench.capnp - the one-hop floor's interface (as notes/rpc-baseline.md's rpc1_py)
@0xfc34a333277e9f1b;

interface Policy {
  call @0 (fn :Text, args :List(Text)) -> (result :Text);
}
