/*
 * wanmig-agent: the QEMU guest's workload and service, the last step of its init.
 *
 * One process, one ppoll() loop, no threads:
 *  - a memory workload with the emulated VM's keys (migrator/memory/workload.py): writes to a
 *    buffer of buf_mib MiB at `rate` MiB/s of 4 KiB page writes (a write changes write_bytes
 *    bytes of a page, 64..512 at random when 0), uniform or Zipf over a working set of `ws` of
 *    the pages (permuted by the seed so the hot pages are spread), optionally as a square wave
 *    (burst_period, burst_duty), text (compressible) or random bytes; paced by CLOCK_MONOTONIC
 *    in batches every 10 ms with the fractional remainder carried, as DirtyPlan does;
 *  - UDP echo on 7007 (a 16-byte request gets the same 16 bytes and the location, 16 bytes,
 *    NUL-padded) and TCP key-value on 7070 (PUT/GET lines, migrator/guest/service.py);
 *  - its location, lines `site <name>` read from the second serial port (raw mode).
 *
 * Parameters are `wanmig.<key>=<value>` words of the kernel command line.  Console lines:
 * `wanmig-agent ready` once everything listens and the buffer is filled; one line per bad
 * input; exit status 2 with a message on a bad parameter, 1 when something cannot be set up.
 *
 * For tests on a host: agent [--cmdline FILE] [--location PATH] [--bind ADDR]
 *                            [--udp-port N] [--tcp-port N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MIB (1024.0 * 1024.0)
#define MAX_LINE 2048          /* a longer request line closes its connection */
#define MAX_CONNS 64
#define OUT_HIGH (1 << 20)     /* stop reading a client that does not read its replies */
#define TICK_NS 10000000L      /* the workload's batch period */
#define MAX_DT 0.1             /* a longer gap (paused, starved) is not caught up */
#define KEY_MAX 64
#define VALUE_MAX 1024
#define STORE_MAX (4u << 20)   /* bytes of keys and values the store holds at most */
#define LOC_MAX 16
#define POOL_BYTES (1u << 20)
#define ZERO_FRAC 0.35         /* the initial page mix of migrator.memory.pages.DEFAULT_MIX */
#define TEXT_FRAC 0.50

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wanmig-agent", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

/* --- random numbers: splitmix64 to seed, xorshift64* to draw ---------------------------- */

static uint64_t rng;

static uint64_t next64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static double unit(void) { return (double)(next64() >> 11) * 0x1.0p-53; }
static uint64_t below(uint64_t n) { return next64() % n; }

static void seed_rng(uint64_t seed)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    rng = (z ^ (z >> 31)) | 1;
}

static void random_fill(unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint64_t w = next64();
        memcpy(p, &w, 8);
        p += 8;
        n -= 8;
    }
    while (n--)
        *p++ = (unsigned char)next64();
}

/* --- parameters ------------------------------------------------------------------------- */

struct params {
    long buf_mib;
    double rate, ws, zipf_s, burst_period, burst_duty;
    long write_bytes;          /* 0: 64..512 at random */
    int zipf, random_content;
    uint64_t seed;
};

static void bad_param(const char *key, const char *value, const char *expected)
{
    say(": bad parameter wanmig.%s=%s: expected %s", key, value, expected);
    exit(2);
}

static double number(const char *key, const char *v, double lo, double hi, int lo_open)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
        char expected[96];
        snprintf(expected, sizeof expected, "a number in %s%g, %g]", lo_open ? "(" : "[", lo, hi);
        bad_param(key, v, expected);
    }
    return x;
}

static long integer(const char *key, const char *v, long lo, long hi)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "an integer in [%ld, %ld]", lo, hi);
        bad_param(key, v, expected);
    }
    return x;
}

