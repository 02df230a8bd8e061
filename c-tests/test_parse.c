/*
 * procspy_parse_tcp: real kernel lines (v4, v6, v4-mapped, UDP, TIME_WAIT),
 * headers anywhere, de-duplication, state masks, malformed lines counted,
 * abort, and garbage: random bytes, every prefix of a table and mutations,
 * each in a heap block of exactly its length (ASan/valgrind see any overread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Lines as this kernel prints them (copied from /proc/net/tcp, tcp6, udp). */
static const char REAL[] =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
    "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 640 1 000000001dad0969 100 0 0 10 0                       \n"
    "   1: 020200C0:B6BE 507100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 18416 1 0000000006c59ef0 20 4 1 103 -1                    \n"
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:C001 01 00000010:00000000 01:00000014 00000000    33        0 23456 2 0000000000000000 20 4 30 10 -1\n"
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n"
    "  42: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 34567 2 0000000000000000 0           \n"
    "   5: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000\n"
    "   6: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000\n"
    "   7: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00001000 00000000     0        0 0 3 0000000000000000\n"
    "   8: 020200C0:B6BE 507100CB:01BB 0A 00000000:00000000 00:00000000 00000000     0        0 18416 1 0000000006c59ef0 20 4 1 103 -1\n"
    "\n"
    "   \n";

#define REAL_DELIVERED 7

static const uint8_t A_ANY[16] = {0};
static const uint8_t A_192[16] = {192, 0, 2, 2};
static const uint8_t A_203[16] = {203, 0, 113, 80};
static const uint8_t A_LO4[16] = {127, 0, 0, 1};
static const uint8_t A_LO6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static const uint8_t A_MAPPED[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};

static procspy_status parse(const char *text, size_t len, uint32_t mask, struct h_conns *out, uint64_t *bad)
{
    /* exactly len bytes on the heap */
    uint8_t *b = malloc(len ? len : 1);
    procspy_status st;
    memcpy(b, text, len);
    h_conns_free(out);
    st = procspy_parse_tcp(len ? b : NULL, len, mask, h_conn_cb, out, bad);
    free(b);
    return st;
}

static void check_line(const struct h_conn *c, uint64_t inode, int family, int state,
                       const uint8_t *la, uint16_t lp, const uint8_t *ra, uint16_t rp, uint32_t uid)
{
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ(c->c.inode, inode);
    CHECK_EQ(c->c.family, family);
    CHECK_EQ(c->c.state, state);
    CHECK_MEM(c->c.local_addr, 16, la, 16);
    CHECK_EQ(c->c.local_port, lp);
    CHECK_MEM(c->c.remote_addr, 16, ra, 16);
    CHECK_EQ(c->c.remote_port, rp);
    CHECK_EQ(c->c.uid, uid);
    CHECK_EQ(c->c.protocol, PROCSPY_PROTO_TCP); /* the text does not say */
    CHECK_EQ(c->c.netns, 0);
    CHECK(!c->has_owner);
}

