/*
 * procspy: list every socket on this host with the process holding it, in
 * every network namespace.
 *
 * This is the project's command-line program and an example of the C API in
 * include/procspy.h: one walker, one call to procspy_walker_query (or
 * procspy_walker_walk with --sockets, procspy_walker_changes in a loop with
 * --watch), a callback that filters and prints each record while the record
 * is valid, and a status that is always checked; with --events,
 * procspy_walker_events in a loop, ended by procspy_walker_stop.
 *
 *   procspy                  every TCP and UDP socket, all states, table
 *   procspy -tl              TCP listeners
 *   procspy --port 80        who holds port 80 (local or remote)
 *   procspy -n 4026532281    one network namespace (-N NAME: one of ip netns)
 *   procspy -p 1234 --json   one process's connections, one JSON object a line
 *   procspy --sockets        every socket fd: PID FD NETNS INODE NAME
 *   procspy --watch 5        what changed every 5 seconds, until SIGINT/SIGTERM
 *   procspy --events --json  each connect, listen, close... as the kernel reports it
 *
 * Build: make build/procspy (C99 + POSIX, links libprocspy.so).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "procspy.h"
#include "json.h"

/* Exit codes: 0 ok, 1 the library or the output failed, 2 bad usage,
 * 128 + the signal that ended it (130 SIGINT, 143 SIGTERM). */
enum { EXIT_USAGE = 2, EXIT_SIGNAL = 128 };

/* --watch: the longest interval, a day, in milliseconds. */
#define WATCH_MAX_MS 86400000u

/* --events: how long one procspy_walker_events call waits. A signal ends
 * the wait at once (procspy_walker_stop), so this only bounds a call. */
#define EVENTS_WAIT_MS 1000u

/* -N NAME: where ip-netns(8) keeps its names, and the file system a
 * namespace file is on (statfs f_type, linux/magic.h). */
#define NETNS_RUN_DIR "/run/netns/"
#define NSFS_MAGIC_NUMBER 0x6e736673

/* ---- options ---------------------------------------------------------- */

enum state_filter { STATES_ALL, STATES_LISTENING, STATES_CONNECTED };
enum { FAMILY_4 = 1, FAMILY_6 = 2 };

struct options {
    uint32_t protocols;        /* PROCSPY_PROTO_* bits; 0 until -t/-u: both */
    uint8_t families;          /* FAMILY_* bits; 0 until -4/-6: both */
    bool port_set;
    uint16_t port;             /* --port: only sockets with it, local or remote */
    bool no_header;            /* -H: no header line */
    const char *netns_name;    /* -N: the namespace ip netns calls so */
    enum state_filter states;
    bool netns_set;
    uint64_t netns;            /* -n: only this namespace */
    bool pid_set;
    int32_t pid;               /* -p: only this owner */
    bool no_owners;            /* --no-owners: the tables without the owner lookup */
    bool json;
    bool sockets;              /* --sockets: socket fds instead of table lines */
    bool conn_only_option;     /* one of -t -u -l -a -c was given */
    bool pass_option;          /* one of -l -a -c --source --owners: a pass's, not --events' */
    const char *proc_root;     /* NULL: the library's default */
    uint32_t source;           /* --source: PROCSPY_SOURCE_* */
    uint32_t owners;           /* --owners: PROCSPY_OWNERS_* */
    uint32_t watch_ms;         /* --watch: the interval; 0 = list once */
    bool diagnose;             /* --diagnose: what the library learnt of the kernel */
    bool events;               /* --events: stream the tracer's events */
};