static void set_param(struct params *p, const char *key, const char *v, int *seen)
{
    if (!strcmp(key, "ip"))
        return;                                   /* init's */
    if (!strcmp(key, "buf_mib")) {
        p->buf_mib = integer(key, v, 1, 1 << 20);
        seen[0] = 1;
    } else if (!strcmp(key, "rate")) {
        p->rate = number(key, v, 0, 1e6, 0);
        seen[1] = 1;
    } else if (!strcmp(key, "ws")) {
        p->ws = number(key, v, 0, 1, 1);
    } else if (!strcmp(key, "skew")) {
        if (strcmp(v, "uniform") && strcmp(v, "zipf"))
            bad_param(key, v, "uniform or zipf");
        p->zipf = !strcmp(v, "zipf");
    } else if (!strcmp(key, "zipf_s")) {
        p->zipf_s = number(key, v, 0, 10, 1);
    } else if (!strcmp(key, "burst_period")) {
        p->burst_period = number(key, v, 0, 1e6, 0);
    } else if (!strcmp(key, "burst_duty")) {
        p->burst_duty = number(key, v, 0, 1, 1);
    } else if (!strcmp(key, "write_bytes")) {
        p->write_bytes = integer(key, v, 0, PAGE);
    } else if (!strcmp(key, "content")) {
        if (strcmp(v, "text") && strcmp(v, "random"))
            bad_param(key, v, "text or random");
        p->random_content = !strcmp(v, "random");
    } else if (!strcmp(key, "seed")) {
        p->seed = (uint64_t)integer(key, v, 0, 0x7fffffffL);
    } else {
        bad_param(key, v, "one of the keys ip buf_mib rate ws skew zipf_s burst_period "
                          "burst_duty write_bytes content seed");
    }
}

static void read_params(const char *path, struct params *p)
{
    static char text[8192];
    int seen[2] = {0, 0};
    FILE *f = fopen(path, "r");
    if (!f) {
        say(": cannot read %s: %s", path, strerror(errno));
        exit(1);
    }
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    *p = (struct params){.ws = 1, .zipf_s = 1, .burst_duty = 1, .seed = 0};
    for (char *save = NULL, *w = strtok_r(text, " \t\n", &save); w;
         w = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(w, "wanmig.", 7))
            continue;
        char *eq = strchr(w, '=');
        if (!eq)
            bad_param(w + 7, "", "key=value");
        *eq = 0;
        set_param(p, w + 7, eq + 1, seen);
    }
    if (!seen[0])
        bad_param("buf_mib", "(missing)", "the buffer in MiB (required)");
    if (!seen[1])
        bad_param("rate", "(missing)", "the write rate in MiB/s (required)");
}

/* --- the memory workload ---------------------------------------------------------------- */

static struct params P;
static unsigned char *buf, *pool;
static size_t npages, ws_n;
static uint32_t *ws_pages;     /* the working set: a seeded random choice of pages, in rank order */
static double *cdf;            /* Zipf: cumulative probability of ranks 0..ws_n-1 */
static double plan_t, carry;
static uint64_t writes_done;

static void make_pool(void)
{
    static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";
    char words[1024][12];
    pool = malloc(POOL_BYTES);
    if (!pool) {
        say(": cannot allocate the text pool");
        exit(1);
    }
    for (int i = 0; i < 1024; i++) {
        int len = 2 + (int)below(9);
        for (int j = 0; j < len; j++) {
            double u = unit();
            words[i][j] = letters[(int)(26 * u * u)];
        }
        words[i][len] = 0;
    }
    size_t at = 0;
    while (at < POOL_BYTES) {
        double u = unit();
        char piece[24];
        int k;
        if (u < 0.03)
            k = snprintf(piece, sizeof piece, "%u ", (unsigned)below(100000));
        else if (u < 0.08)
            k = snprintf(piece, sizeof piece, "%s.\n", words[(int)(1024 * pow(unit(), 3))]);
        else
            k = snprintf(piece, sizeof piece, "%s ", words[(int)(1024 * pow(unit(), 3))]);
        for (int j = 0; j < k && at < POOL_BYTES; j++)
            pool[at++] = (unsigned char)piece[j];
    }
}

