/* SPDX-License-Identifier: MIT */
/*
 * replay.c — the main() of the fuzz targets in builds without libFuzzer.
 *
 * Linked with one tests/fuzz/fuzz_*.c file (which defines LLVMFuzzerTestOneInput), it
 * runs the target over every file of the target's seed corpus,
 * $ABS_TOP_SRCDIR/tests/fuzz/corpus/<target>/ (the target is argv[0]'s basename), then
 * over a bounded, deterministic stream of mutated inputs: bit flips, byte changes,
 * inserts, deletes, truncations, splices of corpus entries, random bytes, very long
 * inputs and deeply nested brackets. Output is TAP for automake's tap-driver:
 *
 *   1..2
 *   ok 1 - corpus (K inputs)
 *   ok 2 - mutations (M inputs)
 *
 * A crash is a failed test: a fatal signal prints "not ok" for the running stage and
 * saves the input as crash-<target>-<stage>-<n> in the current directory; in the
 * sanitizer build AddressSanitizer/UBSan stop the process with their report (and the
 * input is saved the same way). Every input is passed in a heap block of exactly its
 * size, so reads past its end are caught by ASan.
 *
 * Environment:
 *   FUZZ_ITERATIONS   mutation inputs to run (default 20000)
 *   FUZZ_SECONDS      time bound of the mutation stage in seconds (default 10)
 *   FUZZ_SEED         PRNG seed (default 1; the run is deterministic for a seed)
 *   FUZZ_CORPUS_DIR   corpus directory (default: see above; falls back to
 *                     tests/fuzz/corpus/<target> under the current directory)
 *   FUZZ_MAX_LEN      largest mutated input in bytes (default 1 MiB)
 *   FUZZ_INPUT_TIMEOUT  seconds one input may take before it counts as a hang (default 30)
 * Arguments: files or directories given on the command line are run instead of the
 * corpus (e.g. to replay one crash file); the mutation stage then uses them as seeds.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The fuzz target (in fuzz_*.c) and libFuzzer's optional initialisation hook. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* Sanitizer runtime hook, present only in sanitizer builds. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

#define DEFAULT_ITERATIONS 20000UL
#define DEFAULT_SECONDS 10UL
#define DEFAULT_MAX_LEN (1024UL * 1024UL)
#define MAX_CORPUS_FILE (4UL * 1024UL * 1024UL)
#define MAX_CORPUS_ENTRIES 10000

struct blob {
        uint8_t *data;
        size_t len;
};

struct corpus {
        struct blob *items;
        size_t n;
        size_t cap;
};

/* What is running now, for the crash handlers. */
static const char *g_target = "fuzz";
static const char *g_stage = "corpus";
static int g_stage_no = 1;
static unsigned long g_input_no;
static const uint8_t *volatile g_cur_data;
static volatile size_t g_cur_len;
static volatile sig_atomic_t g_crashed;
static unsigned int g_input_timeout = 30;

/* Writes all of buf to fd, ignoring errors (used from signal context). */
static void
write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                p += n;
                len -= (size_t)n;
        }
}

/* Formats v in decimal into buf (at least 21 bytes), NUL-terminated (async-signal-safe). */
static char *
fmt_ulong(char *buf, unsigned long v)
{
        char tmp[24];
        size_t n = 0, i;

        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v > 0);
        for (i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return buf;
}

/* Concatenates the NULL-terminated list of strings into buf, bounded by cap and
 * NUL-terminated (async-signal-safe); returns the length. */
static size_t
concat(char *buf, size_t cap, ...)
{
        va_list ap;
        const char *s;
        size_t pos = 0;

        va_start(ap, cap);
        while ((s = va_arg(ap, const char *)))
                while (*s && pos + 1 < cap)
                        buf[pos++] = *s++;
        va_end(ap);
        buf[pos] = '\0';
        return pos;
}

/* Saves the running input to crash-<target>-<stage>-<n> and prints a TAP failure.
 * Only async-signal-safe calls: it runs from signal handlers and sanitizer deaths. */
