/* courier-floor.c - the floor for Courier global filters: the protocol and nothing else
 *
 * DESCRIPTION  courier-floor SOCKET_PATH
 *                  started as courierfilter starts a filter (stdin a pipe, fd 3 a pipe's
 *                  write end): binds DIR/.NAME, chmod 0660, listen, renames it to
 *                  SOCKET_PATH (= DIR/NAME), closes fd 3 ("ready"); then, one connection at
 *                  a time, reads the request (data path, control paths, an empty line),
 *                  answers "200 Ok" without a newline and closes, as upstream pythonfilter
 *                  answers. EOF on stdin: unlink the socket and exit.
 *              Sequential on purpose: it is the cost of the protocol alone (accept, read,
 *              write, close), the least any filter program can spend per message.
 * SEE ALSO     courier_bench.py, submitbench.c
 */
#include "benchlib.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* The caller has checked that P fits. */
static struct sockaddr_un address_of(const char *p) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, p, strlen(p) + 1);
  return a;
}

/* The request ends with an empty line: "...\n\n". */
static int read_request(int fd) {
  char buf[4096];
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, buf + got, sizeof buf - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
    if (got >= 2 && buf[got - 1] == '\n' && buf[got - 2] == '\n') return 0;
    if (got == sizeof buf) return -1;
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fputs("usage: courier-floor SOCKET_PATH\n", stderr);
    return 2;
  }
  const char *final = argv[1];
  /* Courier's rule: bind a dot name, then rename, so submit never sees a socket that does
     not listen yet. */
  char temp[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = strrchr(final, '/');
  size_t dir_len = slash ? (size_t)(slash - final + 1) : 0;
  if (snprintf(temp, sizeof temp, "%.*s.%s", (int)dir_len, final, final + dir_len) >=
      (int)sizeof temp) {
    fputs("courier-floor: socket path too long\n", stderr);
    return 2;
  }
  unlink(temp);
  struct sockaddr_un a = address_of(temp);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (chmod(temp, 0660) < 0 || listen(l, 64) < 0) die("listen");
  if (rename(temp, final) < 0) die("rename");
  close(3); /* ready */
  struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = l, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[0].revents) { /* courierfilter closed our stdin: stop */
      char c;
      if (read(0, &c, 1) <= 0) break;
    }
    if (fds[1].revents & POLLIN) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      if (read_request(c) == 0) write_full(c, "200 Ok", 6);
      close(c);
    }
  }
  unlink(final);
  return 0;
}