static void write_page(size_t page, size_t len)
{
    size_t off = below(PAGE - len + 1);
    unsigned char *dst = buf + page * PAGE + off;
    if (P.random_content)
        random_fill(dst, len);
    else
        memcpy(dst, pool + below(POOL_BYTES - len + 1), len);
}

static void setup_workload(void)
{
    npages = (size_t)P.buf_mib * (size_t)(MIB / PAGE);
    buf = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (buf == MAP_FAILED) {
        say(": cannot allocate a %ld MiB buffer: %s", P.buf_mib, strerror(errno));
        exit(1);
    }
    make_pool();
    for (size_t i = 0; i < npages; i++) {          /* a guest a while after boot */
        double u = unit();
        if (u < ZERO_FRAC)
            buf[i * PAGE] = 0;                     /* touched, still a zero page */
        else if (u < ZERO_FRAC + TEXT_FRAC)
            memcpy(buf + i * PAGE, pool + below(POOL_BYTES - PAGE + 1), PAGE);
        else
            random_fill(buf + i * PAGE, PAGE);
    }
    ws_n = (size_t)llround(P.ws * (double)npages);
    if (ws_n < 1)
        ws_n = 1;
    uint32_t *perm = malloc(npages * sizeof *perm);
    if (!perm) {
        say(": cannot allocate the working set");
        exit(1);
    }
    for (size_t i = 0; i < npages; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = 0; i < ws_n; i++) {            /* partial Fisher-Yates */
        size_t j = i + below(npages - i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    ws_pages = perm;
    if (P.zipf) {
        cdf = malloc(ws_n * sizeof *cdf);
        if (!cdf) {
            say(": cannot allocate the Zipf table");
            exit(1);
        }
        double sum = 0;
        for (size_t k = 0; k < ws_n; k++)
            cdf[k] = (sum += pow((double)(k + 1), -P.zipf_s));
        for (size_t k = 0; k < ws_n; k++)
            cdf[k] /= sum;
    }
}

static size_t draw_rank(void)
{
    if (!cdf)
        return below(ws_n);
    double u = unit();
    size_t lo = 0, hi = ws_n - 1;                  /* first rank whose cdf exceeds u */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static double on_time(double t0, double t1)
{
    if (P.burst_period <= 0)
        return t1 - t0;
    double on = P.burst_period * P.burst_duty;
    double c0 = floor(t0 / P.burst_period) * on + fmin(fmod(t0, P.burst_period), on);
    double c1 = floor(t1 / P.burst_period) * on + fmin(fmod(t1, P.burst_period), on);
    return c1 - c0;
}

static void run_writes(double dt)
{
    double peak = P.rate * MIB / (P.burst_period > 0 ? P.burst_duty : 1.0);
    double expected = peak * on_time(plan_t, plan_t + dt) / PAGE + carry;
    plan_t += dt;
    long n = (long)expected;
    carry = expected - (double)n;
    for (long i = 0; i < n; i++) {
        size_t len = P.write_bytes ? (size_t)P.write_bytes : 64 + below(449);
        write_page(ws_pages[draw_rank()], len);
    }
    writes_done += (uint64_t)n;
}

/* --- the key-value store: a chained hash table in the agent's memory ----------------------- */

struct entry {
    struct entry *next;
    char *value;
    char key[];
};

static struct entry **table;
static size_t table_n = 1024, entries, store_bytes;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static struct entry **slot(const char *key)
{
    struct entry **e = &table[hash(key) & (table_n - 1)];
    while (*e && strcmp((*e)->key, key))
        e = &(*e)->next;
    return e;
}

static void grow(void)
{
    struct entry **old = table;
    size_t old_n = table_n;
    struct entry **bigger = calloc(old_n * 2, sizeof *bigger);
    if (!bigger)
        return;                                     /* longer chains, still correct */
    table = bigger;
    table_n = old_n * 2;
    for (size_t i = 0; i < old_n; i++)
        for (struct entry *e = old[i], *next; e; e = next) {
            next = e->next;
            struct entry **s = &table[hash(e->key) & (table_n - 1)];
            e->next = *s;
            *s = e;
        }
    free(old);
}

static const char *put(const char *key, const char *value)
{
    struct entry **s = slot(key);
    size_t vlen = strlen(value);
    size_t old = *s ? strlen((*s)->value) : 0;
    if (store_bytes - old + vlen + (*s ? 0 : strlen(key)) > STORE_MAX)
        return "store full";
    char *copy = strdup(value);
    if (!copy)
        return "store full";
    if (*s) {
        free((*s)->value);
        (*s)->value = copy;
        store_bytes = store_bytes - old + vlen;
        return NULL;
    }
    struct entry *e = malloc(sizeof *e + strlen(key) + 1);
    if (!e) {
        free(copy);
        return "store full";
    }
    strcpy(e->key, key);
    e->value = copy;
    e->next = NULL;
    *s = e;
    store_bytes += strlen(key) + vlen;
    if (++entries > table_n)
        grow();
    return NULL;
}

static int key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > KEY_MAX)
        return 0;
    for (; *k; k++)
        if (!(*k >= 'a' && *k <= 'z') && !(*k >= 'A' && *k <= 'Z') && !(*k >= '0' && *k <= '9')
            && *k != '_' && *k != '.' && *k != '-')
            return 0;
    return 1;
}

static int value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > VALUE_MAX)
        return 0;
    for (; *v; v++)
        if ((unsigned char)*v < 0x21 || (unsigned char)*v > 0x7e)
            return 0;
    return 1;
}

