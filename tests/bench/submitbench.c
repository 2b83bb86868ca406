/* submitbench.c - drives a Courier global filter as Courier's submit does
 *
 * DESCRIPTION  submitbench load SOCKET CLIENTS CALLS WARMUP DATA CONTROL ACCEPT
 *                  CLIENTS processes (benchlib's run_load); per message: connect to SOCKET,
 *                  write "DATA\nCONTROL\n\n", read the reply until the filter closes (upstream
 *                  pythonfilter sends "200 Ok" without a newline, so submit's getline ends
 *                  only at EOF), close. The reply's first character must be in ACCEPT (e.g.
 *                  "2": accepted). Prints benchlib's RESULT line.
 *              submitbench once SOCKET DATA CONTROL
 *                  one message; prints the reply (to check a filter's verdict).
 *              In C because a Python client's own cost per message would be of the order of
 *              the floor's at 8 clients; its CPU is reported beside the filter's.
 * SEE ALSO     courier_bench.py, courier-floor.c
 */
#include "benchlib.h"

#include <sys/socket.h>
#include <sys/un.h>

static const char *path, *accept_chars;
static char request[8192];
static size_t request_len;
static char reply[4096];

static int submit(void) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      write_full(fd, request, request_len) < 0) {
    close(fd);
    return -1;
  }
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, reply + got, sizeof reply - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
    if (got == sizeof reply - 1) break;
  }
  close(fd);
  reply[got] = '\0';
  return (int)got;
}

static int call(void) {
  int n = submit();
  if (n <= 0 || !strchr(accept_chars, reply[0])) {
    fprintf(stderr, "submitbench: reply \"%s\" (expected a first character in \"%s\")\n",
            n > 0 ? reply : "(none)", accept_chars);
    return -1;
  }
  return 0;
}

static void no_setup(void) {}

static void make_request(const char *data, const char *control) {
  int n = snprintf(request, sizeof request, "%s\n%s\n\n", data, control);
  if (n < 0 || (size_t)n >= sizeof request) {
    fputs("submitbench: paths too long\n", stderr);
    exit(2);
  }
  request_len = (size_t)n;
}

int main(int argc, char **argv) {
  if (argc == 9 && strcmp(argv[1], "load") == 0) {
    path = argv[2];
    accept_chars = argv[8];
    make_request(argv[6], argv[7]);
    run_load(atoi(argv[3]), atol(argv[4]), atol(argv[5]), no_setup, call);
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "once") == 0) {
    path = argv[2];
    make_request(argv[3], argv[4]);
    if (submit() < 0) die("submit");
    printf("%s\n", reply);
    return 0;
  }
  fputs("usage: submitbench load SOCKET CLIENTS CALLS WARMUP DATA CONTROL ACCEPT\n"
        "     | submitbench once SOCKET DATA CONTROL\n", stderr);
  return 2;
}