static void
report_crash(const char *why)
{
        char name[256], line[512], input_no[24], stage_no[24], len[24];
        size_t n;
        int fd;

        if (g_crashed)
                return;
        g_crashed = 1;

        fmt_ulong(input_no, g_input_no);
        fmt_ulong(stage_no, (unsigned long)g_stage_no);
        fmt_ulong(len, (unsigned long)g_cur_len);
        concat(name, sizeof(name), "crash-", g_target, "-", g_stage, "-", input_no, (char *)NULL);
        fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
                if (g_cur_data)
                        write_all(fd, (const void *)g_cur_data, g_cur_len);
                close(fd);
        }
        n = concat(line, sizeof(line), "not ok ", stage_no, " - ", g_stage, ": ", why, " on input ",
                   input_no, " (", len, " bytes), saved as ", name, "\n", (char *)NULL);
        write_all(STDOUT_FILENO, line, n);
}

/* Fatal signal handler: report, then die from the same signal. */
static void
on_fatal_signal(int sig)
{
        const char *why = sig == SIGSEGV   ? "SIGSEGV"
                          : sig == SIGBUS  ? "SIGBUS"
                          : sig == SIGABRT ? "SIGABRT"
                          : sig == SIGFPE  ? "SIGFPE"
                          : sig == SIGILL  ? "SIGILL"
                                           : "fatal signal";

        report_crash(why);
        signal(sig, SIG_DFL);
        raise(sig);
}

/* SIGALRM handler: one input ran longer than FUZZ_INPUT_TIMEOUT. */
static void
on_timeout(int sig)
{
        (void)sig;
        report_crash("timeout");
        _exit(1);
}

/* Sanitizer death callback: ASan/UBSan found an error in the running input. */
static void
on_sanitizer_death(void)
{
        report_crash("sanitizer error");
}

typedef void (*set_death_callback_fn)(void (*)(void));

/* dl_iterate_phdr callback: registers on_sanitizer_death with the sanitizer runtime of
 * each loaded object. GCC links ASan and UBSan as two shared libraries, each with its
 * own copy of the callback, so one registration through the weak symbol is not enough. */
static int
register_in_object(struct dl_phdr_info *info, size_t size, void *data)
{
        void *h;
        set_death_callback_fn fn;

        (void)size;
        (void)data;
        if (!info->dlpi_name || !info->dlpi_name[0] || !strstr(info->dlpi_name, "san"))
                return 0;
        h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        if (!h)
                return 0;
        fn = (set_death_callback_fn)dlsym(h, "__sanitizer_set_death_callback");
        if (fn)
                fn(on_sanitizer_death);
        dlclose(h);
        return 0;
}

/* Installs the crash handlers. Signal handlers are left to the sanitizer runtime when
 * it is present (it prints the better report, then calls our death callback). */
static void
install_crash_handlers(void)
{
        static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
        struct sigaction sa;
        size_t i;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_timeout;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);

        if (__sanitizer_set_death_callback) {
                __sanitizer_set_death_callback(on_sanitizer_death);
                dl_iterate_phdr(register_in_object, NULL);
                return;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = (int)SA_RESETHAND;
        for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
                sigaction(sigs[i], &sa, NULL);
}

/* Runs the target on a private, exactly sized copy of data[0..len). */
static void
run_one(const uint8_t *data, size_t len)
{
        uint8_t *copy = malloc(len ? len : 1);

        if (!copy) {
                fprintf(stderr, "replay: out of memory for a %zu-byte input\n", len);
                exit(2);
        }
        if (len)
                memcpy(copy, data, len);
        g_cur_data = copy;
        g_cur_len = len;
        g_input_no++;
        alarm(g_input_timeout);
        (void)LLVMFuzzerTestOneInput(copy, len);
        alarm(0);
        g_cur_data = NULL;
        g_cur_len = 0;
        free(copy);
}