/* The reply to one request line (NUL-terminated, without its newline), into out (>= 1100 B). */
static void handle_line(char *line, size_t len, char *out, size_t cap)
{
    static const char bad_key[] = "ERR bad key: expected 1 to 64 of A-Z a-z 0-9 _ . -\n";
    if (len && line[len - 1] == '\r')
        line[--len] = 0;
    if (memchr(line, 0, len)) {
        snprintf(out, cap, "ERR NUL in the line\n");
        return;
    }
    char *parts[4];
    int n = 0;
    for (char *p = line; n < 4;) {
        parts[n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp)
            break;
        *sp = 0;
        p = sp + 1;
    }
    int is_put = !strcmp(parts[0], "PUT"), is_get = !strcmp(parts[0], "GET");
    if ((is_put && n == 3) || (is_get && n == 2)) {
        if (!key_ok(parts[1])) {
            snprintf(out, cap, "%s", bad_key);
        } else if (is_get) {
            struct entry *e = *slot(parts[1]);
            snprintf(out, cap, e ? "VAL %s\n" : "NONE\n", e ? e->value : "");
        } else if (!value_ok(parts[2])) {
            snprintf(out, cap, "ERR bad value (%zu bytes): expected 1 to %d printable ASCII "
                               "characters without spaces\n", strlen(parts[2]), VALUE_MAX);
        } else {
            const char *err = put(parts[1], parts[2]);
            snprintf(out, cap, err ? "ERR %s\n" : "OK\n", err);
        }
    } else if (is_put || is_get) {
        snprintf(out, cap, "ERR usage: PUT <key> <value> | GET <key>\n");
    } else {
        snprintf(out, cap, "ERR unknown command %.32s\n", parts[0]);
    }
}

/* --- the service: sockets and connections ---------------------------------------------------- */

struct conn {
    int fd;
    size_t inlen, outlen, outcap;
    char in[2 * MAX_LINE + 2];
    char *out;
};

static struct conn *conns[MAX_CONNS];
static char location[LOC_MAX + 1] = "unknown";

static int listen_on(int type, const char *addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1, fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)
        || bind(fd, (struct sockaddr *)&sa, sizeof sa)
        || (type == SOCK_STREAM && listen(fd, 128))) {
        say(": cannot listen on %s %s/%d: %s", addr, type == SOCK_STREAM ? "tcp" : "udp", port,
            strerror(errno));
        exit(1);
    }
    return fd;
}

static void drop(int i)
{
    close(conns[i]->fd);
    free(conns[i]->out);
    free(conns[i]);
    conns[i] = NULL;
}

