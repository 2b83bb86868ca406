/* dlfunc-harness.c - play Exim 4.96 for mtapy_exim.so: load it as ${dlfunc} does and call python()
 *
 * DESCRIPTION  dlfunc-harness SO_PATH call FN [ARG...]
 *                  one call; prints "rc=<N>" and then the yield (or "(null)"), exit 0.
 *              dlfunc-harness SO_PATH repeat N FN [ARG...]
 *                  N calls in one process (one connection, as in an SMTP session); prints
 *                  "rc=<last rc>", the last yield, then "calls=N failures=K median_us=..
 *                  p99_us=.. first_us=.. load_us=.." (CLOCK_MONOTONIC; failures counts rc != OK;
 *                  load_us is dlopen + dlsym). $DLFUNC_HARNESS_PAUSE_MS sleeps that long
 *                  between calls (not timed), e.g. to restart the daemon under a session.
 *              dlfunc-harness SO_PATH load
 *                  dlopen with RTLD_NOW, as Debian's local_scan_path loader does, and check
 *                  local_scan_version_major/minor when the library has them; prints "ok".
 *              The shim reads $MTAPY_SHIM_CONF as it would inside Exim. Usage errors exit 2,
 *              a library that does not load exits 1.
 * WHY          Stock Debian Exim links with -rdynamic -fvisibility=hidden, so a plugin can only
 *              reach the symbols listed in notes/exim-4.96.md section 2. This program defines
 *              exactly those (and nothing else a plugin could mistake for Exim), links with
 *              -rdynamic, and dlopen()s the shim with RTLD_LAZY like Expand_dlfunc, so a shim
 *              that references anything else fails here as it would under Exim.
 * SEE ALSO     /usr/include/exim4/local_scan.h, shim/exim/expand.c++, tests/test_daemon.py
 */
#define DLFUNC_IMPL
#include <local_scan.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void arena_reset(void) {
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

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* DLFUNC_HARNESS_SIGNALS=1: print the signal mask and dispositions to stderr, so a test can
   check that loading and calling the shim changed none of them. */
static void report_signals(const char *when) {
  if (getenv("DLFUNC_HARNESS_SIGNALS") == NULL) return;
  FILE *status = fopen("/proc/self/status", "r");
  char line[256];
  while (status != NULL && fgets(line, sizeof line, status) != NULL) {
    if (strncmp(line, "SigBlk:", 7) == 0 || strncmp(line, "SigIgn:", 7) == 0 ||
        strncmp(line, "SigCgt:", 7) == 0) {
      fprintf(stderr, "%s %s", when, line);
    }
  }
  if (status != NULL) fclose(status);
}

static int usage(void) {
  fputs("usage: dlfunc-harness SO_PATH call FN [ARG...]\n"
        "       dlfunc-harness SO_PATH repeat N FN [ARG...]\n"
        "       dlfunc-harness SO_PATH load\n", stderr);
  return 2;
}

static void print_yield(int rc, const uschar *yield) {
  printf("rc=%d\n", rc);
  if (yield == NULL) fputs("(null)", stdout);
  else fwrite(yield, 1, strlen((const char *)yield), stdout);
  fputc('\n', stdout);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Debian's local_scan_path loader: RTLD_NOW, then the ABI version functions. */
static int load_now(const char *path) {
  void *handle = dlopen(path, RTLD_NOW);
  if (handle == NULL) {
    fprintf(stderr, "dlfunc-harness: %s\n", dlerror());
    return 1;
  }
  int (*major)(void) = (int (*)(void))dlsym(handle, "local_scan_version_major");
  int (*minor)(void) = (int (*)(void))dlsym(handle, "local_scan_version_minor");
  if ((major != NULL) != (minor != NULL)) {
    fputs("dlfunc-harness: only one of local_scan_version_major/minor is exported\n", stderr);
    return 1;
  }
  if (major != NULL && (major() != LOCAL_SCAN_ABI_VERSION_MAJOR || minor() > 0)) {
    fprintf(stderr, "dlfunc-harness: local_scan ABI %d.%d, Exim wants 6.0\n", major(), minor());
    return 1;
  }
  puts("ok");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  const char *path = argv[1], *mode = argv[2];
  if (strcmp(mode, "load") == 0) return argc == 3 ? load_now(path) : usage();

  long n = 1;
  int first = 3;  /* index of FN */
  if (strcmp(mode, "repeat") == 0) {
    if (argc < 5) return usage();
    char *end;
    n = strtol(argv[3], &end, 10);
    if (*end != 0 || n < 1) return usage();
    first = 4;
  } else if (strcmp(mode, "call") != 0 || argc < 4) {
    return usage();
  }

  report_signals("before");
  double t0 = now_us();
  void *handle = dlopen(path, RTLD_LAZY);  /* as Expand_dlfunc in Exim's expand.c */
  if (handle == NULL) {
    fprintf(stderr, "dlfunc-harness: %s\n", dlerror());
    return 1;
  }
  exim_dlfunc_t *python = (exim_dlfunc_t *)dlsym(handle, "python");
  if (python == NULL) {
    fprintf(stderr, "dlfunc-harness: %s\n", dlerror());
    return 1;
  }
  double load_us = now_us() - t0;

  int call_argc = argc - first;
  double *took = malloc(sizeof *took * (size_t)n);
  if (took == NULL) return 1;
  const char *pause = getenv("DLFUNC_HARNESS_PAUSE_MS");
  long pause_ms = pause ? strtol(pause, NULL, 10) : 0;
  int rc = 0;
  long failures = 0;
  uschar *yield = NULL;
  for (long i = 0; i < n; i++) {
    if (i > 0) {
      arena_reset();  /* Exim resets its store between expansions */
      if (pause_ms > 0) {
        struct timespec t = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
      }
    }
    yield = NULL;
    /* Exim passes its own copies; the callee may keep pointers only until store_reset. */
    uschar *call_argv[call_argc + 1];
    for (int a = 0; a < call_argc; a++) call_argv[a] = string_copy_function(US argv[first + a]);
    call_argv[call_argc] = NULL;
    double start = now_us();
    rc = python(&yield, call_argc, call_argv);
    took[i] = now_us() - start;
    if (rc != OK) {
      failures++;
      if (n > 1) {
        fprintf(stderr, "call %ld: rc=%d %s\n", i + 1, rc, yield ? (char *)yield : "(null)");
      }
    }
  }
  report_signals("after");
  print_yield(rc, yield);
  if (strcmp(mode, "repeat") == 0) {
    double first_us = took[0];
    qsort(took, (size_t)n, sizeof *took, by_value);
    long p99 = (n * 99) / 100;
    if (p99 >= n) p99 = n - 1;
    printf("calls=%ld failures=%ld median_us=%.1f p99_us=%.1f first_us=%.1f load_us=%.1f\n", n,
           failures, took[n / 2], took[p99], first_us, load_us);
  }
  fflush(stdout);
  free(took);
  return 0;
}
