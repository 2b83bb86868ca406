/* rawpp.c - the floor: 64-byte ping-pong over a Unix SOCK_STREAM socket, blocking, 2 processes
 *
 * DESCRIPTION  rawpp server PATH
 *                  listen on PATH; serve one connection at a time with blocking read(64) /
 *                  write(64) until EOF (a sequential server: no poll, no fork per connection).
 *              rawpp client PATH CALLS WARMUP
 *                  one client process, one connection, CALLS timed round trips.
 *              rawpp fork PATH ITERATIONS
 *                  first-contact floor: fork; the child connects, writes 64 B, reads 64 B.
 *              rawpp lines PATH CLIENTS CALLS WARMUP LINE EXPECT
 *                  a ${readsocket} daemon driven alone, as Exim's ${readsocket} calls it: per
 *                  call connect, write LINE and a newline, shutdown(SHUT_WR), read until EOF,
 *                  close; the answer must be exactly EXPECT. CLIENTS processes (run_load).
 */
#include "benchlib.h"

#include <sys/socket.h>
#include <sys/un.h>

static const char *path;
static int sock = -1;
static char buf[64];

static struct sockaddr_un address_of(const char *p) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  return a;
}

static int connect_to(void) {
  struct sockaddr_un a = address_of(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  return fd;
}

static void setup(void) {
  sock = connect_to();
  if (sock < 0) die("connect");
  memset(buf, 'x', sizeof buf);
}

static int ping(void) {
  if (write_full(sock, buf, sizeof buf) < 0 || read_full(sock, buf, sizeof buf) < 0) return -1;
  return 0;
}

static int first_contact(void) {
  sock = connect_to();
  if (sock < 0) return -1;
  memset(buf, 'x', sizeof buf);
  return ping();
}

static const char *line, *expect;

static void no_setup(void) {}

static int line_call(void) {
  int fd = connect_to();
  if (fd < 0) return -1;
  char out[512], in[512];
  int n = snprintf(out, sizeof out, "%s\n", line);
  size_t got = 0;
  int rc = -1;
  if (write_full(fd, out, (size_t)n) == 0 && shutdown(fd, SHUT_WR) == 0) {
    for (;;) {
      ssize_t r = read(fd, in + got, sizeof in - 1 - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      if (r == 0) {
        in[got] = '\0';
        rc = strcmp(in, expect) == 0 ? 0 : -1;
        if (rc != 0) fprintf(stderr, "rawpp: answer \"%s\", expected \"%s\"\n", in, expect);
        break;
      }
      got += (size_t)r;
      if (got == sizeof in - 1) break;
    }
  }
  close(fd);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "server") == 0) {
    struct sockaddr_un a = address_of(argv[2]);
    unlink(argv[2]);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 128) < 0) die("listen");
    for (;;) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      char b[64];
      while (read_full(c, b, sizeof b) == 0 && write_full(c, b, sizeof b) == 0) {
      }
      close(c);
    }
  }
  if (argc == 5 && strcmp(argv[1], "client") == 0) {
    path = argv[2];
    run_load(1, atol(argv[3]), atol(argv[4]), setup, ping);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "fork") == 0) {
    path = argv[2];
    run_forks(atol(argv[3]), first_contact);
    return 0;
  }
  if (argc == 8 && strcmp(argv[1], "lines") == 0) {
    path = argv[2];
    line = argv[6];
    expect = argv[7];
    run_load(atoi(argv[3]), atol(argv[4]), atol(argv[5]), no_setup, line_call);
    return 0;
  }
  fputs("usage: rawpp server PATH | client PATH CALLS WARMUP | fork PATH ITERATIONS\n"
        "     | lines PATH CLIENTS CALLS WARMUP LINE EXPECT\n", stderr);
  return 2;
}