static void serve_udp(int fd)
{
    for (int burst = 0; burst < 256; burst++) {
        unsigned char req[2048], reply[32];
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, req, sizeof req, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        if (n != 16)
            continue;                               /* not an echo request: ignored */
        memcpy(reply, req, 16);
        memset(reply + 16, 0, 16);
        memcpy(reply + 16, location, strnlen(location, LOC_MAX));
        sendto(fd, reply, sizeof reply, MSG_DONTWAIT, (struct sockaddr *)&from, flen);
    }
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1, i;
        if (fd < 0)
            return;
        for (i = 0; i < MAX_CONNS && conns[i]; i++)
            ;
        struct conn *c = i < MAX_CONNS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            say(": refusing a connection: %d open already", MAX_CONNS);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        conns[i] = c;
    }
}

static int flush_out(struct conn *c)
{
    while (c->outlen) {
        ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        memmove(c->out, c->out + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
    }
    return 0;
}

static int queue_out(struct conn *c, const char *s)
{
    size_t n = strlen(s);
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 4096;
        while (cap < c->outlen + n)
            cap *= 2;
        char *bigger = realloc(c->out, cap);
        if (!bigger)
            return -1;
        c->out = bigger;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
    return 0;
}

static void read_conn(int i)
{
    struct conn *c = conns[i];
    ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop(i);
        return;
    }
    c->inlen += (size_t)n;
    char *nl, reply[VALUE_MAX + 256];
    while ((nl = memchr(c->in, '\n', c->inlen < MAX_LINE + 1 ? c->inlen : MAX_LINE + 1))) {
        size_t len = (size_t)(nl - c->in);
        *nl = 0;
        handle_line(c->in, len, reply, sizeof reply);
        memmove(c->in, nl + 1, c->inlen - len - 1);
        c->inlen -= len + 1;
        if (queue_out(c, reply)) {
            drop(i);
            return;
        }
    }
    if (c->inlen > MAX_LINE) {
        say(": closing a connection that sent a line over %d bytes", MAX_LINE);
        drop(i);
        return;
    }
    if (flush_out(c))
        drop(i);
}

/* --- the location: `site <name>` lines on the second serial port ------------------------------ */

static char loc_in[256];
static size_t loc_len;

static int open_location(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        say(": cannot open the location port %s: %s", path, strerror(errno));
        exit(1);
    }
    struct termios t;
    if (isatty(fd) && tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    return fd;
}

static void location_line(char *line)
{
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r')
        line[--n] = 0;
    const char *name = line + 5;
    size_t len = strncmp(line, "site ", 5) ? 0 : strlen(name);
    int ok = len >= 1 && len <= LOC_MAX;
    for (size_t j = 0; ok && j < len; j++)
        ok = name[j] > 0x20 && name[j] < 0x7f;
    if (!ok) {
        say(": bad location line '%.40s': expected 'site <1 to %d printable characters>'", line,
            LOC_MAX);
        return;
    }
    memset(location, 0, LOC_MAX);
    memcpy(location, name, len);
    say(" location %s", name);
}

