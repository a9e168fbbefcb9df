/* The crash harness's LD_PRELOAD shim: SIGKILL the process right after the Nth matching libc call.
 *
 * The same technique as the C_InitToken shim of tests/devices/test_token_blank.py (dlsym RTLD_NEXT,
 * the real call first, then raise(SIGKILL)), generalised: the Python side arms it for the duration
 * of one named function by setting environment variables (os.environ -> putenv, read here on every
 * call), so counting starts inside that function only.
 *
 *   TAMGA_SHIM_CALL  = ftruncate | write | send     which call to count (unset: disarmed); send counts
 *                      send() and write() on a TCP socket (TLS records go out with write())
 *   TAMGA_SHIM_MATCH = a path suffix (".object") for ftruncate/write, a TCP peer port for send
 *   TAMGA_SHIM_AT    = N: kill right after the Nth match; 0: only trace
 *   TAMGA_SHIM_TRACE = a file: append one line "<call> <what>" per match (the dry run counts them)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static int matched;
static char armed_for[64];

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int fd_path(int fd, char *path, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return 1;
}

static int fd_peer_port(int fd) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getpeername(fd, (struct sockaddr *)&addr, &len) != 0) return -1;
    if (addr.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&addr)->sin_port);
    if (addr.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return -1;
}

/* Called after the real call: count it if armed for `call` and it matches; trace; kill at N. */
static void after(const char *call, int fd) {
    const char *want = getenv("TAMGA_SHIM_CALL");
    const char *match = getenv("TAMGA_SHIM_MATCH");
    if (!want || !match || strcmp(want, call) != 0) return;
    char what[4096];
    if (strcmp(call, "send") == 0) {
        int port = fd_peer_port(fd);
        if (port < 0 || port != atoi(match)) return;
        snprintf(what, sizeof what, "port %d", port);
    } else {
        if (!fd_path(fd, what, sizeof what) || !ends_with(what, match)) return;
    }
    const char *label = getenv("TAMGA_SHIM_LABEL");
    if (label && strncmp(label, armed_for, sizeof armed_for - 1) != 0) {   /* a new arming: count again */
        strncpy(armed_for, label, sizeof armed_for - 1);
        matched = 0;
    }
    ++matched;
    const char *trace = getenv("TAMGA_SHIM_TRACE");
    if (trace) {
        int t = open(trace, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (t >= 0) {
            dprintf(t, "%s %s %s #%d\n", label ? label : "-", call, what, matched);
            close(t);
        }
    }
    const char *at = getenv("TAMGA_SHIM_AT");
    if (at && atoi(at) > 0 && matched == atoi(at)) raise(SIGKILL);
}

int ftruncate(int fd, off_t length) {
    static int (*real)(int, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "ftruncate");
    int rv = real(fd, length);
    after("ftruncate", fd);
    return rv;
}

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "write");
    ssize_t rv = real(fd, buf, count);
    after("write", fd);
    after("send", fd);          /* OpenSSL writes TLS records to its socket with write() */
    return rv;
}

ssize_t send(int fd, const void *buf, size_t len, int flags) {
    static ssize_t (*real)(int, const void *, size_t, int);
    if (!real) real = dlsym(RTLD_NEXT, "send");
    ssize_t rv = real(fd, buf, len, flags);
    after("send", fd);
    return rv;
}
