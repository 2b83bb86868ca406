/* exim-standins.c - the symbols stock Debian Exim 4.96 exports to plugins, for test programs
 *
 * DESCRIPTION  Stock Debian Exim links with -rdynamic -fvisibility=hidden, so a plugin can only
 *              reach the symbols listed in docs/design.md section 3.3. This file defines
 *              exactly those (and nothing else a plugin could mistake for Exim). Link it into a
 *              program with -rdynamic and dlopen() mtapy_exim.so: a shim that references
 *              anything else fails there as it would under Exim. Used by dlfunc-harness.c and
 *              tests/bench/shimbench.c.
 * SEE ALSO     exim-standins.h, /usr/include/exim4/local_scan.h
 */
#define DLFUNC_IMPL
#include <local_scan.h>

#include "exim-standins.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Exim's exported variables (nm -D --defined-only /usr/sbin/exim4) ---- */

int body_linecount = 0;
int body_zerocount = 0;
unsigned int debug_selector = 0;
uschar *expand_string_message = NULL;
header_line *header_last = NULL;
header_line *header_list = NULL;
const uschar *headers_charset = US"UTF-8";
BOOL host_checking = 0;
uschar *interface_address = NULL;
int interface_port = 0;
uschar *local_scan_path = NULL;
uschar *message_id = US"";
uschar *received_protocol = NULL;
int recipients_count = 0;
recipient_item *recipients_list = NULL;
unsigned char *sender_address = NULL;
uschar *sender_host_address = NULL;
uschar *sender_host_authenticated = NULL;
uschar *sender_host_name = NULL;
int sender_host_port = 0;
BOOL smtp_batched_input = 0;
BOOL smtp_input = 0;
int store_pool = POOL_MAIN;

/* ---- store: one arena, reset after each call like Exim's store_reset() ---- */

struct block {
  struct block *next;
  max_align_t data[];
};
static struct block *arena = NULL;

static void *arena_get(size_t size) {
  struct block *b = malloc(sizeof *b + (size ? size : 1));
  if (b == NULL) {
    fputs("dlfunc-harness: out of memory\n", stderr);
    exit(1);
  }
  b->next = arena;
  arena = b;
  return b->data;
}

void exim_store_reset(void) {
  while (arena != NULL) {
    struct block *next = arena->next;
    free(arena);
    arena = next;
  }
}

void *store_get_3(int size, const void *proto_mem, const char *func, int line) {
  return arena_get(size > 0 ? (size_t)size : 0);
}
void *store_get_perm_3(int size, const void *proto_mem, const char *func, int line) {
  return arena_get(size > 0 ? (size_t)size : 0);  /* the harness never frees "perm" early */
}
void *store_get_quoted_3(int size, const void *proto_mem, unsigned quoter, const char *func,
                         int line) {
  return arena_get(size > 0 ? (size_t)size : 0);
}
void *store_malloc_3(size_t size, const char *func, int line) {
  void *p = malloc(size ? size : 1);
  if (p == NULL) exit(1);
  return p;
}
void store_free_3(void *p, const char *func, int line) { free(p); }
rmark store_mark_3(const char *func, int line) { return NULL; }
rmark store_reset_3(rmark mark, const char *func, int line) { return NULL; }
void store_release_above_3(void *p, const char *func, int line) {}
BOOL store_extend_3(void *p, int old, int new, const char *func, int line) { return 0; }
void *store_newblock_3(void *old, int newsize, int datalen, const char *func, int line) {
  void *p = arena_get(newsize > 0 ? (size_t)newsize : 0);
  if (old != NULL && datalen > 0) memcpy(p, old, (size_t)datalen);
  return p;
}
int quoter_for_address(const void *p) { return -1; }
BOOL is_quoted_like(const void *p, unsigned quoter) { return 0; }
BOOL is_real_quoter(int quoter) { return 0; }
void debug_print_taint(const void *p) {}

/* ---- strings ---- */

uschar *string_copyn_function(const uschar *s, int n) {
  uschar *copy = arena_get((size_t)n + 1);
  memcpy(copy, s, (size_t)n);
  copy[n] = 0;
  return copy;
}
uschar *string_copy_function(const uschar *s) {
  return string_copyn_function(s, (int)strlen((const char *)s));
}
uschar *string_copy_taint_function(const uschar *s, const void *proto_mem) {
  return string_copy_function(s);
}

static uschar *vformat(const char *format, va_list ap) {
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, format, ap);
  uschar *out = arena_get(n > 0 ? (size_t)n + 1 : 1);
  vsnprintf((char *)out, n > 0 ? (size_t)n + 1 : 1, format, again);
  va_end(again);
  return out;
}

uschar *string_sprintf_trc(const char *format, const uschar *func, unsigned line, ...) {
  va_list ap;
  va_start(ap, line);
  uschar *out = vformat(format, ap);
  va_end(ap);
  return out;
}

/* ---- logging and debugging: Exim -bh style, on stderr ---- */