static int read_location(int fd)
{
    ssize_t n = read(fd, loc_in + loc_len, sizeof loc_in - 1 - loc_len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    loc_len += (size_t)n;
    char *nl;
    while ((nl = memchr(loc_in, '\n', loc_len))) {
        *nl = 0;
        location_line(loc_in);
        loc_len -= (size_t)(nl + 1 - loc_in);
        memmove(loc_in, nl + 1, loc_len);
    }
    if (loc_len == sizeof loc_in - 1) {
        say(": bad location input: a line over %zu bytes, dropped", sizeof loc_in - 1);
        loc_len = 0;
    }
    return 0;
}

/* --- the loop -------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void meminfo(const char *when)
{
    char line[128];
    long total = -1, avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "MemTotal: %ld", &total);
        sscanf(line, "MemAvailable: %ld", &avail);
    }
    if (f)
        fclose(f);
    say(" memory %s total_kib=%ld available_kib=%ld", when, total, avail);
}

int main(int argc, char **argv)
{
    const char *cmdline = "/proc/cmdline", *loc_path = "/dev/ttyS1", *bind_addr = "0.0.0.0";
    int udp_port = 7007, tcp_port = 7070;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            goto usage;
        if (!strcmp(argv[i], "--cmdline"))
            cmdline = argv[++i];
        else if (!strcmp(argv[i], "--location"))
            loc_path = argv[++i];
        else if (!strcmp(argv[i], "--bind"))
            bind_addr = argv[++i];
        else if (!strcmp(argv[i], "--udp-port"))
            udp_port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tcp-port"))
            tcp_port = atoi(argv[++i]);
        else
            goto usage;
    }
    signal(SIGPIPE, SIG_IGN);
    read_params(cmdline, &P);
    seed_rng(P.seed);
    say(" buf_mib=%ld rate=%g ws=%g skew=%s zipf_s=%g burst_period=%g burst_duty=%g "
        "write_bytes=%ld content=%s seed=%llu", P.buf_mib, P.rate, P.ws,
        P.zipf ? "zipf" : "uniform", P.zipf_s, P.burst_period, P.burst_duty, P.write_bytes,
        P.random_content ? "random" : "text", (unsigned long long)P.seed);
    table = calloc(table_n, sizeof *table);
    int ufd = listen_on(SOCK_DGRAM, bind_addr, udp_port);
    int tfd = listen_on(SOCK_STREAM, bind_addr, tcp_port);
    int lfd = open_location(loc_path);
    meminfo("before");
    double t_fill = now_s();
    setup_workload();
    meminfo("after");
    say(" buffer filled in %.2f s", now_s() - t_fill);
    say(" ready");

    struct pollfd fds[3 + MAX_CONNS];
    int owner[3 + MAX_CONNS];
    double last = now_s(), next_tick = last + TICK_NS * 1e-9;
    for (;;) {
        int n = 0;
        fds[n] = (struct pollfd){.fd = ufd, .events = POLLIN};
        owner[n++] = -1;
        fds[n] = (struct pollfd){.fd = tfd, .events = POLLIN};
        owner[n++] = -2;
        if (lfd >= 0) {
            fds[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
            owner[n++] = -3;
        }
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i]) {
                short ev = (conns[i]->outlen < OUT_HIGH ? POLLIN : 0)
                           | (conns[i]->outlen ? POLLOUT : 0);
                fds[n] = (struct pollfd){.fd = conns[i]->fd, .events = ev};
                owner[n++] = i;
            }
        double wait = next_tick - now_s();
        struct timespec ts = {0, 0};
        if (wait > 0) {
            ts.tv_sec = (time_t)wait;
            ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        }
        if (ppoll(fds, (nfds_t)n, &ts, NULL) < 0 && errno != EINTR) {
            say(": poll failed: %s", strerror(errno));
            return 1;
        }
        for (int k = 0; k < n; k++) {
            if (!fds[k].revents)
                continue;
            if (owner[k] == -1)
                serve_udp(ufd);
            else if (owner[k] == -2)
                accept_all(tfd);
            else if (owner[k] == -3 && read_location(lfd)) {
                say(": the location port closed; keeping location %s", location);
                close(lfd);
                lfd = -1;
            } else if (owner[k] >= 0 && conns[owner[k]]) {
                if ((fds[k].revents & POLLOUT) && flush_out(conns[owner[k]]))
                    drop(owner[k]);
                else if (fds[k].revents & (POLLIN | POLLHUP | POLLERR))
                    read_conn(owner[k]);
            }
        }
        double t = now_s();
        if (t >= next_tick) {
            double dt = t - last;
            run_writes(dt > MAX_DT ? MAX_DT : dt);
            last = t;
            next_tick = t + TICK_NS * 1e-9;
        }
    }
usage:
    fprintf(stderr, "usage: %s [--cmdline FILE] [--location PATH] [--bind ADDR] "
                    "[--udp-port N] [--tcp-port N]\n", argv[0]);
    return 2;
}
