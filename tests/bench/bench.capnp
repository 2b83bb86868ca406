# bench.capnp - the one-hop floor's interface (rpc1.c++; docs/design.md section 4)
@0xfc34a333277e9f1b;

interface Policy {
  call @0 (fn :Text, args :List(Text)) -> (result :Text);
}
