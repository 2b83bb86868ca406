// state-dir.h - the folder of a pool's embedded shared state (pylib/mtapy/state.py, LMDB)
// DESCRIPTION  STATE_DIR/NAME, mode 0700, owned by the pool's user, with what is in it: only
//              that pool's workers (and root) can open its state. Made before a generation's
//              workers start, so a reload that changes the pool's user hands its state over.
// SECURITY     STATE_DIR itself is root's, 0755; nothing in it is followed as a symlink.
#pragma once

#include "config.h"

namespace mtapy::workerd {

// For a pool whose state is embedded ("lmdb://DIR"); throws with the reason.
void prepareStateDir(const PoolConfig& pool);

}  // namespace mtapy::workerd