static void usage(FILE *out)
{
    fputs(
        "Usage: procspy [OPTION]...\n"
        "List every TCP and UDP socket on this host, in every network namespace,\n"
        "with the process that holds it (by walking /proc; run as root to see all).\n"
        "\n"
        "  -t, --tcp             TCP sockets (tcp, tcp6)\n"
        "  -u, --udp             UDP sockets (udp, udp6); default: -t and -u\n"
        "  -4, --ipv4            IPv4 sockets only\n"
        "  -6, --ipv6            IPv6 sockets only; default: -4 and -6\n"
        "  -l, --listening       only listening sockets: TCP LISTEN, UDP UNCONN\n"
        "  -a, --all             sockets in every state (the default)\n"
        "  -c, --connected       only connections: TCP ESTABLISHED, FIN_WAIT1,\n"
        "                        FIN_WAIT2, CLOSE_WAIT; UDP ESTAB (connected)\n"
        "                        (of -l, -a and -c the last one given counts)\n"
        "      --port PORT       only sockets with this port, local or remote\n"
        "  -n, --netns INODE     only the network namespace with this inode\n"
        "                        (stat -L -c %i /proc/PID/ns/net); only its\n"
        "                        tables are read\n"
        "  -N, --netns-name NAME only the network namespace ip netns calls NAME\n"
        "                        (/run/netns/NAME); as -n of its inode\n"
        "  -p, --pid PID         only sockets owned by this process; only its\n"
        "                        fds and its namespaces are read\n"
        "                        (-n and -p take a number: ss's -n and -p,\n"
        "                        numeric output and processes, are always on)\n"
        "      --no-owners       the tables alone: no process's fds are read,\n"
        "                        PID, FD and NAME are '-' (with -p, its sockets)\n"
        "      --json            one JSON object per line instead of a table\n"
        "  -H, --no-header       no header line above the table\n"
        "      --sockets         one line per socket file descriptor instead:\n"
        "                        PID FD NETNS INODE NAME (-n, -p, --json apply)\n"
        "      --proc DIR        read DIR instead of the host's /proc\n"
        "      --source SRC      where the tables come from: auto (the default:\n"
        "                        none for a namespace whose every socket the\n"
        "                        BPF owner scan holds, then netlink, then text),\n"
        "                        netlink or text\n"
        "      --owners HOW      how owners are found: auto (the default: the\n"
        "                        kernel's BPF iterator where it loads, else\n"
        "                        /proc/PID/fd), proc or bpf\n"
        "  -w, --watch SECONDS   print what changed, every SECONDS (a positive\n"
        "                        number, at most 86400, to the millisecond),\n"
        "                        until SIGINT or SIGTERM: the first poll lists\n"
        "                        every connection as appeared, later ones what\n"
        "                        appeared, disappeared, changed state or owner,\n"
        "                        and what opened and closed between two polls\n"
        "                        (closed: from the kernel's destroy notices; no\n"
        "                        owner, so -p hides them; -l and -c don't)\n"
        "      --events          stream live events, a line each, as the kernel\n"
        "                        reports them through the library's BPF tracer,\n"
        "                        until SIGINT or SIGTERM (then exit 0): connect,\n"
        "                        accept, close, send, state, listen, lost; -t,\n"
        "                        -u, -4, -6, --port, -n, -N and -p filter them\n"
        "                        (-p: the events whose owner is PID)\n"
        "      --diagnose        list the connections without printing them, then\n"
        "                        start the BPF tracer, then print what the library\n"
        "                        learnt of the running kernel (its probes, whether\n"
        "                        the BPF owner scan loads, each tracer hook's\n"
        "                        state, or why not) and exit\n"
        "  -h, --help            show this help and exit\n"
        "  -V, --version         show the library version and exit\n"
        "\n"
        "Table: NETNS PROTO STATE LOCAL REMOTE USER PID FD NAME; '-' where no\n"
        "owner is visible (TIME_WAIT sockets, or opened during the walk). UDP has\n"
        "no states: UNCONN is an unconnected socket, ESTAB a connected one.\n"
        "An unbound port shows as '*', as ss shows it (0.0.0.0:*). USER is the\n"
        "socket's owner as the kernel's table gives it (its uid where no name\n"
        "is known; '-' for a TIME_WAIT line, which keeps none).\n"
        "Process names are shown as plain ASCII: backslash, control bytes and\n"
        "bytes >= 0x80 are escaped C-style (\\\\, \\n, \\t, \\xHH).\n"
        "--watch puts EVENT first (appeared, disappeared, state, owner, closed) and,\n"
        "for state and owner, what it was at the poll before last: \"was STATE\"\n"
        "or \"was PID/FD NAME\" (\"was -\": no owner); a disappeared row is the\n"
        "connection as it was last seen.\n"
        "--events puts EVENT first (connect, accept, close, send, state, listen,\n"
        "lost); STATE is OLD->NEW for a state event; FD is '-' (an event knows\n"
        "the process, not its descriptor); a lost row says how many were lost.\n"
        "\n"
        "JSON keys: netns proto (\"tcp\"/\"udp\") family (4/6) state state_name\n"
        "local_addr local_port remote_addr remote_port inode uid pid fd name\n"
        "start_time; pid, fd, name and start_time are null where no owner is\n"
        "visible. With --sockets: pid fd netns inode name start_time. With\n"
        "--watch: \"event\" first, then the connection's keys; a state event\n"
        "adds old_state old_state_name, an owner event old_pid old_fd old_name\n"
        "old_start_time (null where it had no owner). With --events: \"event\"\n"
        "first, the connection's keys (fd null), then old_state (a state event's\n"
        "old state name, else null), time (CLOCK_BOOTTIME ns), cookie (the\n"
        "kernel's socket cookie); a lost line adds lost (how many), its\n"
        "connection keys all zeros.\n"
        "Names are raw bytes: valid UTF-8 is kept as is, and each byte that is\n"
        "not part of valid UTF-8 becomes \\u00XX (XX = the byte), so the output\n"
        "is always valid JSON.\n"
        "\n"
        "The closing count line (\"N connections in M namespaces (K without a\n"
        "visible owner)\", \"N sockets in M namespaces\", with --watch \"N events\n"
        "in P polls\", or with --events \"N events (L lost)\") goes to stderr, so\n"
        "stdout holds only the records.\n"
        "M counts the namespaces listed. A line after it says what could not be\n"
        "read, if anything (namespaces unreachable, sockets not asked, files\n"
        "truncated, tables unreadable). --watch flushes its output after each\n"
        "poll, --events after each batch of events.\n"
        "\n"
        "Exit status: 0 ok, 1 error, 2 bad usage, 128 + the signal that ended\n"
        "it: 130 SIGINT, 143 SIGTERM (--watch ends only so; --events ends so\n"
        "with 0, its normal end).\n",
        out);
}

/* Parses a whole decimal number into [min, max], or fails. */
static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9') /* strtoull would accept " -1" */
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Parses "S" or "S.FFF" seconds (digits only, at most 3 after the point)
 * into milliseconds in [1, WATCH_MAX_MS], or fails: "0", "-1", "1e3",
 * " 5" and "5s" are all refused. */
static bool parse_interval(const char *s, uint32_t *ms)
{
    uint64_t v = 0;
    int frac = -1; /* digits after the point; -1 before it */

    if (*s < '0' || *s > '9')
        return false;
    for (; *s; s++) {
        if (*s == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*s < '0' || *s > '9' || frac == 3 || v > WATCH_MAX_MS)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
        if (frac >= 0)
            frac++;
    }
    for (frac = frac < 0 ? 0 : frac; frac < 3; frac++)
        v *= 10;
    if (v == 0 || v > WATCH_MAX_MS)
        return false;
    *ms = (uint32_t)v;
    return true;
}

/* An option value's name and the library constant it stands for. */
struct choice {
    const char *name;
    uint32_t value;
};

/* The value named `s` in `choices` (ended by a NULL name), or false. */
static bool pick(const struct choice *choices, const char *s, uint32_t *out)
{
    for (; choices->name; choices++)
        if (strcmp(choices->name, s) == 0) {
            *out = choices->value;
            return true;
        }
    return false;
}

static void bad_usage(const char *fmt, const char *arg)
{
    fputs("procspy: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'procspy --help' for more information.\n", stderr);
    exit(EXIT_USAGE);
}

/*
 * -n or -p got something that is not a number. In ss they are flags
 * (numeric output, show processes), and "procspy -tlnp" is an ss habit:
 * say that both are always on here, and where the bad value came from the
 * same cluster of short options, offer the cluster without them.
 */
static void bad_number(const char *what, const char *arg, const char *cluster)
{
    char try[64];
    size_t n = 0;
    const char *c;

    fprintf(stderr, "procspy: invalid %s '%s'\n", what, arg);
    fputs("procspy: -n takes a namespace inode (-N a name of ip netns) and -p a pid;\n"
          "procspy: what ss's -n and -p do (numbers, processes) procspy always does\n",
          stderr);
    if (cluster[0] == '-' && cluster[1] != '-' && arg > cluster && arg < cluster + strlen(cluster)) {
        for (c = cluster + 1; *c && n + 2 < sizeof try; c++)
            if (*c != 'n' && *c != 'p')
                try[n++] = *c;
        try[n] = '\0';
        fprintf(stderr, "Did you mean 'procspy%s%s'?\n", n ? " -" : "", try);
    }
    fputs("Try 'procspy --help' for more information.\n", stderr);
    exit(EXIT_USAGE);
}

