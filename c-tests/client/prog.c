/*
 * A client of the installed library, as a user writes one (c-tests/clients.sh,
 * c-tests/packages.sh): socket headers next to procspy.h, a loopback listener
 * of its own, found through the library with its own pid and fd.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <procspy.h>

struct want { unsigned long long inode; int fd; unsigned port; int found; };

static int on_conn(void *userdata, const procspy_connection *c)
{
    struct want *w = userdata;
    if (c->inode == w->inode && c->owner && c->owner->pid == getpid() && c->owner->fd == w->fd &&
        c->local_port == w->port && c->state == PROCSPY_STATE_LISTEN &&
        strcmp(procspy_state_name(c->protocol, c->state), "LISTEN") == 0)
        w->found = 1;
    return 0;
}

int main(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    struct stat st;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1) ||
        getsockname(fd, (struct sockaddr *)&a, &len) || fstat(fd, &st)) {
        perror("listen on 127.0.0.1");
        return 2;
    }
    struct want w = { (unsigned long long)st.st_ino, fd, ntohs(a.sin_port), 0 };
    procspy_walker *walker;
    procspy_walk_stats stats;
    char msg[256];
    if (procspy_walker_new(NULL, &walker) != PROCSPY_OK) {
        procspy_last_error(msg, sizeof msg);
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    procspy_status s = procspy_walker_connections(walker, NULL, 0, PROCSPY_PROTO_TCP,
                                                  PROCSPY_STATES_LISTEN, on_conn, &w, &stats);
    procspy_walker_free(walker);
    printf("libprocspy %s: %s; 127.0.0.1:%u (fd %d) %s with pid %d\n", procspy_version(),
           procspy_status_str(s), w.port, fd, w.found ? "found" : "NOT found", (int)getpid());
    return s == PROCSPY_OK && w.found ? 0 : 1;
}
