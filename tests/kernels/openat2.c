/*
 * Tells whether the running kernel has openat2(2) with RESOLVE_BENEATH and
 * RESOLVE_NO_MAGICLINKS, which the library tries first for every path under
 * the proc root (before Linux 5.6 it falls back to openat). For the kernel
 * matrix (tests/kernels): prints "yes", or "no: ERRNO" and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    struct open_how how;
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd;
    if (dir < 0) {
        printf("no: /proc: %s\n", strerror(errno));
        return 1;
    }
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, dir, "self/stat", &how, sizeof how);
    if (fd < 0) {
        printf("no: %s\n", strerror(errno));
        return 1;
    }
    /* A path out of the directory must be refused (EXDEV). */
    if (syscall(SYS_openat2, dir, "../etc/hostname", &how, sizeof how) >= 0 || errno != EXDEV) {
        printf("no: RESOLVE_BENEATH let ../ out\n");
        return 1;
    }
    printf("yes\n");
    return 0;
}
