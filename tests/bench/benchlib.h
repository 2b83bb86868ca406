/* benchlib.h - timing, client fan-out and fork-first-contact loops shared by the bench programs
 *
 * DESCRIPTION  run_load(): fork N client processes; each runs setup() and its warm-up calls,
 *              then all wait on one barrier (a pipe the parent closes) and make their share of
 *              the timed calls, each timed with CLOCK_MONOTONIC into shared memory. Prints
 *                RESULT p50_us=.. p99_us=.. max_us=.. calls_per_s=.. calls=N p90_us=.. mean_us=..
 *              where calls/s = timed calls / (last client's end - barrier release).
 *              run_forks(): ITER times: take the time, fork(), the child does its work and
 *              reports the time at which it had the answer in hand; prints the same RESULT
 *              line over fork -> answer.
 *              Header-only (static functions) so each program is a single compile.
 */
#ifndef MTAPY_BENCHLIB_H
#define MTAPY_BENCHLIB_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The mean is there beside the percentiles because, at equal throughput, a server that serves
 * its clients unfairly has a lower p50 than a fair one and a higher p99; the mean (Little's law:
 * clients / throughput) is the same for both. */
static void print_result(double *v, long n, double seconds) {
  qsort(v, (size_t)n, sizeof *v, by_value);
  long p99 = n * 99 / 100, p90 = n * 90 / 100;
  if (p99 >= n) p99 = n - 1;
  double sum = 0;
  for (long i = 0; i < n; i++) sum += v[i];
  printf("RESULT p50_us=%.1f p99_us=%.1f max_us=%.1f calls_per_s=%.0f calls=%ld p90_us=%.1f "
         "mean_us=%.1f\n",
         v[n / 2], v[p99], v[n - 1], seconds > 0 ? (double)n / seconds : 0.0, n, v[p90],
         n > 0 ? sum / (double)n : 0.0);
  fflush(stdout);
}

static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, (const char *)buf + put, n - put);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    put += (size_t)r;
  }
  return 0;
}

/* setup() runs once in each client process; call() returns 0 on a correct answer. */
static void run_load(int nclients, long total, long warmup_per_client, void (*setup)(void),
                     int (*call)(void)) {
  long per = total / nclients;
  total = per * nclients;
  size_t bytes = sizeof(double) * (size_t)(total + nclients);
  double *lat = (double *)mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                               -1, 0);
  if (lat == MAP_FAILED) die("mmap");
  double *ends = lat + total;
  int ready[2], go[2];
  if (pipe(ready) < 0 || pipe(go) < 0) die("pipe");
  pid_t *pids = (pid_t *)calloc((size_t)nclients, sizeof *pids);
  fflush(stdout);
  for (int i = 0; i < nclients; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      setup();
      for (long j = 0; j < warmup_per_client; j++) {
        if (call() != 0) _exit(3);
      }
      char c = 'r';
      if (write_full(ready[1], &c, 1) < 0) _exit(4);
      while (read(go[0], &c, 1) < 0 && errno == EINTR) {
      } /* EOF when the parent closes go[1] */
      double *mine = lat + (long)i * per;
      for (long j = 0; j < per; j++) {
        double t = now_us();
        if (call() != 0) _exit(3);
        mine[j] = now_us() - t;
      }
      ends[i] = now_us();
      _exit(0);
    }
    pids[i] = pid;
  }
  close(ready[1]);
  close(go[0]);
  for (int i = 0; i < nclients; i++) {
    char c;
    if (read_full(ready[0], &c, 1) < 0) {
      fprintf(stderr, "bench: a client failed during setup or warm-up\n");
      for (int k = 0; k < nclients; k++) kill(pids[k], SIGKILL);
      exit(1);
    }
  }
  double released = now_us();
  close(go[1]);
  int failed = 0;
  for (int i = 0; i < nclients; i++) {
    int status;
    if (waitpid(pids[i], &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  if (failed) {
    fprintf(stderr, "bench: a client failed during the timed calls\n");
    exit(1);
  }
  double last = released;
  for (int i = 0; i < nclients; i++) last = ends[i] > last ? ends[i] : last;
  print_result(lat, total, (last - released) / 1e6);
  munmap(lat, bytes);
  free(pids);
}

/* child() runs in the forked child and returns 0 on a correct answer. */
static void run_forks(long iterations, int (*child)(void)) {
  double *took = (double *)malloc(sizeof *took * (size_t)iterations);
  double begin = now_us();
  for (long i = 0; i < iterations; i++) {
    int p[2];
    if (pipe(p) < 0) die("pipe");
    fflush(stdout);
    double t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(p[0]);
      if (child() != 0) _exit(3);
      double t1 = now_us();
      write_full(p[1], &t1, sizeof t1);
      _exit(0);
    }
    close(p[1]);
    double t1 = 0;
    int got = read_full(p[0], &t1, sizeof t1);
    close(p[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (got < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "bench: forked child %ld failed (status %d)\n", i, status);
      exit(1);
    }
    took[i] = t1 - t0;
  }
  print_result(took, iterations, (now_us() - begin) / 1e6);
  free(took);
}

#endif
