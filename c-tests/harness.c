/*
 * The harness's check framework and small utilities (see harness.h); the
 * recorders, the live fixture and fake trees are in h_*.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

int h_test_failures;
int h_under_valgrind;

/* ---- the framework ----------------------------------------------------- */

void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    h_test_failures++;
    printf("    %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

int h_check(const char *file, int line, const char *expr, int ok)
{
    if (!ok)
        h_fail(file, line, "CHECK(%s) failed", expr);
    return ok;
}

int h_check_eq(const char *file, int line, const char *a_expr, const char *b_expr,
               long long a, long long b)
{
    if (a == b)
        return 1;
    h_fail(file, line, "CHECK_EQ(%s, %s) failed: %lld (0x%llx) != %lld (0x%llx)",
           a_expr, b_expr, a, (unsigned long long)a, b, (unsigned long long)b);
    return 0;
}

int h_check_status(const char *file, int line, const char *expr, int got, int want)
{
    if (got == want)
        return 1;
    h_fail(file, line, "%s returned %d (%s), want %d (%s); last error: \"%s\"", expr, got,
           procspy_status_str((procspy_status)got), want,
           procspy_status_str((procspy_status)want), h_last_error());
    return 0;
}

static void print_escaped(const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i, shown = len < 160 ? len : 160;
    putchar('"');
    for (i = 0; i < shown; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            putchar(b[i]);
        else
            printf("\\x%02x", b[i]);
    }
    putchar('"');
    if (shown < len)
        printf("...(%zu bytes)", len);
}

int h_check_mem(const char *file, int line, const char *a_expr, const char *b_expr,
                const void *a, size_t a_len, const void *b, size_t b_len)
{
    size_t i;
    if (a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0))
        return 1;
    for (i = 0; i < a_len && i < b_len; i++)
        if (((const unsigned char *)a)[i] != ((const unsigned char *)b)[i])
            break;
    h_fail(file, line, "CHECK_MEM(%s, %s) failed: lengths %zu vs %zu, first difference at %zu",
           a_expr, b_expr, a_len, b_len, i);
    printf("      got  ");
    print_escaped(a, a_len);
    printf("\n      want ");
    print_escaped(b, b_len);
    printf("\n");
    return 0;
}

/* ---- small utilities --------------------------------------------------- */

uint64_t h_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void h_sleep_ms(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

char *h_read_file(const char *path, size_t *len)
{
    return h_read_files(&path, 1, len);
}

char *h_read_files(const char *const *paths, size_t n, size_t *len)
{
    size_t cap = 4096, used = 0, i;
    char *buf = malloc(cap + 1);
    if (!buf)
        return NULL;
    for (i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            free(buf);
            return NULL;
        }
        for (;;) {
            ssize_t r;
            if (used == cap) {
                char *nb = realloc(buf, cap * 2 + 1);
                if (!nb) {
                    close(fd);
                    free(buf);
                    return NULL;
                }
                buf = nb;
                cap *= 2;
            }
            r = read(fd, buf + used, cap - used);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                close(fd);
                free(buf);
                return NULL;
            }
            if (r == 0)
                break;
            used += (size_t)r;
        }
        close(fd);
    }
    buf[used] = 0;
    *len = used;
    return buf;
}

uint64_t h_stat_ino(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_ino;
}

uint64_t h_proc_start_time(pid_t pid)
{
    char path[64], *text, *p, *tok;
    size_t len;
    int field = 2;
    uint64_t v = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    text = h_read_file(path, &len);
    if (!text)
        return 0;
    p = strrchr(text, ')');
    if (p) {
        char *save = NULL;
        for (tok = strtok_r(p + 1, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
            if (++field == 22) {
                v = strtoull(tok, NULL, 10);
                break;
            }
        }
    }
    free(text);
    return v;
}

uint64_t h_proc_netns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    return h_stat_ino(path);
}

const void *h_memmem(const void *hay, size_t hay_len, const void *needle, size_t needle_len)
{
    if (!hay || !needle)
        return NULL;
    return memmem(hay, hay_len, needle, needle_len);
}

int h_kernel_has_bpf_owner_scan(void)
{
    static const char *const names[] = {"bpf_iter_task_file", "BPF_FUNC_sock_from_file",
                                        "BPF_FUNC_probe_read_kernel", "BPF_FUNC_seq_write"};
    size_t len = 0, i;
    char *btf = h_read_file("/sys/kernel/btf/vmlinux", &len);
    int all = btf != NULL;
    for (i = 0; all && i < sizeof names / sizeof names[0]; i++) {
        char needle[64];
        size_t n = (size_t)snprintf(needle, sizeof needle, "%c%s", 0, names[i]) + 1; /* with both NULs */
        all = h_memmem(btf, len, needle, n) != NULL;
    }
    free(btf);
    return all;
}

const char *h_last_error(void)
{
    static char buf[1024];
    (void)procspy_last_error(buf, sizeof buf);
    return buf;
}

/* ---- strings and table lines ------------------------------------------ */

const uint8_t H_ADDR_ZERO[16] = {0};
const uint8_t H_ADDR_LO4[16] = {127, 0, 0, 1};
const uint8_t H_ADDR_LO6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

void h_str_add(struct h_str *s, const void *bytes, size_t len)
{
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        char *p;
        while (cap < s->len + len + 1)
            cap *= 2;
        p = realloc(s->p, cap);
        if (!p)
            abort();
        s->p = p;
        s->cap = cap;
    }
    if (len)
        memcpy(s->p + s->len, bytes, len);
    s->len += len;
    s->p[s->len] = 0;
}

void h_str_addz(struct h_str *s, const char *z)
{
    h_str_add(s, z, strlen(z));
}

void h_str_free(struct h_str *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

static void addr_hex(char *out, const uint8_t *addr, int words)
{
    int i;
    for (i = 0; i < words; i++) {
        uint32_t w;
        memcpy(&w, addr + 4 * i, 4);
        sprintf(out + 8 * i, "%08X", w);
    }
}

void h_table_line(struct h_str *s, int sl, int family,
                  const uint8_t local[16], uint16_t lport,
                  const uint8_t remote[16], uint16_t rport,
                  int state, uint32_t uid, uint64_t inode)
{
    char l[40], r[40], line[300];
    int words = family == 6 ? 4 : 1;
    addr_hex(l, local, words);
    addr_hex(r, remote, words);
    snprintf(line, sizeof line,
             "%4d: %s:%04X %s:%04X %02X 00000000:00000000 00:00000000 00000000 %5u        0 %llu 1 0000000000000000 100 0 0 10 0\n",
             sl, l, lport, r, rport, state, uid, (unsigned long long)inode);
    h_str_addz(s, line);
}