/* Reads a whole regular file (up to MAX_CORPUS_FILE bytes) into *ret; 0 or -errno. */
static int
read_file(const char *path, struct blob *ret)
{
        struct stat st;
        uint8_t *buf = NULL;
        size_t got = 0;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size > MAX_CORPUS_FILE) {
                r = -EINVAL;
                goto out;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        ret->data = buf;
        ret->len = got;
        buf = NULL;
out:
        free(buf);
        close(fd);
        return r;
}

/* Appends b to the corpus (taking ownership); 0 or -ENOMEM. */
static int
corpus_add(struct corpus *c, struct blob b)
{
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 64;
                struct blob *items = realloc(c->items, cap * sizeof(*items));
                if (!items)
                        return -ENOMEM;
                c->items = items;
                c->cap = cap;
        }
        c->items[c->n++] = b;
        return 0;
}

static int
cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads a file, or every regular file of a directory in name order, into c.
 * Returns 0 or -errno (a missing path is an error). */
static int
corpus_load(struct corpus *c, const char *path)
{
        struct stat st;
        DIR *d = NULL;
        struct dirent *de;
        char **names = NULL;
        size_t n = 0, cap = 0, i;
        int r = 0;

        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode)) {
                struct blob b;
                r = read_file(path, &b);
                if (r < 0)
                        return r;
                r = corpus_add(c, b);
                if (r < 0)
                        free(b.data);
                return r;
        }
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (n == cap) {
                        char **nn;
                        cap = cap ? cap * 2 : 64;
                        nn = realloc(names, cap * sizeof(*names));
                        if (!nn) {
                                r = -ENOMEM;
                                goto out;
                        }
                        names = nn;
                }
                if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                n++;
                if (n > MAX_CORPUS_ENTRIES) {
                        r = -E2BIG;
                        goto out;
                }
        }
        qsort(names, n, sizeof(*names), cmp_names);
        for (i = 0; i < n; i++) {
                struct blob b;
                if (stat(names[i], &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = read_file(names[i], &b);
                if (r < 0) {
                        fprintf(stderr, "replay: %s: %s\n", names[i], strerror(-r));
                        goto out;
                }
                r = corpus_add(c, b);
                if (r < 0) {
                        free(b.data);
                        goto out;
                }
        }
out:
        for (i = 0; i < n; i++)
                free(names[i]);
        free(names);
        if (d)
                closedir(d);
        return r;
}

static void
corpus_free(struct corpus *c)
{
        size_t i;

        for (i = 0; i < c->n; i++)
                free(c->items[i].data);
        free(c->items);
        c->items = NULL;
        c->n = c->cap = 0;
}

/* --- deterministic PRNG (splitmix64) --- */

static uint64_t g_rng;

static uint64_t
rnd(void)
{
        uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

/* A uniform-enough value in [0, n); n must be > 0. */
static size_t
rnd_below(size_t n)
{
        return (size_t)(rnd() % n);
}

/* --- the mutation buffer --- */

struct buf {
        uint8_t *data;
        size_t len;
        size_t max; /* capacity, also the largest input we build */
};

/* Inserts len bytes of src at pos (clipped to the capacity). */
static void
buf_insert(struct buf *b, size_t pos, const uint8_t *src, size_t len)
{
        if (pos > b->len)
                pos = b->len;
        if (len > b->max - b->len)
                len = b->max - b->len;
        if (len == 0)
                return;
        memmove(b->data + pos + len, b->data + pos, b->len - pos);
        memcpy(b->data + pos, src, len);
        b->len += len;
}

/* Removes len bytes at pos. */
static void
buf_delete(struct buf *b, size_t pos, size_t len)
{
        if (pos >= b->len)
                return;
        if (len > b->len - pos)
                len = b->len - pos;
        memmove(b->data + pos, b->data + pos + len, b->len - pos - len);
        b->len -= len;
}

/* Replaces the buffer with src. */
static void
buf_set(struct buf *b, const uint8_t *src, size_t len)
{
        b->len = 0;
        buf_insert(b, 0, src, len);
}

static const char *const tokens[] = {
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        ":",
        ",",
        " ",
        "\n",
        "\t",
        "\r\n",
        "\0",
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1e999",
        "-0",
        "4294967296",
        "18446744073709551616",
        "9223372036854775807",
        "-9223372036854775808",
        "0x7fffffff",
        "\"\"",
        "{}",
        "[]",
        "\\u0000",
        "\\ud800",
        "\xc0\x80",
        "\xed\xa0\x80",
        "\xff\xfe",
        "\xf4\x90\x80\x80",
        "%s%n%x",
        "../",
        "/etc/passwd",
        "*",
        "**",
        "?",
        "~",
        "&a",
        "*a",
        "!!binary",
        "!!str",
        "--- ",
        "...",
        "- ",
        "? ",
        ": ",
        "|",
        ">",
        "#",
        "'",
        "<<: ",
        "%YAML 1.1\n",
        "%TAG ! !\n",
        "abt_",
        "op=",
        "=",
        "\x1d",
};

/* Inserts or overwrites with one token from the dictionary. */
static void
mutate_token(struct buf *b)
{
        const char *t = tokens[rnd_below(sizeof(tokens) / sizeof(tokens[0]))];
        size_t tlen = strlen(t) ? strlen(t) : 1; /* "\0" stands for one NUL byte */
        size_t pos = rnd_below(b->len + 1);

        if (rnd() & 1)
                buf_delete(b, pos, tlen);
        buf_insert(b, pos, (const uint8_t *)t, tlen);
}

/* Replaces the buffer with a deeply nested structure, optionally around corpus text. */
static void
mutate_nesting(struct buf *b, const struct corpus *c)
{
        static const char *const openers[] = {
                "[", "{", "{\"a\":", "[{\"a\":", "- ", "a: {", "[\"", "a:\n ", "- [", "{a: ", "(",
        };
        static const char *const closers[] = { "]", "}", "}", "}]", "", "}", "\"]", "", "]", "}", ")" };
        size_t k = rnd_below(sizeof(openers) / sizeof(openers[0]));
        size_t depth = (size_t)1 << (4 + rnd_below(14)); /* 16 .. 128k levels */
        bool close = rnd() & 1;
        size_t olen = strlen(openers[k]), clen = strlen(closers[k]), i;
        uint8_t *keep = NULL;
        size_t keep_len = 0;

        if (c->n && (rnd() & 1)) {
                const struct blob *e = &c->items[rnd_below(c->n)];
                keep = e->data;
                keep_len = e->len;
        }
        b->len = 0;
        for (i = 0; i < depth && b->len + olen <= b->max; i++)
                buf_insert(b, b->len, (const uint8_t *)openers[k], olen);
        if (keep)
                buf_insert(b, b->len, keep, keep_len);
        if (close)
                for (i = 0; i < depth && b->len + clen <= b->max && clen; i++)
                        buf_insert(b, b->len, (const uint8_t *)closers[k], clen);
}

/* Replaces the buffer with a very long input: a chunk repeated up to the capacity. */
static void
mutate_long(struct buf *b)
{
        uint8_t chunk[64];
        size_t clen, target;

        if (b->len > 0 && (rnd() & 1)) {
                clen = 1 + rnd_below(b->len < sizeof(chunk) ? b->len : sizeof(chunk));
                memcpy(chunk, b->data + rnd_below(b->len - clen + 1), clen);
        } else {
                clen = 1 + rnd_below(sizeof(chunk));
                for (size_t i = 0; i < clen; i++)
                        chunk[i] = (uint8_t)rnd();
        }
        target = b->max / 2 + rnd_below(b->max / 2 + 1);
        while (b->len + clen <= target)
                buf_insert(b, b->len, chunk, clen);
}

/* Applies one random small mutation to b, using the corpus for splices. */
static void
mutate_once(struct buf *b, const struct corpus *c)
{
        static const uint8_t interesting[] = { 0, 1, 0x7f, 0x80, 0xff, '\n', '"', '\\', '{', '[', ':', '-' };
        size_t pos, len, i;

        switch (rnd_below(10)) {
        case 0: /* bit flips */
                if (b->len == 0)
                        break;
                for (i = 1 + rnd_below(4); i > 0; i--)
                        b->data[rnd_below(b->len)] ^= (uint8_t)(1u << rnd_below(8));
                break;
        case 1: /* set a byte to a random or interesting value */
                if (b->len == 0)
                        break;
                pos = rnd_below(b->len);
                b->data[pos] = (rnd() & 1) ? (uint8_t)rnd() : interesting[rnd_below(sizeof(interesting))];
                break;
        case 2: { /* insert random bytes */
                uint8_t tmp[32];
                len = 1 + rnd_below(sizeof(tmp));
                for (i = 0; i < len; i++)
                        tmp[i] = (uint8_t)rnd();
                buf_insert(b, rnd_below(b->len + 1), tmp, len);
                break;
        }
        case 3: /* delete a range */
                if (b->len == 0)
                        break;
                pos = rnd_below(b->len);
                buf_delete(b, pos, 1 + rnd_below(b->len - pos < 64 ? b->len - pos : 64));
                break;
        case 4: /* truncate */ b->len = b->len ? rnd_below(b->len) : 0; break;
        case 5: /* duplicate a range in place */
                if (b->len == 0)
                        break;
                pos = rnd_below(b->len);
                len = 1 + rnd_below(b->len - pos);
                if (len > 4096)
                        len = 4096;
                {
                        uint8_t *tmp = malloc(len);
                        if (!tmp)
                                break;
                        memcpy(tmp, b->data + pos, len);
                        buf_insert(b, rnd_below(b->len + 1), tmp, len);
                        free(tmp);
                }
                break;
        case 6: /* splice: our prefix + the suffix of another corpus entry */
                if (c->n == 0)
                        break;
                {
                        const struct blob *e = &c->items[rnd_below(c->n)];
                        b->len = rnd_below(b->len + 1);
                        if (e->len) {
                                pos = rnd_below(e->len);
                                buf_insert(b, b->len, e->data + pos, e->len - pos);
                        }
                }
                break;
        case 7: /* insert a corpus entry's middle part somewhere */
                if (c->n == 0)
                        break;
                {
                        const struct blob *e = &c->items[rnd_below(c->n)];
                        if (e->len == 0)
                                break;
                        pos = rnd_below(e->len);
                        len = 1 + rnd_below(e->len - pos);
                        buf_insert(b, rnd_below(b->len + 1), e->data + pos, len);
                }
                break;
        default: /* dictionary token */ mutate_token(b); break;
        }
}

/* Builds the next mutated input in b. */
static void
next_input(struct buf *b, const struct corpus *c)
{
        size_t roll = rnd_below(1000), n, i;

        /* Start from a corpus entry (or empty when there is none). */
        if (c->n) {
                const struct blob *e = &c->items[rnd_below(c->n)];
                buf_set(b, e->data, e->len);
        } else {
                b->len = 0;
        }

        if (roll < 3) { /* 0.3 %: very long input */
                mutate_long(b);
                return;
        }
        if (roll < 13) { /* 1 %: deep nesting */
                mutate_nesting(b, c);
                return;
        }
        if (roll < 43) { /* 3 %: random bytes */
                b->len = 0;
                n = rnd_below(4096);
                for (i = 0; i < n && b->len < b->max; i++)
                        b->data[b->len++] = (uint8_t)rnd();
                return;
        }
        n = 1 + rnd_below(6);
        for (i = 0; i < n; i++)
                mutate_once(b, c);
}

/* Reads an unsigned number from the environment, or returns def. */
static unsigned long
env_ulong(const char *name, unsigned long def)
{
        const char *v = getenv(name);
        char *end;
        unsigned long x;

        if (!v || !*v)
                return def;
        errno = 0;
        x = strtoul(v, &end, 0);
        if (errno || *end) {
                fprintf(stderr, "replay: ignoring bad %s=%s\n", name, v);
                return def;
        }
        return x;
}

static double
now_seconds(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The target name: argv[0]'s basename without libtool's "lt-" prefix. */
static const char *
target_name(const char *argv0)
{
        const char *base = strrchr(argv0, '/');

        base = base ? base + 1 : argv0;
        if (strncmp(base, "lt-", 3) == 0)
                base += 3;
        return base;
}

int
main(int argc, char **argv)
{
        struct corpus corpus = { 0 };
        struct buf b = { 0 };
        unsigned long iterations, seconds, seed, max_len, done = 0;
        char *corpus_dir = NULL;
        double deadline;
        int r, i;

        setvbuf(stdout, NULL, _IOLBF, 0);
        g_target = target_name(argc > 0 ? argv[0] : "fuzz");
        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        install_crash_handlers();

        iterations = env_ulong("FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
        seconds = env_ulong("FUZZ_SECONDS", DEFAULT_SECONDS);
        seed = env_ulong("FUZZ_SEED", 1);
        max_len = env_ulong("FUZZ_MAX_LEN", DEFAULT_MAX_LEN);
        g_input_timeout = (unsigned int)env_ulong("FUZZ_INPUT_TIMEOUT", 30);
        if (max_len < 64)
                max_len = 64;

        printf("1..2\n");

        /* Stage 1: the seed corpus (or the files named on the command line). */
        if (argc > 1) {
                for (i = 1; i < argc; i++) {
                        r = corpus_load(&corpus, argv[i]);
                        if (r < 0) {
                                printf("not ok 1 - corpus: cannot read %s: %s\n", argv[i], strerror(-r));
                                return 1;
                        }
                }
        } else {
                const char *dir = getenv("FUZZ_CORPUS_DIR");
                const char *top = getenv("ABS_TOP_SRCDIR");

                if (dir && *dir)
                        corpus_dir = strdup(dir);
                else if (asprintf(&corpus_dir, "%s/tests/fuzz/corpus/%s", top && *top ? top : ".",
                                  g_target) < 0)
                        corpus_dir = NULL;
                if (!corpus_dir) {
                        printf("not ok 1 - corpus: out of memory\n");
                        return 1;
                }
                r = corpus_load(&corpus, corpus_dir);
                if (r < 0) {
                        printf("not ok 1 - corpus: cannot read %s: %s\n", corpus_dir, strerror(-r));
                        printf("# set ABS_TOP_SRCDIR or FUZZ_CORPUS_DIR, or run from the source tree\n");
                        free(corpus_dir);
                        return 1;
                }
        }
        printf("# target %s, corpus %s: %zu inputs\n", g_target, corpus_dir ? corpus_dir : "(command line)",
               corpus.n);
        g_stage = "corpus";
        g_stage_no = 1;
        for (size_t k = 0; k < corpus.n; k++)
                run_one(corpus.items[k].data, corpus.items[k].len);
        run_one((const uint8_t *)"", 0);
        printf("ok 1 - corpus (%zu inputs)\n", corpus.n);

        /* Stage 2: bounded mutation loop. */
        g_stage = "mutations";
        g_stage_no = 2;
        g_input_no = 0;
        g_rng = seed;
        b.max = max_len;
        b.data = malloc(b.max);
        if (!b.data) {
                printf("not ok 2 - mutations: out of memory\n");
                return 1;
        }
        printf("# mutations: seed %lu, at most %lu inputs or %lu s, inputs up to %lu bytes\n", seed,
               iterations, seconds, max_len);
        deadline = now_seconds() + (double)seconds;
        while (done < iterations) {
                next_input(&b, &corpus);
                run_one(b.data, b.len);
                done++;
                if ((done & 63) == 0 && now_seconds() >= deadline)
                        break;
        }
        printf("ok 2 - mutations (%lu inputs)\n", done);

        free(b.data);
        corpus_free(&corpus);
        free(corpus_dir);
        return 0;
}