void test_parse_real_lines(void)
{
    struct h_conns r = {0};
    uint64_t bad = 99;
    CHECK_STATUS(parse(REAL, strlen(REAL), PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
    CHECK_EQ(bad, 0);
    CHECK_EQ(r.n, REAL_DELIVERED);
    check_line(h_conns_by_port(&r, 0, 0x07E8, 0, 10), 640, 4, 10, A_ANY, 2024, A_ANY, 0, 0);
    check_line(h_conns_by_port(&r, 0, 0xB6BE, 443, 1), 18416, 4, 1, A_192, 46782, A_203, 443, 0);
    check_line(h_conns_by_port(&r, 0, 8080, 0, 10), 12345, 6, 10, A_LO6, 8080, A_ANY, 0, 1000);
    check_line(h_conns_by_port(&r, 0, 80, 0xC001, 1), 23456, 6, 1, A_MAPPED, 80, A_MAPPED, 0xC001, 33);
    check_line(h_conns_by_port(&r, 0, 53, 0, 7), 34567, 4, 7, A_LO4, 53, A_ANY, 0, 101);
    check_line(h_conns_by_port(&r, 0, 8080, 0xC350, 6), 0, 4, 6, A_LO4, 8080, A_LO4, 0xC350, 0);
    check_line(h_conns_by_port(&r, 0, 8080, 0xC351, 6), 0, 4, 6, A_LO4, 8080, A_LO4, 0xC351, 0);
    /* inode 18416 again (as LISTEN): the first reading won */
    CHECK(h_conns_by_port(&r, 0, 0xB6BE, 443, 10) == NULL);
    h_conns_free(&r);
}

void test_parse_state_mask(void)
{
    struct h_conns r = {0};
    uint64_t bad;
    size_t i;
    CHECK_STATUS(parse(REAL, strlen(REAL), PROCSPY_STATES_LISTEN, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 2); /* 640 and 12345; 18416's first reading was ESTABLISHED */
    for (i = 0; i < r.n; i++)
        CHECK_EQ(r.v[i].c.state, 10);
    CHECK_STATUS(parse(REAL, strlen(REAL), PROCSPY_STATES_CONNECTED, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 2); /* 18416 and 23456 */
    CHECK_STATUS(parse(REAL, strlen(REAL), 1u << PROCSPY_STATE_TIME_WAIT, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 2);
    CHECK_STATUS(parse(REAL, strlen(REAL), 1u << PROCSPY_STATE_CLOSE, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 1);
    CHECK_STATUS(parse(REAL, strlen(REAL), 1u << 31, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 0);
    CHECK_EQ(bad, 0);
    h_conns_free(&r);
}

void test_parse_malformed_counted(void)
{
    static const char *const bad_lines[] = {
        "   0: 0100007F:1F90 00000000:0000 0A\n",
        "   0: 0100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0\n",
        "   0: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0\n",
        "   0: 0100007F:1F90 00000000:0000 0A0 00000000:00000000 00:00000000 00000000     0        0 3 1 0\n",
        "   x: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0\n",
        "   0: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0\n",
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99999999999999999999999 1 0\n",
        "   0: 0100007F:1F9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0\n",
        "hello world\n",
        "\x01\x02\xff\n",
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 184",
    };
    const char *good = "   9: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0\n";
    struct h_conns r = {0};
    struct h_str s = {0};
    uint64_t bad = 0;
    size_t i, n = sizeof bad_lines / sizeof bad_lines[0];
    for (i = 0; i < n; i++) {
        CHECK_STATUS(parse(bad_lines[i], strlen(bad_lines[i]), PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
        if (!CHECK_EQ(bad, 1) || !CHECK_EQ(r.n, 0))
            printf("      (line %zu)\n", i);
    }
    /* all together, around one good line: the good one comes through */
    h_str_addz(&s, H_HDR4);
    for (i = 0; i + 1 < n; i++) {
        h_str_addz(&s, bad_lines[i]);
        if (i == n / 2)
            h_str_addz(&s, good);
    }
    h_str_addz(&s, bad_lines[n - 1]); /* last, cut short without a newline */
    CHECK_STATUS(parse(s.p, s.len, PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
    CHECK_EQ(bad, n);
    CHECK_EQ(r.n, 1);
    if (r.n == 1)
        CHECK_EQ(r.v[0].c.inode, 77);
    h_conns_free(&r);
    h_str_free(&s);
}

void test_parse_abort(void)
{
    struct h_conns r = {0};
    uint64_t bad = 99;
    r.abort_at = 2;
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)REAL, strlen(REAL), PROCSPY_STATES_ALL, h_conn_cb, &r, &bad),
                 PROCSPY_CALLBACK_ABORTED);
    CHECK_EQ(r.n, 2);
    CHECK_EQ(bad, 0);
    CHECK(strstr(h_last_error(), "procspy_parse_tcp") != NULL);
    h_conns_free(&r);
    r.abort_at = REAL_DELIVERED;
    CHECK_STATUS(procspy_parse_tcp((const uint8_t *)REAL, strlen(REAL), PROCSPY_STATES_ALL, h_conn_cb, &r, &bad),
                 PROCSPY_CALLBACK_ABORTED);
    CHECK_EQ(r.n, REAL_DELIVERED);
    h_conns_free(&r);
}

/* Header and blank lines are no records and not malformed; CR/space-only lines neither. */
void test_parse_headers_anywhere(void)
{
    struct h_conns r = {0};
    struct h_str s = {0};
    uint64_t bad = 99;
    int i;
    for (i = 0; i < 3; i++) {
        h_str_addz(&s, H_HDR4);
        h_table_line(&s, i, 4, A_LO4, (uint16_t)(100 + i), A_ANY, 0, 10, 0, 1000 + (uint64_t)i);
        h_str_addz(&s, H_HDR6);
        h_table_line(&s, i, 6, A_LO6, (uint16_t)(200 + i), A_ANY, 0, 10, 0, 2000 + (uint64_t)i);
        h_str_addz(&s, "\n");
    }
    /* the same file again (a re-read): nothing new */
    {
        char *copy = malloc(s.len);
        size_t len = s.len;
        memcpy(copy, s.p, len);
        h_str_add(&s, copy, len);
        free(copy);
    }
    CHECK_STATUS(parse(s.p, s.len, PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
    CHECK_EQ(bad, 0);
    CHECK_EQ(r.n, 6);
    /* a header alone, and nothing at all */
    CHECK_STATUS(parse(H_HDR4, strlen(H_HDR4), PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 0);
    CHECK_EQ(bad, 0);
    CHECK_STATUS(parse("", 0, PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
    CHECK_EQ(r.n, 0);
    h_conns_free(&r);
    h_str_free(&s);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t count_lines(const char *p, size_t len)
{
    size_t i, n = 1;
    for (i = 0; i < len; i++)
        n += p[i] == '\n';
    return n;
}

static int same_conn(const procspy_connection *a, const procspy_connection *b)
{
    return a->inode == b->inode && a->family == b->family && a->state == b->state &&
           a->local_port == b->local_port && a->remote_port == b->remote_port && a->uid == b->uid &&
           memcmp(a->local_addr, b->local_addr, 16) == 0 && memcmp(a->remote_addr, b->remote_addr, 16) == 0;
}

/* Every prefix of a real table: no overread, at most the one cut line malformed, no made-up record. */
void test_parse_every_prefix(void)
{
    struct h_conns full = {0}, r = {0};
    uint64_t bad;
    size_t len = strlen(REAL), k, i, j;
    int failures = 0;
    CHECK_STATUS(parse(REAL, len, PROCSPY_STATES_ALL, &full, &bad), PROCSPY_OK);
    for (k = 0; k <= len && failures < 5; k++) {
        int before = h_test_failures;
        CHECK_STATUS(parse(REAL, k, PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK);
        CHECK(bad <= 1);
        CHECK(r.n <= full.n);
        for (i = 0; i < r.n; i++) {
            int found = 0;
            for (j = 0; j < full.n; j++)
                found |= same_conn(&r.v[i].c, &full.v[j].c);
            if (!found)
                h_fail(__FILE__, __LINE__, "prefix %zu made up a record (inode %llu)", k,
                       (unsigned long long)r.v[i].c.inode);
        }
        if (h_test_failures != before)
            failures++;
    }
    h_conns_free(&full);
    h_conns_free(&r);
}

/* Random bytes and mutated tables: OK, sane records, malformed <= lines. */
void test_parse_garbage(void)
{
    static const char alphabet[] = "0123456789ABCDEFabcdef: \n\r\t:sl-xX\xff";
    struct h_conns r = {0};
    uint64_t bad;
    int iter, iters = h_under_valgrind ? 300 : 4000;
    char *text = malloc(4096);
    size_t reallen = strlen(REAL);
    for (iter = 0; iter < iters; iter++) {
        size_t len, i;
        int mode = iter % 3;
        if (mode == 0) {                      /* raw random bytes */
            len = rng() % 700;
            for (i = 0; i < len; i++)
                text[i] = (char)rng();
        } else if (mode == 1) {               /* table-ish alphabet */
            len = rng() % 700;
            for (i = 0; i < len; i++)
                text[i] = alphabet[rng() % (sizeof alphabet - 1)];
        } else {                              /* a real table, mutated */
            int m, muts = 1 + (int)(rng() % 8);
            len = reallen;
            memcpy(text, REAL, len);
            for (m = 0; m < muts; m++)
                text[rng() % len] = (char)(rng() % 3 ? alphabet[rng() % (sizeof alphabet - 1)] : (char)rng());
            len -= rng() % 40;
        }
        bad = 0;
        if (!CHECK_STATUS(parse(text, len, PROCSPY_STATES_ALL, &r, &bad), PROCSPY_OK))
            break;
        CHECK(bad + r.n <= count_lines(text, len));
        for (i = 0; i < r.n; i++) {
            CHECK(r.v[i].c.family == 4 || r.v[i].c.family == 6);
            CHECK(!r.v[i].has_owner);
            CHECK_EQ(r.v[i].c.netns, 0);
        }
        if (h_test_failures)
            break;
    }
    free(text);
    h_conns_free(&r);
}
