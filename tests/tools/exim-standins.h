/* exim-standins.h - what test programs call besides Exim's own API (see exim-standins.c) */
#ifndef MTAPY_EXIM_STANDINS_H
#define MTAPY_EXIM_STANDINS_H

/* Free everything allocated from Exim's store, as Exim's store_reset() does between
   expansions. Hidden: the program must export exactly what Exim exports. */
__attribute__((visibility("hidden"))) void exim_store_reset(void);

#endif
