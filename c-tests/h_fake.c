/*
 * Fake proc trees: directories laid out like /proc, for hostile and odd cases (see harness.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"

/* ---- fake proc trees ---------------------------------------------------- */

int h_fake_init(struct h_fake *f)
{
    snprintf(f->root, sizeof f->root, "/tmp/procspy-fake-XXXXXX");
    if (!mkdtemp(f->root)) {
        h_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        f->root[0] = 0;
        return -1;
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void h_fake_cleanup(struct h_fake *f)
{
    if (f->root[0])
        nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    f->root[0] = 0;
}

const char *h_fake_path(const struct h_fake *f, const char *fmt, ...)
{
    static char slots[2][512];
    static int next;
    char *out = slots[next];
    va_list ap;
    int n;
    next ^= 1;
    n = snprintf(out, sizeof slots[0], "%s/", f->root);
    va_start(ap, fmt);
    vsnprintf(out + n, sizeof slots[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return out;
}

static void mkdirs_for(const char *path, int include_last)
{
    char tmp[512];
    char *p;
    snprintf(tmp, sizeof tmp, "%s", path);
    for (p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (include_last)
        mkdir(tmp, 0755);
}

void h_fake_mkdir(const struct h_fake *f, const char *rel)
{
    mkdirs_for(h_fake_path(f, "%s", rel), 1);
}

void h_fake_write(const struct h_fake *f, const char *rel, const void *data, size_t len)
{
    const char *path = h_fake_path(f, "%s", rel);
    int fd;
    mkdirs_for(path, 0);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        h_fail(__FILE__, __LINE__, "open %s: %s", path, strerror(errno));
        return;
    }
    if (len && write(fd, data, len) != (ssize_t)len)
        h_fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
    close(fd);
}

void h_fake_pid(const struct h_fake *f, int pid, const char *name, size_t name_len,
                uint64_t start_time, int with_fd_dir)
{
    struct h_str s = {0};
    char head[32], tail[256];
    char rel[64];
    snprintf(head, sizeof head, "%d (", pid);
    snprintf(tail, sizeof tail,
             ") S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %llu 1000 10 "
             "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
             pid, pid, (unsigned long long)start_time);
    h_str_addz(&s, head);
    h_str_add(&s, name, name_len);
    h_str_addz(&s, tail);
    snprintf(rel, sizeof rel, "%d/stat", pid);
    h_fake_write(f, rel, s.p, s.len);
    h_str_free(&s);
    if (with_fd_dir) {
        snprintf(rel, sizeof rel, "%d/fd", pid);
        h_fake_mkdir(f, rel);
    }
}

void h_fake_ns(const struct h_fake *f, int pid, pid_t target)
{
    char rel[64], to[64];
    snprintf(rel, sizeof rel, "%d/ns", pid);
    h_fake_mkdir(f, rel);
    snprintf(to, sizeof to, "/proc/%d/ns/net", (int)target);
    if (symlink(to, h_fake_path(f, "%d/ns/net", pid)) != 0)
        h_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
}

void h_fake_fd_link(const struct h_fake *f, int pid, const char *fdname, const char *target)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%d/fd", pid);
    h_fake_mkdir(f, rel);
    if (symlink(target, h_fake_path(f, "%d/fd/%s", pid, fdname)) != 0)
        h_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
}

void h_fake_fd_sock(const struct h_fake *f, int pid, int fd, pid_t child, int child_fd)
{
    char name[16], to[64];
    snprintf(name, sizeof name, "%d", fd);
    snprintf(to, sizeof to, "/proc/%d/fd/%d", (int)child, child_fd);
    h_fake_fd_link(f, pid, name, to);
}