/* -N NAME: the inode of the namespace file ip netns keeps as NAME. */
static uint64_t netns_by_name(const char *name)
{
    char path[sizeof NETNS_RUN_DIR + 256];
    struct statfs fs;
    struct stat st;

    if (name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) > 255)
        bad_usage("invalid namespace name '%s' (a name ip netns lists)", name);
    snprintf(path, sizeof path, NETNS_RUN_DIR "%s", name);
    if (stat(path, &st) != 0 || statfs(path, &fs) != 0) {
        fprintf(stderr, "procspy: no network namespace named '%s' (%s: %s)\n", name, path, strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (fs.f_type != NSFS_MAGIC_NUMBER) {
        fprintf(stderr, "procspy: %s is not a namespace (is ip netns add %s half done?)\n", path, name);
        exit(EXIT_FAILURE);
    }
    return (uint64_t)st.st_ino;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_JSON = 256, OPT_SOCKETS, OPT_PROC, OPT_SOURCE, OPT_OWNERS, OPT_DIAGNOSE, OPT_NO_OWNERS, OPT_PORT,
        OPT_EVENTS
    };
    static const struct choice sources[] = {
        { "auto", PROCSPY_SOURCE_AUTO }, { "netlink", PROCSPY_SOURCE_NETLINK },
        { "text", PROCSPY_SOURCE_TEXT }, { NULL, 0 },
    };
    static const struct choice owners[] = {
        { "auto", PROCSPY_OWNERS_AUTO }, { "proc", PROCSPY_OWNERS_PROC },
        { "bpf", PROCSPY_OWNERS_BPF }, { NULL, 0 },
    };
    static const struct option longopts[] = {
        { "tcp", no_argument, NULL, 't' },
        { "udp", no_argument, NULL, 'u' },
        { "ipv4", no_argument, NULL, '4' },
        { "ipv6", no_argument, NULL, '6' },
        { "port", required_argument, NULL, OPT_PORT },
        { "netns-name", required_argument, NULL, 'N' },
        { "no-header", no_argument, NULL, 'H' },
        { "listening", no_argument, NULL, 'l' },
        { "all", no_argument, NULL, 'a' },
        { "connected", no_argument, NULL, 'c' },
        { "netns", required_argument, NULL, 'n' },
        { "pid", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, OPT_JSON },
        { "sockets", no_argument, NULL, OPT_SOCKETS },
        { "proc", required_argument, NULL, OPT_PROC },
        { "source", required_argument, NULL, OPT_SOURCE },
        { "owners", required_argument, NULL, OPT_OWNERS },
        { "diagnose", no_argument, NULL, OPT_DIAGNOSE },
        { "events", no_argument, NULL, OPT_EVENTS },
        { "no-owners", no_argument, NULL, OPT_NO_OWNERS },
        { "watch", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int c, at = optind;

    memset(o, 0, sizeof *o);
    opterr = 0; /* we word the errors ourselves */
    /* '+': stop at the first operand, so argv[at] is the element in hand;
     * ':': a missing argument returns ':' instead of '?'. */
    while ((c = getopt_long(argc, argv, "+:tu46lacn:N:p:w:HhV", longopts, NULL)) != -1) {
        const char *arg = argv[at];
        bool is_long = strncmp(arg, "--", 2) == 0;
        char short_opt[3] = { '-', (char)optopt, '\0' };

        at = optind;
        switch (c) {
        case 't': o->protocols |= PROCSPY_PROTO_TCP; o->conn_only_option = true; break;
        case 'u': o->protocols |= PROCSPY_PROTO_UDP; o->conn_only_option = true; break;
        case '4': o->families |= FAMILY_4; o->conn_only_option = true; break;
        case '6': o->families |= FAMILY_6; o->conn_only_option = true; break;
        case 'H': o->no_header = true; break;
        case OPT_PORT:
            if (!parse_u64(optarg, 1, UINT16_MAX, &v))
                bad_usage("invalid port '%s' (1 to 65535)", optarg);
            o->port_set = true;
            o->port = (uint16_t)v;
            o->conn_only_option = true;
            break;
        case 'N':
            o->netns_name = optarg;
            break;
        case 'l': o->states = STATES_LISTENING; o->conn_only_option = o->pass_option = true; break;
        case 'a': o->states = STATES_ALL; o->conn_only_option = o->pass_option = true; break;
        case 'c': o->states = STATES_CONNECTED; o->conn_only_option = o->pass_option = true; break;
        case 'n':
            if (!parse_u64(optarg, 1, UINT64_MAX, &v))
                bad_number("namespace inode", optarg, arg);
            o->netns_set = true;
            o->netns = v;
            break;
        case 'p':
            if (!parse_u64(optarg, 1, INT32_MAX, &v))
                bad_number("pid", optarg, arg);
            o->pid_set = true;
            o->pid = (int32_t)v;
            break;
        case 'w':
            if (!parse_interval(optarg, &o->watch_ms))
                bad_usage("invalid --watch interval '%s' (seconds: a positive number, at most 86400)", optarg);
            break;
        case OPT_JSON: o->json = true; break;
        case OPT_DIAGNOSE: o->diagnose = true; break;
        case OPT_EVENTS: o->events = true; break;
        case OPT_NO_OWNERS: o->no_owners = true; break;
        case OPT_SOCKETS: o->sockets = true; break;
        case OPT_PROC: o->proc_root = optarg; break;
        case OPT_SOURCE:
            if (!pick(sources, optarg, &o->source))
                bad_usage("invalid --source '%s' (auto, netlink or text)", optarg);
            o->conn_only_option = o->pass_option = true;
            break;
        case OPT_OWNERS:
            if (!pick(owners, optarg, &o->owners))
                bad_usage("invalid --owners '%s' (auto, proc or bpf)", optarg);
            o->conn_only_option = o->pass_option = true;
            break;
        case 'h':
            usage(stdout);
            exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
        case 'V':
            printf("procspy %s\n", procspy_version());
            exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
        case ':':
            bad_usage("option '%s' needs an argument", is_long ? arg : short_opt);
            break;
        default: /* '?' */
            if (!is_long)
                bad_usage("unknown option '%s'", short_opt);
            if (optopt != 0) /* a known long option given "=value" */
                bad_usage("option '%s' takes no argument", arg);
            bad_usage("unknown or ambiguous option '%s'", arg);
        }
    }
    if (optind < argc)
        bad_usage("unexpected argument '%s'", argv[optind]);
    if (o->sockets && o->conn_only_option)
        bad_usage("%s", "--sockets lists socket fds: -t, -u, -4, -6, -l, -a, -c, --port, --source and "
                        "--owners don't apply");
    if (o->netns_name && o->netns_set)
        bad_usage("%s", "-n and -N both name the namespace: give one");
    if (o->diagnose && (o->sockets || o->watch_ms || o->json))
        bad_usage("%s", "--diagnose prints what the library learnt: --sockets, --watch and --json don't apply");
    if (o->events && (o->sockets || o->watch_ms || o->diagnose))
        bad_usage("%s", "--events streams events: --sockets, --watch and --diagnose don't apply");
    if (o->events && (o->pass_option || o->no_owners))
        bad_usage("%s", "--events streams what the kernel reports: -l, -a, -c, --no-owners, --source and "
                        "--owners don't apply");
    if (o->sockets && o->watch_ms)
        bad_usage("%s", "--watch reports connections: it does not apply to --sockets");
    if (o->no_owners && (o->sockets || o->watch_ms))
        bad_usage("%s", "--no-owners applies to a listing of connections, not to --sockets or --watch");
    if (o->protocols == 0)
        o->protocols = PROCSPY_PROTO_TCP | PROCSPY_PROTO_UDP;
    if (o->families == 0)
        o->families = FAMILY_4 | FAMILY_6;
    if (o->netns_name) {
        o->netns = netns_by_name(o->netns_name);
        o->netns_set = true;
    }
}

/* ---- formatting ------------------------------------------------------- */

static const char *proto_name(const procspy_connection *c)
{
    if (c->protocol == PROCSPY_PROTO_UDP)
        return c->family == 6 ? "udp6" : "udp";
    return c->family == 6 ? "tcp6" : "tcp";
}

/* The address alone ("127.0.0.1", "::1"); bytes are in network order. */
static void format_addr(char out[INET6_ADDRSTRLEN], uint8_t family, const uint8_t addr[16])
{
    if (inet_ntop(family == 6 ? AF_INET6 : AF_INET, addr, out, INET6_ADDRSTRLEN) == NULL)
        strcpy(out, "?");
}

/* "addr:port", IPv6 in brackets: "[::1]:8080"; an unbound port (0) is
 * "*", as ss prints it: "0.0.0.0:*". */
static void format_endpoint(char out[INET6_ADDRSTRLEN + 8], uint8_t family,
                            const uint8_t addr[16], uint16_t port)
{
    char a[INET6_ADDRSTRLEN], p[8] = "*";

    format_addr(a, family, addr);
    if (port != 0)
        sprintf(p, "%u", (unsigned)port);
    sprintf(out, family == 6 ? "[%s]:%s" : "%s:%s", a, p);
}

/* The USER column: the name of `uid`, or the number where the user
 * database has none. The last few are kept: a listing asks for the same
 * handful of users thousands of times. */
static const char *user_name(uint32_t uid)
{
    static struct { uint32_t uid; bool set; char name[33]; } cache[16];
    static unsigned next;
    const struct passwd *pw;
    unsigned i;

    for (i = 0; i < sizeof cache / sizeof cache[0]; i++)
        if (cache[i].set && cache[i].uid == uid)
            return cache[i].name;
    i = next++ % (sizeof cache / sizeof cache[0]);
    pw = getpwuid((uid_t)uid);
    if (pw != NULL && strlen(pw->pw_name) < sizeof cache[i].name)
        strcpy(cache[i].name, pw->pw_name);
    else
        snprintf(cache[i].name, sizeof cache[i].name, "%lu", (unsigned long)uid);
    cache[i].uid = uid;
    cache[i].set = true;
    return cache[i].name;
}

/* A process name for the table: plain printable ASCII, C-style escapes. */
static void put_name_table(const char *name, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char b = (unsigned char)name[i];

        if (b == '\\') {
            fputs("\\\\", stdout);
        } else if (b == '\n') {
            fputs("\\n", stdout);
        } else if (b == '\t') {
            fputs("\\t", stdout);
        } else if (b < 0x20 || b >= 0x7f) {
            char esc[4] = { '\\', 'x', hex[b >> 4], hex[b & 15] };
            fwrite(esc, 1, sizeof esc, stdout);
        } else {
            putchar(b);
        }
    }
}

/* ---- the walks -------------------------------------------------------- */

/* What the callbacks share: the filters, and counts for the closing line. */
struct context {
    const struct options *opt;
    uint32_t tcp_states, udp_states; /* state masks, 1u << state */
    uint64_t rows, ownerless;
    uint64_t *seen_netns;            /* namespaces listed, for the count */
    size_t seen_len, seen_cap;
    uint64_t last_netns;
    bool queried;                    /* -n and -p were the library's to apply */
    bool out_of_memory;
    bool write_failed;
};

/*
 * Counts namespaces. The library delivers the records of one namespace
 * together, so a new inode is nearly always a new namespace; the list
 * check keeps the count right even if that ever changed.
 */
static bool note_netns(struct context *ctx, uint64_t netns)
{
    size_t i;

    if (ctx->seen_len > 0 && netns == ctx->last_netns)
        return true;
    ctx->last_netns = netns;
    for (i = 0; i < ctx->seen_len; i++)
        if (ctx->seen_netns[i] == netns)
            return true;
    if (ctx->seen_len == ctx->seen_cap) {
        size_t cap = ctx->seen_cap ? 2 * ctx->seen_cap : 64;
        uint64_t *p = realloc(ctx->seen_netns, cap * sizeof *p);

        if (p == NULL) {
            ctx->out_of_memory = true;
            return false;
        }
        ctx->seen_netns = p;
        ctx->seen_cap = cap;
    }
    ctx->seen_netns[ctx->seen_len++] = netns;
    return true;
}

/* Returns the callback's verdict: 0 to go on, 1 to end the walk. */
static int row_done(struct context *ctx)
{
    ctx->rows++;
    if (ferror(stdout)) {
        ctx->write_failed = true;
        return 1;
    }
    return 0;
}

/* The owner keys, each name after `prefix` ("" or "old_"): null where
 * none; fd null where the owner's descriptor is not known (an event's). */
static void put_owner_json(const char *prefix, const procspy_socket *o)
{
    if (o == NULL) {
        printf("\"%spid\":null,\"%sfd\":null,\"%sname\":null,\"%sstart_time\":null", prefix, prefix,
               prefix, prefix);
        return;
    }
    printf("\"%spid\":%ld,\"%sfd\":", prefix, (long)o->pid, prefix);
    if (o->fd < 0)
        fputs("null", stdout);
    else
        printf("%ld", (long)o->fd);
    printf(",\"%sname\":", prefix);
    put_json_string(o->name, o->name_len);
    printf(",\"%sstart_time\":%llu", prefix, (unsigned long long)o->start_time);
}

/* A connection's keys, without the braces around them. */
static void put_connection_json(const procspy_connection *c)
{
    char local[INET6_ADDRSTRLEN], remote[INET6_ADDRSTRLEN];

    format_addr(local, c->family, c->local_addr);
    format_addr(remote, c->family, c->remote_addr);
    printf("\"netns\":%llu,\"proto\":\"%s\",\"family\":%u,\"state\":%u,"
           "\"state_name\":\"%s\",\"local_addr\":\"%s\",\"local_port\":%u,"
           "\"remote_addr\":\"%s\",\"remote_port\":%u,\"inode\":%llu,\"uid\":%lu,",
           (unsigned long long)c->netns,
           c->protocol == PROCSPY_PROTO_UDP ? "udp" : "tcp",
           (unsigned)c->family, (unsigned)c->state, procspy_state_name(c->protocol, c->state),
           local, (unsigned)c->local_port, remote, (unsigned)c->remote_port,
           (unsigned long long)c->inode, (unsigned long)c->uid);
    put_owner_json("", c->owner);
}

/* "PID FD NAME" columns, or "- - -" where there is no owner; FD "-"
 * where its descriptor is not known (an event's). */
static void put_owner_table(const procspy_socket *o)
{
    if (o == NULL) {
        fputs("      - -     -", stdout);
        return;
    }
    if (o->fd < 0)
        printf("%7ld -     ", (long)o->pid);
    else
        printf("%7ld %-5ld ", (long)o->pid, (long)o->fd);
    put_name_table(o->name, o->name_len);
}

/* A connection's columns, without the newline; STATE is `state` where
 * given. A table line of inode 0 (TIME_WAIT) keeps no uid; an event's
 * connection, read from the socket itself, has one whatever its inode. */
static void put_connection_table(const procspy_connection *c, const char *state, bool uid_known)
{
    char local[INET6_ADDRSTRLEN + 8], remote[INET6_ADDRSTRLEN + 8];

    format_endpoint(local, c->family, c->local_addr, c->local_port);
    format_endpoint(remote, c->family, c->remote_addr, c->remote_port);
    printf("%-10llu %-5s %-12s %-23s %-23s %-8s ", (unsigned long long)c->netns,
           proto_name(c), state ? state : procspy_state_name(c->protocol, c->state), local, remote,
           uid_known ? user_name(c->uid) : "-");
    put_owner_table(c->owner);
}

/* Whether -4, -6 and --port let `c` through (the library has no such filters). */
static bool endpoint_wanted(const struct options *opt, const procspy_connection *c)
{
    if (!(opt->families & (c->family == 6 ? FAMILY_6 : FAMILY_4)))
        return false;
    return !opt->port_set || c->local_port == opt->port || c->remote_port == opt->port;
}

/* Whether the options let `c` through; with `old_owner`, -p also matches it. */
static bool wanted(const struct context *ctx, const procspy_connection *c, const procspy_socket *old_owner)
{
    const struct options *opt = ctx->opt;
    uint32_t states = c->protocol == PROCSPY_PROTO_UDP ? ctx->udp_states : ctx->tcp_states;

    /* The library filters with one mask for both protocols; refine it. */
    if (c->state >= 32 || !(states & (UINT32_C(1) << c->state)) || !endpoint_wanted(opt, c))
        return false;
    /* A listing asked the library for -n and -p (procspy_walker_query). */
    if (ctx->queried)
        return true;
    if (opt->netns_set && c->netns != opt->netns)
        return false;
    if (opt->pid_set && !(c->owner != NULL && c->owner->pid == opt->pid) &&
        !(old_owner != NULL && old_owner->pid == opt->pid))
        return false;
    return true;
}

/* procspy_connection_fn: one table line; c and c->owner live until we return. */
static int on_connection(void *userdata, const procspy_connection *c)
{
    struct context *ctx = userdata;

    if (!wanted(ctx, c, NULL))
        return 0;
    if (ctx->opt->diagnose) {
        ctx->rows++;
        return 0;
    }
    if (!note_netns(ctx, c->netns))
        return 1;
    if (c->owner == NULL)
        ctx->ownerless++;
    if (ctx->opt->json) {
        putchar('{');
        put_connection_json(c);
        fputs("}\n", stdout);
    } else {
        put_connection_table(c, NULL, c->inode != 0);
        putchar('\n');
    }
    return row_done(ctx);
}

/* names[kind] of a table indexed by a kind's value, or "unknown" for a
 * kind newer than this program. */
static const char *kind_name(const char *const *names, size_t n, unsigned kind)
{
    return kind < n && names[kind] != NULL ? names[kind] : "unknown";
}
#define KIND_NAME(names, kind) kind_name(names, sizeof names / sizeof names[0], (unsigned)(kind))

static const char *const change_names[] = {
    [PROCSPY_CHANGE_APPEARED] = "appeared", [PROCSPY_CHANGE_DISAPPEARED] = "disappeared",
    [PROCSPY_CHANGE_STATE] = "state",       [PROCSPY_CHANGE_OWNER] = "owner",
    [PROCSPY_CHANGE_SEEN_CLOSED] = "closed",
};

/* procspy_change_fn (--watch): one change; it and all it points at live
 * until we return. */
static int on_change(void *userdata, const procspy_change *ch)
{
    struct context *ctx = userdata;
    const procspy_connection *c = ch->connection;
    bool owner = ch->kind == PROCSPY_CHANGE_OWNER;
    bool closed = ch->kind == PROCSPY_CHANGE_SEEN_CLOSED;

    if (closed) {
        /* Its state is the one it was freed in, and it has no owner: -l and
         * -c don't apply, -p hides it. */
        const struct options *opt = ctx->opt;
        if (!(opt->protocols & c->protocol) || opt->pid_set || (opt->netns_set && c->netns != opt->netns) ||
            !endpoint_wanted(opt, c))
            return 0;
    } else if (!wanted(ctx, c, owner ? ch->old_owner : NULL)) {
        return 0;
    }
    if (ctx->opt->json) {
        printf("{\"event\":\"%s\",", KIND_NAME(change_names, ch->kind));
        put_connection_json(c);
        if (ch->kind == PROCSPY_CHANGE_STATE)
            printf(",\"old_state\":%u,\"old_state_name\":\"%s\"", (unsigned)ch->old_state,
                   procspy_state_name(c->protocol, ch->old_state));
        if (owner) {
            putchar(',');
            put_owner_json("old_", ch->old_owner);
        }
        fputs("}\n", stdout);
    } else {
        printf("%-11s ", KIND_NAME(change_names, ch->kind));
        put_connection_table(c, NULL, c->inode != 0);
        if (ch->kind == PROCSPY_CHANGE_STATE)
            printf(" was %s", procspy_state_name(c->protocol, ch->old_state));
        if (owner && ch->old_owner == NULL)
            fputs(" was -", stdout);
        if (owner && ch->old_owner != NULL) {
            printf(" was %ld/%ld ", (long)ch->old_owner->pid, (long)ch->old_owner->fd);
            put_name_table(ch->old_owner->name, ch->old_owner->name_len);
        }
        putchar('\n');
    }
    return row_done(ctx);
}

static const char *const event_names[] = {
    [PROCSPY_EVENT_CONNECT] = "connect", [PROCSPY_EVENT_ACCEPT] = "accept", [PROCSPY_EVENT_CLOSE] = "close",
    [PROCSPY_EVENT_SEND] = "send",       [PROCSPY_EVENT_STATE] = "state",   [PROCSPY_EVENT_LISTEN] = "listen",
    [PROCSPY_EVENT_LOST] = "lost",
};

/* procspy_event_fn (--events): one event; it and all it points at live
 * until we return. The library filters by protocol; the rest is ours. A
 * lost row passes every filter: what is missing may be what was asked for. */
static int on_event(void *userdata, const procspy_event *e)
{
    struct context *ctx = userdata;
    const struct options *opt = ctx->opt;
    const procspy_connection *c = e->connection;
    bool lost = e->kind == PROCSPY_EVENT_LOST;
    bool state = e->kind == PROCSPY_EVENT_STATE;

    if (!lost && (!endpoint_wanted(opt, c) || (opt->netns_set && c->netns != opt->netns) ||
                  (opt->pid_set && (c->owner == NULL || c->owner->pid != opt->pid))))
        return 0;
    if (opt->json) {
        printf("{\"event\":\"%s\",", KIND_NAME(event_names, e->kind));
        put_connection_json(c);
        if (state)
            printf(",\"old_state\":\"%s\"", procspy_state_name(c->protocol, e->old_state));
        else
            fputs(",\"old_state\":null", stdout);
        printf(",\"time\":%llu,\"cookie\":%llu", (unsigned long long)e->time_ns,
               (unsigned long long)e->cookie);
        if (lost)
            printf(",\"lost\":%llu", (unsigned long long)e->lost);
        fputs("}\n", stdout);
    } else if (lost) {
        printf("%-11s %llu events lost (the tracer's ring was full)\n", "lost", (unsigned long long)e->lost);
    } else {
        char change[40]; /* "NEW_SYN_RECV->NEW_SYN_RECV" at most */

        if (state)
            snprintf(change, sizeof change, "%s->%s", procspy_state_name(c->protocol, e->old_state),
                     procspy_state_name(c->protocol, c->state));
        printf("%-11s ", KIND_NAME(event_names, e->kind));
        put_connection_table(c, state ? change : NULL, true);
        putchar('\n');
    }
    return row_done(ctx);
}

/* procspy_socket_fn: one socket fd; s lives until we return. */
static int on_socket(void *userdata, const procspy_socket *s)
{
    struct context *ctx = userdata;
    const struct options *opt = ctx->opt;

    if (opt->netns_set && s->netns != opt->netns)
        return 0;
    if (opt->pid_set && s->pid != opt->pid)
        return 0;
    if (!note_netns(ctx, s->netns))
        return 1;
    if (opt->json) {
        printf("{\"pid\":%ld,\"fd\":%ld,\"netns\":%llu,\"inode\":%llu,\"name\":",
               (long)s->pid, (long)s->fd, (unsigned long long)s->netns,
               (unsigned long long)s->inode);
        put_json_string(s->name, s->name_len);
        printf(",\"start_time\":%llu}\n", (unsigned long long)s->start_time);
    } else {
        printf("%7ld %-5ld %-10llu %-10llu ", (long)s->pid, (long)s->fd,
               (unsigned long long)s->netns, (unsigned long long)s->inode);
        put_name_table(s->name, s->name_len);
        putchar('\n');
    }
    return row_done(ctx);
}

/* ---- main ------------------------------------------------------------- */

/* Ctrl-C ends the walk cleanly: procspy_walker_stop is async-signal-safe,
 * and so is the write that wakes --watch from its wait (a self-pipe: no
 * signal between the check and the wait is missed). */
static procspy_walker *volatile running_walker;
static volatile sig_atomic_t interrupted; /* the signal, once one came */
static int wake[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;

    interrupted = sig;
    procspy_walker_stop(running_walker);
    if (wake[1] >= 0 && write(wake[1], "", 1) < 0) {
        /* full already: one byte is enough to wake */
    }
    errno = saved;
}

static void set_signals(void (*handler)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* --diagnose: a pass has run, then the tracer was started; say how each
 * went, then what the walker learnt. */
static bool print_diagnosis(procspy_walker *walker, procspy_status pass, uint64_t rows, procspy_status events,
                            const char *events_error)
{
    size_t len = 0;
    char *text;

    printf("procspy %s\n", procspy_version());
    if (pass == PROCSPY_OK)
        printf("connections pass: ok, %llu connections\n", (unsigned long long)rows);
    else
        printf("connections pass: failed (%s)\n", procspy_status_str(pass));
    if (events == PROCSPY_OK)
        puts("events (BPF tracer): started");
    else
        printf("events (BPF tracer): failed: %s (%s)\n", events_error ? events_error : "?",
               procspy_status_str(events));
    if (procspy_walker_diagnose(walker, NULL, 0, &len) != PROCSPY_BUFFER_TOO_SMALL)
        return false;
    text = malloc(len + 1);
    if (text == NULL || procspy_walker_diagnose(walker, text, len + 1, &len) != PROCSPY_OK) {
        free(text);
        return false;
    }
    fputs(text, stdout);
    free(text);
    return true;
}

/* This thread's last library error, to free; NULL if none or no memory. */
static char *library_error(void)
{
    size_t len = procspy_last_error(NULL, 0);
    char *msg = len > 0 ? malloc(len + 1) : NULL;

    if (msg != NULL)
        (void)procspy_last_error(msg, len + 1);
    return msg;
}

/* Prints this thread's last library error, "procspy: <what failed>". */
static void print_library_error(procspy_status status)
{
    char *msg = library_error();

    fprintf(stderr, "procspy: %s\n", msg ? msg : procspy_status_str(status));
    free(msg);
}

/* The self-pipe, non-blocking at both ends; false if it can't be made. */
static bool make_wake_pipe(void)
{
    int i;

    if (pipe(wake) != 0)
        return false;
    for (i = 0; i < 2; i++)
        if (fcntl(wake[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(wake[i], F_SETFD, FD_CLOEXEC) != 0)
            return false;
    return true;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --watch: a changes call every interval, on a fixed cadence (a late poll
 * starts the next interval at once, a very late one starts the cadence
 * afresh), until a signal or a failure. Returns the last call's status. */
static procspy_status watch(procspy_walker *walker, struct context *ctx, uint32_t state_mask,
                            uint64_t *polls)
{
    const struct options *opt = ctx->opt;
    uint64_t next = now_ms();
    procspy_status status;
    int tracer;

    /* The tracer, where it runs, names who opened and closed a connection
       between two polls; without it those come with no process. */
    if (procspy_walker_events_fd(walker, &tracer) != PROCSPY_OK)
        tracer = -1;
    for (;;) {
        struct pollfd wait_for = { wake[0], POLLIN, 0 };
        uint64_t now;

        /* NULL, 0: the walker's own scratch buffer, so every namespace fits. */
        status = procspy_walker_changes(walker, NULL, 0, opt->protocols, state_mask, on_change, ctx, NULL);
        ++*polls;
        if (fflush(stdout) != 0)
            ctx->write_failed = true;
        if (status != PROCSPY_OK || ctx->write_failed || interrupted)
            return status;
        now = now_ms();
        next += opt->watch_ms;
        if (next + opt->watch_ms < now)
            next = now;
        if (poll(&wait_for, 1, next > now ? (int)(next - now) : 0) != 0 || interrupted)
            return status; /* woken, or poll failed: either way, done */
    }
}

/* --events: events calls back to back, each batch flushed, until a signal
 * (procspy_walker_stop ends a waiting call at once: PROCSPY_STOPPED) or a
 * failure. Returns the last call's status; counts what the kernel lost and
 * the ring records the library dropped. */
static procspy_status stream_events(procspy_walker *walker, struct context *ctx, uint64_t *lost,
                                    uint64_t *dropped)
{
    procspy_status status;

    do {
        procspy_walk_stats_ext ext = {0};

        status = procspy_walker_events(walker, EVENTS_WAIT_MS, ctx->opt->protocols, on_event, ctx, NULL);
        if (procspy_walker_stats_ext(walker, &ext, sizeof ext) == PROCSPY_OK) {
            *lost += ext.events_lost;
            *dropped += ext.events_dropped;
        }
        if (fflush(stdout) != 0)
            ctx->write_failed = true;
    } while (status == PROCSPY_OK && !ctx->write_failed);
    return status;
}

/* What the pass could not read, if anything, on stderr after the count:
 * a limit never hides something in silence. */
static void warn_unread(const procspy_walker *walker)
{
    procspy_walk_stats_ext ext = {0};
    if (procspy_walker_stats_ext(walker, &ext, sizeof ext) != PROCSPY_OK)
        return;
    if (ext.netns_unreachable == 0 && ext.closes_stalled == 0 && ext.files_truncated == 0 &&
        ext.tables_unreadable == 0)
        return;
    fprintf(stderr,
            "procspy: not everything could be read: %llu namespaces unreachable (%llu for want of fds), "
            "%llu sockets not asked (closes stalled), %llu files truncated, %llu tables unreadable "
            "(procspy --diagnose says more)\n",
            (unsigned long long)ext.netns_unreachable, (unsigned long long)ext.netns_unreachable_fds,
            (unsigned long long)ext.closes_stalled, (unsigned long long)ext.files_truncated,
            (unsigned long long)ext.tables_unreadable);
}

int main(int argc, char **argv)
{
    static char outbuf[1 << 20]; /* a walk can print 100k lines */
    struct options opt;
    struct context ctx;
    procspy_walker *walker = NULL;
    procspy_status status;
    uint64_t polls = 0, lost = 0, dropped = 0;
    int rc = EXIT_SUCCESS;

    parse_options(argc, argv, &opt);
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    memset(&ctx, 0, sizeof ctx);
    ctx.opt = &opt;
    switch (opt.states) {
    case STATES_ALL:
        ctx.tcp_states = ctx.udp_states = PROCSPY_STATES_ALL;
        break;
    case STATES_LISTENING:
        ctx.tcp_states = PROCSPY_STATES_LISTEN;
        ctx.udp_states = UINT32_C(1) << PROCSPY_STATE_CLOSE;
        break;
    case STATES_CONNECTED:
        ctx.tcp_states = PROCSPY_STATES_CONNECTED;
        ctx.udp_states = UINT32_C(1) << PROCSPY_STATE_ESTABLISHED;
        break;
    }
    if (!(opt.protocols & PROCSPY_PROTO_TCP))
        ctx.tcp_states = 0;
    if (!(opt.protocols & PROCSPY_PROTO_UDP))
        ctx.udp_states = 0;

    status = procspy_walker_new(opt.proc_root, &walker);
    if (status != PROCSPY_OK) {
        print_library_error(status);
        return EXIT_FAILURE;
    }

    status = procspy_walker_set_source(walker, opt.source);
    if (status == PROCSPY_OK)
        status = procspy_walker_set_owner_scan(walker, opt.owners);
    if (status != PROCSPY_OK) {
        print_library_error(status);
        procspy_walker_free(walker);
        return EXIT_FAILURE;
    }

    if (opt.watch_ms && !make_wake_pipe()) {
        perror("procspy: pipe");
        procspy_walker_free(walker);
        return EXIT_FAILURE;
    }
    running_walker = walker;
    set_signals(on_signal);
    if (opt.watch_ms) {
        if (!opt.json && !opt.no_header)
            printf("%-11s %-10s %-5s %-12s %-23s %-23s %-8s %7s %-5s %s\n", "EVENT", "NETNS", "PROTO",
                   "STATE", "LOCAL", "REMOTE", "USER", "PID", "FD", "NAME");
        status = watch(walker, &ctx, ctx.tcp_states | ctx.udp_states, &polls);
    } else if (opt.events) {
        int fd;

        /* The tracer first: a kernel that refuses it gets no header, and
         * the header, flushed, says the hooks are attached. */
        status = procspy_walker_events_fd(walker, &fd);
        if (status == PROCSPY_OK && !opt.json && !opt.no_header) {
            printf("%-11s %-10s %-5s %-12s %-23s %-23s %-8s %7s %-5s %s\n", "EVENT", "NETNS", "PROTO",
                   "STATE", "LOCAL", "REMOTE", "USER", "PID", "FD", "NAME");
            fflush(stdout);
        }
        if (status == PROCSPY_OK)
            status = stream_events(walker, &ctx, &lost, &dropped);
    } else if (opt.diagnose) {
        procspy_status events;
        char *events_error = NULL;
        int fd;

        status = procspy_walker_connections(walker, NULL, 0, opt.protocols, ctx.tcp_states | ctx.udp_states,
                                            on_connection, &ctx, NULL);
        if (status != PROCSPY_OK)
            print_library_error(status);
        /* The tracer, so the diagnosis lists each hook: started by its fd,
         * which leaves the pass's counters the last ones (an events call
         * would put its own there). */
        events = procspy_walker_events_fd(walker, &fd);
        if (events != PROCSPY_OK)
            events_error = library_error();
        if (!print_diagnosis(walker, status, ctx.rows, events, events_error))
            ctx.out_of_memory = true;
        free(events_error);
        status = PROCSPY_OK; /* the diagnosis is the answer, the pass's failure in it */
    } else if (opt.sockets) {
        if (!opt.json && !opt.no_header)
            printf("%7s %-5s %-10s %-10s %s\n", "PID", "FD", "NETNS", "INODE", "NAME");
        /* cap 0: count the TCP tables only; we want the socket records. */
        status = procspy_walker_walk(walker, NULL, 0, on_socket, &ctx, NULL);
    } else {
        if (!opt.json && !opt.no_header)
            printf("%-10s %-5s %-12s %-23s %-23s %-8s %7s %-5s %s\n", "NETNS", "PROTO",
                   "STATE", "LOCAL", "REMOTE", "USER", "PID", "FD", "NAME");
        uint32_t flags = (opt.pid_set ? PROCSPY_QUERY_PIDS : 0) | (opt.netns_set ? PROCSPY_QUERY_NETNS : 0) |
                         (opt.no_owners ? PROCSPY_QUERY_NO_OWNERS : 0);

        ctx.queried = true;
        /* NULL, 0: the walker's own scratch buffer, so every namespace fits. */
        status = procspy_walker_query(walker, opt.pid_set ? &opt.pid : NULL, opt.pid_set,
                                      opt.netns_set ? &opt.netns : NULL, opt.netns_set, flags, NULL, 0,
                                      opt.protocols, ctx.tcp_states | ctx.udp_states, on_connection, &ctx, NULL);
    }
    set_signals(SIG_DFL);
    running_walker = NULL;

    if (fflush(stdout) != 0 || ctx.write_failed) {
        fputs("procspy: error writing the output\n", stderr);
        rc = EXIT_FAILURE;
    } else if (ctx.out_of_memory) {
        fputs("procspy: out of memory\n", stderr);
        rc = EXIT_FAILURE;
    } else if (opt.events && interrupted && status == PROCSPY_STOPPED) {
        /* A signal is how --events ends: not a failure. */
        fprintf(stderr, "%llu events (%llu lost)\n", (unsigned long long)ctx.rows, (unsigned long long)lost);
        if (dropped > 0)
            fprintf(stderr, "procspy: %llu records of the tracer's ring made no sense and were dropped\n",
                    (unsigned long long)dropped);
    } else if (interrupted && opt.watch_ms) {
        fprintf(stderr, "%llu events in %llu polls\n", (unsigned long long)ctx.rows, (unsigned long long)polls);
        rc = EXIT_SIGNAL + interrupted;
    } else if (interrupted) {
        fputs("procspy: interrupted\n", stderr);
        rc = EXIT_SIGNAL + interrupted;
    } else if (status != PROCSPY_OK) {
        /* Includes PROCSPY_BUFFER_TOO_SMALL, which the walker's own buffer
         * never returns: some namespace would then be missing. */
        print_library_error(status);
        rc = EXIT_FAILURE;
    } else if (opt.diagnose) {
        /* Its count is in the diagnosis. */
    } else if (opt.sockets) {
        fprintf(stderr, "%llu sockets in %llu namespaces\n",
                (unsigned long long)ctx.rows, (unsigned long long)ctx.seen_len);
    } else {
        fprintf(stderr, "%llu connections in %llu namespaces (%llu without a visible owner)\n",
                (unsigned long long)ctx.rows, (unsigned long long)ctx.seen_len,
                (unsigned long long)ctx.ownerless);
        warn_unread(walker);
    }

    free(ctx.seen_netns);
    procspy_walker_free(walker);
    return rc;
}
