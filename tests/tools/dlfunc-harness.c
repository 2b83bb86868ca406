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
 *              dlfunc-harness SO_PATH forked FN [ARG...]
 *                  as Exim's delivery processes: call, fork, call in the child, then call
 *                  again in the parent on its kept connection; prints "parent rc=.. yield
 *                  sockets=INODE,...", then the same for "child" and "parent-again".
 *              dlfunc-harness SO_PATH load
 *                  dlopen with RTLD_NOW, as Debian's local_scan_path loader does, and check
 *                  local_scan_version_major/minor when the library has them; prints "ok".
 *              The shim reads $MTAPY_SHIM_CONF as it would inside Exim. Usage errors exit 2,
 *              a library that does not load exits 1.
 * WHY          Linked with exim-standins.c (exactly the symbols Exim exports) and -rdynamic,
 *              and dlopen()ing the shim with RTLD_LAZY like Expand_dlfunc, a shim that
 *              references anything Exim does not export fails here as it would under Exim.
 * SEE ALSO     exim-standins.c, shim/exim/expand.c++, tests/test_daemon.py
 */
#define DLFUNC_IMPL
#include <local_scan.h>

#include "exim-standins.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

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
        "       dlfunc-harness SO_PATH forked FN [ARG...]\n"
        "       dlfunc-harness SO_PATH load\n", stderr);
  return 2;
}

static void print_yield(int rc, const uschar *yield) {
  printf("rc=%d\n", rc);
  if (yield == NULL) fputs("(null)", stdout);
  else fwrite(yield, 1, strlen((const char *)yield), stdout);
  fputc('\n', stdout);
}

/* The socket inodes this process holds, as "socket:[N]" links in /proc/self/fd. */
static void print_sockets(void) {
  char path[64], target[64];
  fputs(" sockets=", stdout);
  for (int fd = 0; fd < 1024; fd++) {
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (strncmp(target, "socket:[", 8) == 0) printf("%s,", target + 8);
  }
}

static int call_once(exim_dlfunc_t *python, int argc, char **args, const char *who) {
  uschar *argv[argc + 1];
  for (int a = 0; a < argc; a++) argv[a] = string_copy_function(US args[a]);
  argv[argc] = NULL;
  uschar *yield = NULL;
  int rc = python(&yield, argc, argv);
  printf("%s rc=%d %s", who, rc, yield ? (char *)yield : "(null)");
  print_sockets();
  putchar('\n');
  fflush(stdout);
  return rc;
}

static int forked(exim_dlfunc_t *python, int argc, char **args) {
  call_once(python, argc, args, "parent");
  pid_t child = fork();
  if (child == 0) {
    call_once(python, argc, args, "child");
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  call_once(python, argc, args, "parent-again");
  return 0;
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
  } else if ((strcmp(mode, "call") != 0 && strcmp(mode, "forked") != 0) || argc < 4) {
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
  if (strcmp(mode, "forked") == 0) return forked(python, call_argc, argv + first);
  double *took = malloc(sizeof *took * (size_t)n);
  if (took == NULL) return 1;
  const char *pause = getenv("DLFUNC_HARNESS_PAUSE_MS");
  long pause_ms = pause ? strtol(pause, NULL, 10) : 0;
  /* $DLFUNC_HARNESS_SECONDS ends a repeat early; $DLFUNC_HARNESS_EVERY prints every result,
     and with $DLFUNC_HARNESS_STAMP also when each call started (CLOCK_MONOTONIC) and how long
     it took, in µs. */
  const char *seconds = getenv("DLFUNC_HARNESS_SECONDS");
  double until = seconds ? now_us() + strtod(seconds, NULL) * 1e6 : 0;
  int every = getenv("DLFUNC_HARNESS_EVERY") != NULL;
  int stamp = getenv("DLFUNC_HARNESS_STAMP") != NULL;
  int rc = 0;
  long failures = 0;
  uschar *yield = NULL;
  for (long i = 0; i < n; i++) {
    if (until > 0 && now_us() > until) {
      n = i;
      break;
    }
    if (i > 0) {
      exim_store_reset();  /* Exim resets its store between expansions */
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
    if (every && stamp) {
      printf("each at=%.0f took=%.0f rc=%d %s\n", start, took[i], rc,
             yield ? (char *)yield : "(null)");
    }
    else if (every) printf("each rc=%d %s\n", rc, yield ? (char *)yield : "(null)");
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
