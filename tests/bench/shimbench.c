/* shimbench.c - play Exim for the real mtapy_exim.so and time ${dlfunc{...}{python}{FN}{ARG}...}
 *
 * DESCRIPTION  Linked with tests/tools/exim-standins.c (Exim's exported API) and -rdynamic,
 *              dlopen()s the shim with RTLD_LAZY as Exim's expand.c does,
 *              and calls python(&yield, argc, argv) with the store reset between calls.
 *              shimbench load SO CLIENTS CALLS WARMUP
 *                  CLIENTS processes (forked after the parent dlopen()ed the shim; each makes
 *                  its own connection at its first call, as an Exim child does), calling
 *                  f("user@example.com", "192.0.2.1") and checking the answer.
 *              shimbench isolation SO CALLS BLOCK
 *                  a "quick" process warms up, then makes CALLS timed calls of f. With BLOCK=1 a
 *                  second process first starts slow() (sleeps 1 s in the policy) and the quick
 *                  calls begin 50 ms later; prints RESULT for the quick calls plus
 *                  "ISOLATION slow_rc=.. slow_ms=.. overlapped=1" (1: every quick call finished
 *                  while slow() was still running).
 *              shimbench fork-dlopen SO ITERATIONS   the child dlopen()s the shim, then calls
 *              shimbench fork-preload SO ITERATIONS  the parent dlopen()ed it (no call)
 *              shimbench fork-phases SO ITERATIONS
 *                  as fork-preload, but the child times its phases and counts its page faults
 *                  (getrusage minflt) and makes a second call; prints the medians:
 *                  PHASES fork_us=.. first_us=.. second_us=.. first_faults=.. second_faults=..
 *                  (fork_us: fork() -> the child runs; first_us: the first python() call)
 *              The shim reads $MTAPY_SHIM_CONF.
 */
#define DLFUNC_IMPL
#include <local_scan.h>

#include "benchlib.h"
#include "../tools/exim-standins.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>

/* ---- calling the shim ---- */
static const char *so_path;
static exim_dlfunc_t *python_fn;
static const char *expected = "user@example.com192.0.2.1";

static void load_shim(void) {
  void *handle = dlopen(so_path, RTLD_LAZY); /* as Expand_dlfunc in Exim's expand.c */
  if (handle == NULL) {
    fprintf(stderr, "shimbench: %s\n", dlerror());
    exit(1);
  }
  python_fn = (exim_dlfunc_t *)dlsym(handle, "python");
  if (python_fn == NULL) {
    fprintf(stderr, "shimbench: %s\n", dlerror());
    exit(1);
  }
}

/* One expansion; returns Exim's rc; *out gets a copy of the yield's first bytes. */
static int expand(const char *fn, int nargs, const char *const *args, char *out, size_t outlen) {
  exim_store_reset();
  uschar *argv[8];
  argv[0] = string_copyn_function(US fn, (int)strlen(fn));
  for (int i = 0; i < nargs; i++) argv[i + 1] = string_copyn_function(US args[i], (int)strlen(args[i]));
  argv[nargs + 1] = NULL;
  uschar *yield = NULL;
  int rc = python_fn(&yield, nargs + 1, argv);
  if (out != NULL) snprintf(out, outlen, "%s", yield ? (const char *)yield : "(null)");
  return rc;
}

static int call_f(void) {
  static const char *const args[] = {"user@example.com", "192.0.2.1"};
  char out[128];
  int rc = expand("f", 2, args, out, sizeof out);
  if (rc != 0 || strcmp(out, expected) != 0) {
    fprintf(stderr, "shimbench: f gave rc=%d yield=%s\n", rc, out);
    return 1;
  }
  return 0;
}

static void no_setup(void) {}

static int child_dlopen_and_call(void) {
  load_shim();
  return call_f();
}

/* Where a forked child's first call goes: fork -> running, first call, second call. */
static double minor_faults(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_minflt;
}