void log_write(unsigned int selector, int flags, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  fputs("LOG: ", stderr);
  vfprintf(stderr, format, ap);
  fputc('\n', stderr);
  va_end(ap);
}
void debug_printf(const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  vfprintf(stderr, format, ap);
  va_end(ap);
}
int smtp_fflush(void) { return fflush(stdout); }
void smtp_vprintf(const char *format, BOOL more, va_list ap) { vfprintf(stdout, format, ap); }
void smtp_printf(const char *format, BOOL more, ...) {
  va_list ap;
  va_start(ap, more);
  smtp_vprintf(format, more, ap);
  va_end(ap);
}

/* ---- headers and recipients of "the message" (empty unless a plugin adds some) ---- */

static void header_append(int type, uschar *text) {
  header_line *h = arena_get(sizeof *h);
  h->next = NULL;
  h->type = type;
  h->slen = (int)strlen((const char *)text);
  h->text = text;
  if (header_last != NULL) header_last->next = h;
  else header_list = h;
  header_last = h;
}

void header_add(int type, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  header_append(type, vformat(format, ap));
  va_end(ap);
}
void header_add_at_position(BOOL after, uschar *name, BOOL topnot, int type, const char *format,
                            ...) {
  va_list ap;
  va_start(ap, format);
  header_append(type, vformat(format, ap));  /* position is not modelled */
  va_end(ap);
}

static BOOL header_named(header_line *h, const uschar *name, int len, BOOL notdel) {
  if (len < 0) len = (int)strlen((const char *)name);
  if (notdel && h->type == '*') return 0;
  return strncasecmp((const char *)h->text, (const char *)name, (size_t)len) == 0 &&
         (h->text[len] == ':' || h->text[len] == ' ' || h->text[len] == '\t');
}
BOOL header_testname(header_line *h, const uschar *name, int len, BOOL notdel) {
  return header_named(h, name, len, notdel);
}
BOOL header_testname_incomplete(header_line *h, const uschar *name, int len, BOOL notdel) {
  if (len < 0) len = (int)strlen((const char *)name);
  return !(notdel && h->type == '*') &&
         strncasecmp((const char *)h->text, (const char *)name, (size_t)len) == 0;
}
void header_remove(int occurrence, const uschar *name) {
  int seen = 0;
  for (header_line *h = header_list; h != NULL; h = h->next) {
    if (!header_named(h, name, -1, 1)) continue;
    if (occurrence == 0 || ++seen == occurrence) h->type = '*';
  }
}

void receive_add_recipient(uschar *address, int pno) {
  recipient_item *grown = realloc(recipients_list, sizeof *grown * (size_t)(recipients_count + 1));
  if (grown == NULL) exit(1);
  recipients_list = grown;
  memset(&recipients_list[recipients_count], 0, sizeof *recipients_list);
  recipients_list[recipients_count].address = (uschar *)strdup((const char *)address);
  recipients_list[recipients_count++].pno = pno;
}
BOOL receive_remove_recipient(uschar *address) {
  for (int i = 0; i < recipients_count; i++) {
    if (strcmp((const char *)recipients_list[i].address, (const char *)address) != 0) continue;
    free(recipients_list[i].address);
    memmove(&recipients_list[i], &recipients_list[i + 1],
            sizeof *recipients_list * (size_t)(recipients_count - i - 1));
    recipients_count--;
    return 1;
  }
  return 0;
}

/* ---- the rest of the exported API: enough to load and to answer harmlessly ---- */

/* Only "$name" of a few variables expands; anything else comes back unchanged. */
uschar *expand_string(uschar *s) {
  if (strcmp((const char *)s, "$spool_directory") == 0) {
    const char *dir = getenv("DLFUNC_HARNESS_SPOOL");
    return string_copy_function(US(dir ? dir : "/var/spool/exim4"));
  }
  if (strcmp((const char *)s, "$message_exim_id") == 0) return string_copy_function(message_id);
  if (strcmp((const char *)s, "$sender_address") == 0) {
    return string_copy_function(sender_address ? sender_address : US"");
  }
  return string_copy_function(s);
}
int child_close(pid_t pid, int timeout) { return -1; }
int lss_b64decode(uschar *code, uschar **ptr) { *ptr = NULL; return -1; }
uschar *lss_b64encode(uschar *clear, int len) { return string_copy_function(US""); }
int lss_match_domain(uschar *s, uschar *list) { return FAIL; }
int lss_match_local_part(uschar *s, uschar *list, BOOL caseless) { return FAIL; }
int lss_match_address(uschar *s, uschar *list, BOOL caseless) { return FAIL; }
int lss_match_host(uschar *name, uschar *address, uschar *list) { return FAIL; }
uschar *rfc2047_decode(uschar *string, BOOL lencheck, const uschar *target, int zapnul,
                       int *lenptr, uschar **error) {
  if (lenptr != NULL) *lenptr = (int)strlen((const char *)string);
  if (error != NULL) *error = NULL;
  return string;
}
/* Exim exports its own dispatcher under this name (Debian's dlopen local_scan patch). */
int local_scan(int fd, uschar **return_text) { return LOCAL_SCAN_ACCEPT; }

/* ---- the program ---- */