static int fork_phases(long iterations) {
  enum { RUNNING, FIRST, SECOND, FIRST_FAULTS, SECOND_FAULTS, COLUMNS };
  double *v = malloc(sizeof *v * COLUMNS * (size_t)iterations);
  for (long i = 0; i < iterations; i++) {
    int p[2];
    if (pipe(p) < 0) die("pipe");
    fflush(stdout);
    double t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      double t1 = now_us(), f1 = minor_faults();
      if (call_f() != 0) _exit(3);
      double t2 = now_us(), f2 = minor_faults();
      if (call_f() != 0) _exit(3);
      double t3 = now_us(), f3 = minor_faults();
      double row[COLUMNS] = {t1 - t0, t2 - t1, t3 - t2, f2 - f1, f3 - f2};
      write_full(p[1], row, sizeof row);
      _exit(0);
    }
    close(p[1]);
    int got = read_full(p[0], v + i * COLUMNS, sizeof(double) * COLUMNS);
    close(p[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (got < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "shimbench: forked child %ld failed (status %d)\n", i, status);
      return 1;
    }
  }
  double *column = malloc(sizeof *column * (size_t)iterations), median[COLUMNS];
  for (int c = 0; c < COLUMNS; c++) {
    for (long i = 0; i < iterations; i++) column[i] = v[i * COLUMNS + c];
    qsort(column, (size_t)iterations, sizeof *column, by_value);
    median[c] = column[iterations / 2];
  }
  printf("PHASES fork_us=%.1f first_us=%.1f second_us=%.1f first_faults=%.0f second_faults=%.0f\n",
         median[RUNNING], median[FIRST], median[SECOND], median[FIRST_FAULTS],
         median[SECOND_FAULTS]);
  return 0;
}

static int isolation(long calls, int block) {
  int started[2], finished[2];
  if (pipe(started) < 0 || pipe(finished) < 0) die("pipe");
  pid_t slow = -1;
  if (block) {
    fflush(stdout);
    slow = fork();
    if (slow < 0) die("fork");
    if (slow == 0) {
      close(started[0]);
      close(finished[0]);
      if (call_f() != 0) _exit(3); /* connect first, so only slow() is in flight below */
      char c = 's';
      double t0 = now_us();
      write_full(started[1], &c, 1);
      char out[256];
      int rc = expand("slow", 0, NULL, out, sizeof out);
      double result[2] = {(double)rc, now_us() - t0};
      write_full(finished[1], result, sizeof result);
      _exit(0);
    }
  }
  close(started[1]);
  close(finished[1]);
  /* The quick client: its own process and connection, warmed up before the block starts. */
  for (int i = 0; i < 200; i++) {
    if (call_f() != 0) return 1;
  }
  if (block) {
    char c;
    if (read_full(started[0], &c, 1) < 0) die("slow client");
    usleep(50000); /* let slow() reach a worker */
  }
  double *took = malloc(sizeof *took * (size_t)calls);
  double begin = now_us();
  for (long i = 0; i < calls; i++) {
    double t = now_us();
    if (call_f() != 0) return 1;
    took[i] = now_us() - t;
  }
  double seconds = (now_us() - begin) / 1e6;
  int overlapped = 1;
  double result[2] = {0, 0};
  if (block) {
    /* slow() must not have answered yet: nothing may be waiting in its pipe. */
    struct timespec zero = {0, 0};
    fd_set r;
    FD_ZERO(&r);
    FD_SET(finished[0], &r);
    overlapped = pselect(finished[0] + 1, &r, NULL, NULL, &zero, NULL) == 0;
    if (read_full(finished[0], result, sizeof result) < 0) die("slow client result");
    waitpid(slow, NULL, 0);
  }
  print_result(took, calls, seconds);
  printf("ISOLATION slow_rc=%d slow_ms=%.1f overlapped=%d\n", (int)result[0], result[1] / 1000,
         overlapped);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) goto usage;
  so_path = argv[2];
  if (strcmp(argv[1], "load") == 0 && argc == 6) {
    load_shim();
    run_load(atoi(argv[3]), atol(argv[4]), atol(argv[5]), no_setup, call_f);
    return 0;
  }
  if (strcmp(argv[1], "isolation") == 0 && argc == 5) {
    load_shim();
    return isolation(atol(argv[3]), atoi(argv[4]));
  }
  if (strcmp(argv[1], "fork-dlopen") == 0 && argc == 4) {
    run_forks(atol(argv[3]), child_dlopen_and_call);
    return 0;
  }
  if (strcmp(argv[1], "fork-preload") == 0 && argc == 4) {
    load_shim();
    run_forks(atol(argv[3]), call_f);
    return 0;
  }
  if (strcmp(argv[1], "fork-phases") == 0 && argc == 4) {
    load_shim();
    return fork_phases(atol(argv[3]));
  }
usage:
  fputs("usage: shimbench load SO CLIENTS CALLS WARMUP | isolation SO CALLS BLOCK |\n"
        "       fork-dlopen SO ITERATIONS | fork-preload SO ITERATIONS | fork-phases SO ITERATIONS\n",
        stderr);
  return 2;
}
