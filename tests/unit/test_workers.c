/* SPDX-License-Identifier: MIT */
/* Unit tests for host/workers/ on a real sd-event loop with real worker processes.
 *
 * Two kinds of worker take part:
 *  - this test program itself, started by the registry as the "worker executable": run as
 *    `test_workers --module-fd 3 --control-fd 4 --name NAME` it speaks the frame protocol
 *    and reads what to do (answer, crash, send garbage, fail its init, ...) from its
 *    "module file" on fd 3, so every path of the host side is driven deterministically;
 *  - the real agentbroker-worker with the shipped echo module and the test modules of
 *    tests/modules/ (crash, hang, garbage, badabi, groupwritable, initbreak), when they are
 *    built in $ABS_TOP_BUILDDIR (those tests skip otherwise, saying so).
 * Checked as well: the module file checks (group/world-writable, symlink, owner, not a
 * regular file, bad names) with their log lines, what a worker inherits (descriptors 0-4
 * only, stdout on /dev/null, PATH/LANG/TZ only), pools, queueing, cancellation, timeouts,
 * unavailable modules and that no worker is left as a zombie. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/encode.h"
#include "common/frame.h"
#include "common/log.h"
#include "host/sandbox/sandbox_build.h"
#include "host/workers/workers.h"

#define TOKEN "abt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define SECRET_VALUE "s3cr3t-value-for-redaction"

extern char **environ;

/* ======================================================================
 * The fake worker (this program, started by the registry under test)
 * ====================================================================== */

static struct ab_frame_reader fw_reader;

/* Read the next frame from the blocking control socket. Returns NULL on EOF or error. */
static cJSON *
fw_read(int fd)
{
        cJSON *msg = NULL;

        for (;;) {
                int r = ab_frame_read(fd, &fw_reader, &msg);

                if (r == 1)
                        return msg;
                if (r < 0)
                        return NULL;
        }
}

static void
fw_send(int fd, cJSON *msg)
{
        if (ab_frame_write(fd, msg) < 0)
                _exit(7);
        cJSON_Delete(msg);
}

static cJSON *
fw_tool(const char *name, const char *schema)
{
        cJSON *t = cJSON_CreateObject();

        cJSON_AddStringToObject(t, "name", name);
        cJSON_AddStringToObject(t, "description", "a test tool");
        cJSON_AddItemToObject(t, "inputSchema", cJSON_Parse(schema));
        return t;
}

static const char fw_echo_schema[] =
        "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"},\"what\":{\"type\":\"string\"},"
        "\"sleep_ms\":{\"type\":\"integer\"},\"ignore_cancel\":{\"type\":\"boolean\"}},\"additionalProperties\":false}";

static cJSON *
fw_hello(const char *module, const char *mode)
{
        cJSON *h = cJSON_CreateObject(), *tools = cJSON_CreateArray();
        char full[128];

        cJSON_AddStringToObject(h, "t", "hello");
        cJSON_AddNumberToObject(h, "abi", 0x10000);
        cJSON_AddStringToObject(h, "module", strcmp(mode, "wrongname") == 0 ? "other" : module);
        cJSON_AddStringToObject(h, "version", "test");
        if (strcmp(mode, "badtools") == 0) {
                cJSON *t;

                cJSON_AddItemToArray(tools, fw_tool("good", fw_echo_schema));
                /* An unknown keyword: the schema cannot be enforced, the tool is refused. */
                cJSON_AddItemToArray(tools, fw_tool("unknownkw", "{\"type\":\"object\",\"frobnicate\":1}"));
                cJSON_AddItemToArray(tools, fw_tool("notobject", "{\"type\":\"string\"}"));
                cJSON_AddItemToArray(tools, fw_tool("bad name", fw_echo_schema));
                cJSON_AddItemToArray(tools, fw_tool("good", fw_echo_schema)); /* duplicate */
                t = fw_tool("badout", fw_echo_schema);
                cJSON_AddItemToObject(t, "outputSchema",
                                      cJSON_Parse("{\"type\":\"object\",\"minimum\":\"x\"}"));
                cJSON_AddItemToArray(tools, t);
                t = fw_tool("withoutput", fw_echo_schema);
                cJSON_AddItemToObject(
                        t, "outputSchema",
                        cJSON_Parse(
                                "{\"type\":\"object\",\"properties\":{\"echo\":{\"type\":\"string\"}}}"));
                cJSON_AddItemToObject(t, "annotations", cJSON_Parse("{\"readOnlyHint\":true,\"bogus\":1}"));
                cJSON_AddItemToArray(tools, t);
        } else {
                /* The worker library sends full names; bare names are accepted as well. */
                snprintf(full, sizeof(full), "%s.echo", module);
                cJSON_AddItemToArray(tools, fw_tool(full, fw_echo_schema));
                cJSON_AddItemToArray(tools, fw_tool("other", fw_echo_schema));
        }
        cJSON_AddItemToObject(h, "tools", tools);
        return h;
}

static cJSON *
fw_result(double id, const char *text)
{
        cJSON *m = cJSON_CreateObject(), *content = cJSON_CreateArray(), *b = cJSON_CreateObject();
        cJSON *sc = cJSON_CreateObject();

        cJSON_AddStringToObject(m, "t", "result");
        cJSON_AddNumberToObject(m, "id", id);
        cJSON_AddBoolToObject(m, "isError", false);
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", text);
        cJSON_AddItemToArray(content, b);
        cJSON_AddItemToObject(m, "content", content);
        cJSON_AddStringToObject(sc, "echo", text);
        cJSON_AddItemToObject(m, "structuredContent", sc);
        return m;
}

/* What the worker sees of its own process: descriptors, stdout, environment. */
static char *
fw_describe(const char *what, const cJSON *init)
{
        char buf[4096] = "";
        size_t n = 0;

        if (strcmp(what, "config") == 0)
                return cJSON_PrintUnformatted(init);
        if (strcmp(what, "fds") == 0) {
                DIR *d = opendir("/proc/self/fd");
                struct dirent *de;
                int self = dirfd(d);
                int fds[64], k = 0;

                while ((de = readdir(d)) && k < 64)
                        if (de->d_name[0] != '.' && atoi(de->d_name) != self)
                                fds[k++] = atoi(de->d_name);
                closedir(d);
                for (int i = 0; i < k; i++)
                        for (int j = i + 1; j < k; j++)
                                if (fds[j] < fds[i]) {
                                        int t = fds[i];
                                        fds[i] = fds[j];
                                        fds[j] = t;
                                }
                for (int i = 0; i < k; i++)
                        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%d", i ? "," : "", fds[i]);
                return strdup(buf);
        }
        if (strcmp(what, "stdio") == 0) {
                struct stat in, out, null;

                if (fstat(0, &in) < 0 || fstat(1, &out) < 0 || stat("/dev/null", &null) < 0)
                        return strdup("fstat failed");
                snprintf(buf, sizeof(buf), "stdin=%s stdout=%s",
                         S_ISCHR(in.st_mode) && in.st_rdev == null.st_rdev ? "null" : "other",
                         S_ISCHR(out.st_mode) && out.st_rdev == null.st_rdev ? "null" : "other");
                return strdup(buf);
        }
        if (strcmp(what, "env") == 0) {
                for (char **e = environ; *e; e++) {
                        const char *eq = strchr(*e, '=');

                        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.*s", n ? "," : "",
                                              eq ? (int)(eq - *e) : (int)strlen(*e), *e);
                        if (n >= sizeof(buf))
                                break;
                }
                return strdup(buf);
        }
        if (strcmp(what, "sigmask") == 0) {
                sigset_t cur;

                sigprocmask(SIG_SETMASK, NULL, &cur);
                return strdup(sigismember(&cur, SIGCHLD) ? "blocked" : "clear");
        }
        return strdup("?");
}

/* Wait up to ms for a cancel frame; returns true when one came. */
static bool
fw_wait_cancel(int fd, int ms)
{
        struct timespec start, now;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                long left;

                clock_gettime(CLOCK_MONOTONIC, &now);
                left = ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
                if (left <= 0)
                        return false;
                if (poll(&p, 1, (int)left) > 0) {
                        cJSON *m = fw_read(fd);
                        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "t");
                        bool cancel = cJSON_IsString(t) && strcmp(t->valuestring, "cancel") == 0;

                        cJSON_Delete(m);
                        if (!m)
                                _exit(0);
                        if (cancel)
                                return true;
                }
        }
}

static void
fw_write_raw(int fd, const void *buf, size_t n)
{
        if (write(fd, buf, n) != (ssize_t)n)
                _exit(8);
}

static int
fake_worker_main(int argc, char **argv)
{
        char script[512] = "", mode[64] = "ok", arg[400] = "";
        const char *name = NULL;
        struct rlimit no_core = { 0, 0 };
        cJSON *init, *msg;
        ssize_t n;
        int fd = 4;

        for (int i = 1; i + 1 < argc; i++)
                if (strcmp(argv[i], "--name") == 0)
                        name = argv[i + 1];
        if (!name || strcmp(argv[1], "--module-fd") != 0 || strcmp(argv[2], "3") != 0 ||
            strcmp(argv[3], "--control-fd") != 0 || strcmp(argv[4], "4") != 0)
                return 64;
        (void)setrlimit(RLIMIT_CORE, &no_core);
        n = pread(3, script, sizeof(script) - 1, 0);
        if (n > 0)
                script[n] = '\0';
        if (sscanf(script, "%63s %399s", mode, arg) < 1)
                strcpy(mode, "ok");

        if (strcmp(mode, "exit") == 0)
                _exit(3);
        if (strcmp(mode, "start-crash") == 0) {
                /* Count starts in the file named by arg; every start after the first dies. */
                FILE *f = fopen(arg, "r+");
                int count = 0;

                if (!f)
                        _exit(9);
                if (fscanf(f, "%d", &count) != 1)
                        count = 0;
                rewind(f);
                fprintf(f, "%d\n", ++count);
                fclose(f);
                if (count > 1)
                        _exit(1);
        }
        init = fw_read(fd);
        if (!init || strcmp(cJSON_GetObjectItemCaseSensitive(init, "t")->valuestring, "init") != 0)
                _exit(10);
        if (strcmp(mode, "fail") == 0) {
                msg = cJSON_CreateObject();
                cJSON_AddStringToObject(msg, "t", "fail");
                cJSON_AddStringToObject(msg, "error", "init said no");
                fw_send(fd, msg);
                _exit(1);
        }
        if (strcmp(mode, "hello-log") == 0) {
                msg = cJSON_CreateObject();
                cJSON_AddStringToObject(msg, "t", "log");
                cJSON_AddNumberToObject(msg, "level", 6);
                cJSON_AddStringToObject(msg, "message", "starting up");
                fw_send(fd, msg);
        }
        if (strcmp(mode, "garbage-hello") == 0) {
                fw_write_raw(fd, "\x00\x00\x00\x05hello", 9);
                pause();
        }
        fw_send(fd, fw_hello(name, mode));

        while ((msg = fw_read(fd))) {
                const char *t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
                const cJSON *idv = cJSON_GetObjectItemCaseSensitive(msg, "id");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(msg, "args");
                const cJSON *text = cJSON_GetObjectItemCaseSensitive(args, "text");
                const cJSON *what = cJSON_GetObjectItemCaseSensitive(args, "what");
                const cJSON *sleep_ms = cJSON_GetObjectItemCaseSensitive(args, "sleep_ms");
                bool ignore_cancel = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "ignore_cancel"));
                double id = cJSON_IsNumber(idv) ? idv->valuedouble : -1;
                char *out = NULL;

                if (strcmp(t, "cancel") == 0) {
                        cJSON_Delete(msg);
                        continue;
                }
                if (strcmp(t, "call") != 0)
                        _exit(11);
                /* The call frame carries the token, run and max_bytes the host was given. */
                if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "token")) ||
                    strcmp(cJSON_GetObjectItemCaseSensitive(msg, "token")->valuestring, TOKEN) != 0 ||
                    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "run")) ||
                    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(msg, "max_bytes")))
                        _exit(12);

                if (strcmp(mode, "crash-call") == 0 || strcmp(mode, "start-crash") == 0) {
                        /* A real fault: the worker is its pid namespace's init, which ignores a
                         * signal it sends itself (raise) but not one the kernel forces. */
                        volatile int *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                        /* (The kernel's sigaction: AddressSanitizer's signal() keeps its handler.) */
                        struct {
                                void *handler;
                                unsigned long flags;
                                void *restorer;
                                uint64_t mask;
                        } dfl = { 0 };

                        dfl.handler = SIG_DFL;
                        (void)syscall(SYS_rt_sigaction, SIGSEGV, &dfl, NULL, sizeof(dfl.mask));
                        *p = 13;
                        _exit(13);
                }
                if (strcmp(mode, "exit-call") == 0)
                        _exit(5);
                if (strcmp(mode, "wrongid") == 0) {
                        fw_send(fd, fw_result(id + 1000, "x"));
                        cJSON_Delete(msg);
                        continue;
                }
                if (strcmp(mode, "badframe") == 0) {
                        fw_write_raw(fd, "\xff\xff\xff\xff junk", 9);
                        cJSON_Delete(msg);
                        continue;
                }
                if (strcmp(mode, "notjson") == 0) {
                        fw_write_raw(fd, "\x00\x00\x00\x08{\"t\":\"r", 12);
                        cJSON_Delete(msg);
                        continue;
                }
                if (strcmp(mode, "unknown") == 0) {
                        cJSON *m = cJSON_CreateObject();

                        cJSON_AddStringToObject(m, "t", "bogus");
                        cJSON_AddNumberToObject(m, "id", id);
                        fw_send(fd, m);
                        cJSON_Delete(msg);
                        continue;
                }
                if (strcmp(mode, "badresult") == 0) {
                        cJSON *m = cJSON_CreateObject();

                        cJSON_AddStringToObject(m, "t", "result");
                        cJSON_AddNumberToObject(m, "id", id);
                        cJSON_AddStringToObject(m, "content", "not an array");
                        fw_send(fd, m);
                        cJSON_Delete(msg);
                        continue;
                }

                if (cJSON_IsNumber(sleep_ms)) {
                        if (fw_wait_cancel(fd, (int)sleep_ms->valuedouble) && !ignore_cancel) {
                                cJSON *m = fw_result(id, "cancelled");

                                cJSON_ReplaceItemInObject(m, "isError", cJSON_CreateBool(true));
                                fw_send(fd, m);
                                cJSON_Delete(msg);
                                continue;
                        }
                        if (ignore_cancel)
                                fw_wait_cancel(fd, 60000);
                }
                if (cJSON_IsString(what) && strcmp(what->valuestring, "extras") == 0) {
                        cJSON *m = cJSON_CreateObject();
                        char *b64 = NULL;

                        cJSON_AddStringToObject(m, "t", "progress");
                        cJSON_AddNumberToObject(m, "id", id);
                        cJSON_AddNumberToObject(m, "progress", 1);
                        cJSON_AddNumberToObject(m, "total", 2);
                        cJSON_AddStringToObject(m, "message", "half way");
                        fw_send(fd, m);
                        m = cJSON_CreateObject();
                        cJSON_AddStringToObject(m, "t", "log");
                        cJSON_AddNumberToObject(m, "level", 4);
                        cJSON_AddStringToObject(m, "message", "a warning from the module");
                        fw_send(fd, m);
                        ab_base64_encode(SECRET_VALUE, strlen(SECRET_VALUE), &b64);
                        m = cJSON_CreateObject();
                        cJSON_AddStringToObject(m, "t", "redact");
                        cJSON_AddNumberToObject(m, "id", id);
                        cJSON_AddStringToObject(m, "name", "api-key");
                        cJSON_AddStringToObject(m, "value", b64);
                        fw_send(fd, m);
                        free(b64);
                } else if (cJSON_IsString(what) && strcmp(what->valuestring, "big") == 0) {
                        out = malloc(1024 * 1024 + 1);
                        memset(out, 'b', 1024 * 1024);
                        out[1024 * 1024] = '\0';
                } else if (cJSON_IsString(what))
                        out = fw_describe(what->valuestring, init);
                {
                        /* Like the real worker: how long the call ran ("us"). */
                        cJSON *m = fw_result(id, out ? out : cJSON_IsString(text) ? text->valuestring : "");

                        cJSON_AddNumberToObject(m, "us",
                                                cJSON_IsNumber(sleep_ms) ? sleep_ms->valuedouble * 1000 : 1);
                        fw_send(fd, m);
                }
                if (strcmp(mode, "twice") == 0)
                        fw_send(fd, fw_result(id, "again"));
                free(out);
                cJSON_Delete(msg);
        }
        cJSON_Delete(init);
        return 0;
}

/* ======================================================================
 * Test helpers
 * ====================================================================== */

static char self_exe[4096];
static char tmp_root[] = "/tmp/test_workers.XXXXXX";
static const char *builddir = ".";

struct rec {
        struct hw_registry *r;
        struct hw_call *call;
        /* what to send when ready */
        bool send_on_ready;
        bool abort_on_ready;
        cJSON *args;
        unsigned timeout_ms;
        /* what happened */
        int ready_count, done_count, progress_count, log_count, redact_count;
        bool refuse_redact;  /* on_redact refuses (the broker did not vouch for it) */
        uint64_t redactions; /* from on_redacted */
        char redacted[64];
        pid_t pid;
        cJSON *result;
        char failure[32];
        char message[512];
        char redact_name[64];
        char redact_value[128];
        double progress, total;
        int send_rc;
};

static void
on_ready(void *userdata, pid_t pid)
{
        struct rec *x = userdata;

        x->ready_count++;
        x->pid = pid;
        assert_true(pid > 0);
        if (x->abort_on_ready)
                hw_call_abort(x->call);
        else if (x->send_on_ready)
                x->send_rc = hw_call_send(x->call, x->args, TOKEN, "run-1", 65536,
                                          x->timeout_ms ? x->timeout_ms : 10000);
}

static void
on_progress(void *userdata, double progress, double total, const char *message)
{
        struct rec *x = userdata;

        x->progress_count++;
        x->progress = progress;
        x->total = total;
}

static void
on_log(void *userdata, int level, const char *message)
{
        struct rec *x = userdata;

        x->log_count++;
}

static int
on_redact(void *userdata, const char *secret, const unsigned char *value, size_t len)
{
        struct rec *x = userdata;

        x->redact_count++;
        snprintf(x->redact_name, sizeof(x->redact_name), "%s", secret);
        snprintf(x->redact_value, sizeof(x->redact_value), "%.*s", (int)len, (const char *)value);
        return x->refuse_redact ? -EPERM : 0;
}

static void
on_redacted(void *userdata, uint64_t count, const char *const *names, size_t n)
{
        struct rec *x = userdata;

        x->redactions = count;
        snprintf(x->redacted, sizeof(x->redacted), "%s", n ? names[0] : "");
}

static void
on_done(void *userdata, cJSON *result, const char *failure, const char *message)
{
        struct rec *x = userdata;

        x->done_count++;
        x->call = NULL;
        cJSON_Delete(x->result);
        x->result = result;
        snprintf(x->failure, sizeof(x->failure), "%s", failure ? failure : "");
        snprintf(x->message, sizeof(x->message), "%s", message ? message : "");
}

static const struct hw_call_ops ops = {
        .ready = on_ready,
        .progress = on_progress,
        .log = on_log,
        .redact = on_redact,
        .redacted = on_redacted,
        .done = on_done,
};

static void
rec_clear(struct rec *x)
{
        cJSON_Delete(x->result);
        cJSON_Delete(x->args);
        memset(x, 0, sizeof(*x));
}

static int64_t
mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the loop until *done_count reaches want or timeout_ms passes. */
static void
run_until(sd_event *e, const int *done_count, int want, int timeout_ms)
{
        int64_t deadline = mono_ms() + timeout_ms;

        while (*done_count < want && mono_ms() < deadline)
                assert_true(sd_event_run(e, 50 * 1000) >= 0);
}

/* Run the loop for ms milliseconds. */
static void
run_for(sd_event *e, int ms)
{
        int64_t deadline = mono_ms() + ms;

        while (mono_ms() < deadline)
                assert_true(sd_event_run(e, 20 * 1000) >= 0);
}

/* Start a call of tool with args (JSON text); it is sent when its worker is ready. */
static void
start_call(struct hw_registry *r, struct rec *x, const char *tool, const char *args, unsigned timeout_ms)
{
        x->r = r;
        x->send_on_ready = true;
        x->args = cJSON_Parse(args);
        assert_non_null(x->args);
        x->timeout_ms = timeout_ms;
        assert_int_equal(hw_call_start(r, tool, &ops, x, &x->call), 0);
}

/* One call, run to its end. */
static void
call_sync(sd_event *e, struct hw_registry *r, struct rec *x, const char *tool, const char *args,
          unsigned timeout_ms)
{
        start_call(r, x, tool, args, timeout_ms);
        run_until(e, &x->done_count, 1, 15000);
        assert_int_equal(x->done_count, 1);
        assert_int_equal(x->ready_count, 1);
        assert_int_equal(x->send_rc, 0);
}

/* The text of a result's first content block. */
static const char *
result_text(const cJSON *result)
{
        const cJSON *b = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(result, "content"), 0);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "text");

        return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* A new empty directory under the test's temporary root. */
static char *
new_dir(const char *name)
{
        char *p;

        assert_true(asprintf(&p, "%s/%s", tmp_root, name) > 0);
        assert_int_equal(mkdir(p, 0755), 0);
        return p;
}

/* Write a fake module file (its content is the fake worker's script). */
static void
write_file(const char *dir, const char *name, const char *content, mode_t mode)
{
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
        assert_int_equal(chmod(path, mode), 0);
}

/* Copy src to dir/name with mode. Returns false when src does not exist. */
static bool
copy_file(const char *src, const char *dir, const char *name, mode_t mode)
{
        char path[4096], buf[65536];
        int in, out;
        ssize_t n;

        in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return false;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(out >= 0);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                assert_int_equal(write(out, buf, (size_t)n), n);
        close(in);
        close(out);
        assert_int_equal(chmod(path, mode), 0);
        return true;
}

/* Children of this process that are zombies. */
static int
count_zombies(void)
{
        DIR *d = opendir("/proc");
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                char path[300], buf[1024], *p;
                int fd, ppid;
                char state;
                ssize_t k;

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                k = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (k <= 0)
                        continue;
                buf[k] = '\0';
                p = strrchr(buf, ')');
                if (p && sscanf(p + 2, "%c %d", &state, &ppid) == 2 && ppid == getpid() && state == 'Z')
                        n++;
        }
        closedir(d);
        return n;
}

static const cJSON *
test_config(void *userdata, const char *module)
{
        return strcmp(module, "cfg") == 0 ? userdata : NULL;
}

/* Capture what the host logs (stderr) while fn runs; returns the text (caller frees). */
struct capture {
        int saved;
        char path[4096];
};

static void
capture_start(struct capture *c)
{
        int fd;

        snprintf(c->path, sizeof(c->path), "%s/log.XXXXXX", tmp_root);
        fd = mkstemp(c->path);
        assert_true(fd >= 0);
        fflush(stderr);
        c->saved = dup(2);
        assert_true(c->saved >= 0);
        assert_int_equal(dup2(fd, 2), 2);
        close(fd);
}

static char *
capture_end(struct capture *c)
{
        char *text = calloc(1, 65537);
        int fd;
        ssize_t n;

        fflush(stderr);
        assert_int_equal(dup2(c->saved, 2), 2);
        close(c->saved);
        fd = open(c->path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, text, 65536);
        assert_true(n >= 0);
        close(fd);
        unlink(c->path);
        return text;
}

struct fixture {
        sd_event *e;
        struct hw_registry *r;
};

static void
fixture_new(struct fixture *f, const char *worker, void *config)
{
        assert_int_equal(sd_event_new(&f->e), 0);
        assert_int_equal(hw_registry_new(f->e, worker, "/run/test/broker.sock", test_config, config, &f->r),
                         0);
}

static void
fixture_free(struct fixture *f)
{
        hw_registry_free(f->r);
        f->r = NULL;
        f->e = sd_event_unref(f->e);
        assert_int_equal(count_zombies(), 0);
}

/* ======================================================================
 * Tests with the fake worker
 * ====================================================================== */

static void
test_load_and_call(void **state)
{
        struct fixture f;
        char *dir = new_dir("basic");
        struct rec x = { 0 };
        const struct hw_tool *t;
        pid_t pids[16];

        write_file(dir, "fk.so", "ok", 0644);
        write_file(dir, "README", "not a module", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        assert_int_equal(hw_tools_count(f.r), 2);
        /* Sorted by name; full names whether the worker sent full or bare names. */
        assert_string_equal(hw_tool_at(f.r, 0)->name, "fk.echo");
        assert_string_equal(hw_tool_at(f.r, 1)->name, "fk.other");
        assert_null(hw_tool_at(f.r, 2));
        t = hw_tool_find(f.r, "fk.echo");
        assert_non_null(t);
        assert_string_equal(t->module, "fk");
        assert_non_null(t->input);
        assert_null(t->output);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(t->descriptor, "name")->valuestring, "fk.echo");
        assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(t->descriptor, "inputSchema")));
        assert_null(hw_tool_find(f.r, "fk.nope"));
        assert_null(hw_tool_find(f.r, "echo"));
        /* One worker started at load. */
        assert_int_equal(hw_registry_workers(f.r, pids, 16), 1);

        call_sync(f.e, f.r, &x, "fk.echo", "{\"text\":\"hello there\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_non_null(x.result);
        assert_string_equal(result_text(x.result), "hello there");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(
                                    cJSON_GetObjectItemCaseSensitive(x.result, "structuredContent"), "echo")
                                    ->valuestring,
                            "hello there");
        assert_null(cJSON_GetObjectItemCaseSensitive(x.result, "isError"));
        assert_int_equal(x.pid, pids[0]);
        rec_clear(&x);

        /* Progress, log and redact frames reach the call's callbacks. */
        call_sync(f.e, f.r, &x, "fk.echo", "{\"what\":\"extras\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_int_equal(x.progress_count, 1);
        assert_true(x.progress == 1.0 && x.total == 2.0);
        assert_int_equal(x.log_count, 1);
        assert_int_equal(x.redact_count, 1);
        assert_string_equal(x.redact_name, "api-key");
        assert_string_equal(x.redact_value, SECRET_VALUE);
        assert_int_equal(x.pid, pids[0]);
        rec_clear(&x);

        /* The worker's redactor now holds the value: its result is redacted, and counted. */
        call_sync(f.e, f.r, &x, "fk.echo", "{\"what\":\"extras\",\"text\":\"key=" SECRET_VALUE "\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_string_equal(result_text(x.result), "key=[REDACTED:api-key]");
        assert_int_equal(x.redactions, 2); /* the text and structuredContent.echo */
        assert_string_equal(x.redacted, "api-key");
        assert_int_equal(x.pid, pids[0]);
        rec_clear(&x);

        /* A 1 MiB result arrives whole (many reads on the loop). */
        call_sync(f.e, f.r, &x, "fk.other", "{\"what\":\"big\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_int_equal(strlen(result_text(x.result)), 1024 * 1024);
        rec_clear(&x);

        assert_int_equal(hw_call_start(f.r, "fk.missing", &ops, &x, &x.call), -ENOENT);
        assert_int_equal(hw_registry_workers(f.r, pids, 16), 1);

        /* A value the owner does not vouch for kills the worker; the call fails. */
        x.refuse_redact = true;
        call_sync(f.e, f.r, &x, "fk.echo", "{\"what\":\"extras\"}", 5000);
        assert_string_equal(x.failure, "garbage");
        assert_non_null(strstr(x.message, "redact"));
        rec_clear(&x);
        fixture_free(&f);
        free(dir);
}

static void
test_worker_environment(void **state)
{
        struct fixture f;
        char *dir = new_dir("env");
        cJSON *config = cJSON_Parse("{\"root\":\"/srv\",\"n\":3}");
        struct rec x = { 0 };
        cJSON *init;

        write_file(dir, "cfg.so", "ok", 0644);
        setenv("AGENTBROKER_TEST_SECRET", "must-not-leak", 1);
        setenv("LANG", "C.UTF-8", 1);
        fixture_new(&f, self_exe, config);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);

        /* Only fds 0-4; stdin and stdout on /dev/null. */
        call_sync(f.e, f.r, &x, "cfg.echo", "{\"what\":\"fds\"}", 5000);
        assert_string_equal(result_text(x.result), "0,1,2,3,4");
        rec_clear(&x);
        call_sync(f.e, f.r, &x, "cfg.echo", "{\"what\":\"stdio\"}", 5000);
        assert_string_equal(result_text(x.result), "stdin=null stdout=null");
        rec_clear(&x);
        /* PATH, LANG, TZ at most; nothing else of the host's environment. */
        call_sync(f.e, f.r, &x, "cfg.echo", "{\"what\":\"env\"}", 5000);
        assert_null(strstr(result_text(x.result), "AGENTBROKER_TEST_SECRET"));
        assert_non_null(strstr(result_text(x.result), "LANG"));
        for (char *p = strtok(strdup(result_text(x.result)), ","); p; p = strtok(NULL, ","))
                assert_true(strcmp(p, "PATH") == 0 || strcmp(p, "LANG") == 0 || strcmp(p, "TZ") == 0);
        rec_clear(&x);
        /* SIGCHLD, blocked in the host for sd-event, is not blocked in the worker. */
        call_sync(f.e, f.r, &x, "cfg.echo", "{\"what\":\"sigmask\"}", 5000);
        assert_string_equal(result_text(x.result), "clear");
        rec_clear(&x);
        /* The init frame carried the module's configuration and the broker path. */
        call_sync(f.e, f.r, &x, "cfg.echo", "{\"what\":\"config\"}", 5000);
        init = cJSON_Parse(result_text(x.result));
        assert_non_null(init);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(init, "t")->valuestring, "init");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(init, "broker")->valuestring,
                            "/run/test/broker.sock");
        assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(init, "config"), config, true));
        cJSON_Delete(init);
        rec_clear(&x);
        unsetenv("AGENTBROKER_TEST_SECRET");
        fixture_free(&f);
        cJSON_Delete(config);
        free(dir);
}

static void
test_module_file_checks(void **state)
{
        struct fixture f;
        char *dir = new_dir("checks");
        char path[4096], target[4096];
        struct capture cap;
        char *log;

        write_file(dir, "good.so", "ok", 0644);
        write_file(dir, "gw.so", "ok", 0664);
        write_file(dir, "ww.so", "ok", 0646);
        write_file(dir, "owner.so", "ok", 0644);
        snprintf(path, sizeof(path), "%s/owner.so", dir);
        assert_int_equal(chown(path, 65534, 65534), 0);
        snprintf(target, sizeof(target), "%s/good.so", dir);
        snprintf(path, sizeof(path), "%s/link.so", dir);
        assert_int_equal(symlink(target, path), 0);
        snprintf(path, sizeof(path), "%s/fifo.so", dir);
        assert_int_equal(mkfifo(path, 0644), 0);
        snprintf(path, sizeof(path), "%s/dir.so", dir);
        assert_int_equal(mkdir(path, 0755), 0);
        write_file(dir, "bad name.so", "ok", 0644);
        write_file(dir, "x23456789012345678901234567890123456789012345678901.so", "ok", 0644);
        write_file(dir, ".so", "ok", 0644);

        fixture_new(&f, self_exe, NULL);
        capture_start(&cap);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        log = capture_end(&cap);
        assert_int_equal(hw_tools_count(f.r), 2);
        assert_non_null(hw_tool_find(f.r, "good.echo"));
        /* Each refusal is a log line naming the file and the reason. */
#define EXPECT_LOG(fmt, ...)                                          \
        do {                                                          \
                char want[8192];                                      \
                snprintf(want, sizeof(want), fmt, __VA_ARGS__);       \
                if (!strstr(log, want))                               \
                        fail_msg("log lacks \"%s\":\n%s", want, log); \
        } while (0)
        EXPECT_LOG("refusing module %s/gw.so: it is group-writable (mode 0664)", dir);
        EXPECT_LOG("refusing module %s/ww.so: it is world-writable (mode 0646)", dir);
        EXPECT_LOG("refusing module %s/owner.so: it is owned by uid 65534, not by root or the host's uid",
                   dir);
        EXPECT_LOG("refusing module %s/link.so: it is a symbolic link", dir);
        EXPECT_LOG("refusing module %s/fifo.so: it is not a regular file", dir);
        EXPECT_LOG("refusing module %s/dir.so: it is not a regular file", dir);
        EXPECT_LOG("refusing module %s/bad name.so: the file name must be", dir);
        EXPECT_LOG(
                "refusing module %s/x23456789012345678901234567890123456789012345678901.so: the file name",
                dir);
        assert_null(strstr(log, "good.so"));
        free(log);

        /* A second directory with a module of the same name: skipped with a log line. */
        {
                char *dir2 = new_dir("checks2");

                write_file(dir2, "good.so", "ok", 0644);
                capture_start(&cap);
                assert_int_equal(hw_registry_load_dir(f.r, dir2), 0);
                log = capture_end(&cap);
                EXPECT_LOG(
                        "skipping module %s/good.so: a module named good was loaded already from %s/good.so",
                        dir2, dir);
                free(log);
                free(dir2);
        }
        /* A missing directory is no error; a file is. */
        snprintf(path, sizeof(path), "%s/missing", tmp_root);
        assert_int_equal(hw_registry_load_dir(f.r, path), 0);
        capture_start(&cap);
        assert_int_equal(hw_registry_load_dir(f.r, target), -ENOTDIR);
        free(capture_end(&cap));
        assert_int_equal(hw_tools_count(f.r), 2);
        fixture_free(&f);
        free(dir);
}

static void
test_module_refusals(void **state)
{
        struct fixture f;
        char *dir = new_dir("refusals");
        struct capture cap;
        pid_t pids[8];
        char *log;

        write_file(dir, "fails.so", "fail", 0644);
        write_file(dir, "exits.so", "exit", 0644);
        write_file(dir, "wrongname.so", "wrongname", 0644);
        write_file(dir, "garbagehello.so", "garbage-hello", 0644);
        write_file(dir, "badtools.so", "badtools", 0644);
        write_file(dir, "logs.so", "hello-log", 0644);

        fixture_new(&f, self_exe, NULL);
        capture_start(&cap);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 2);
        log = capture_end(&cap);
        EXPECT_LOG("refusing module %s/fails.so: init said no", dir);
        EXPECT_LOG("refusing module %s/exits.so: its worker exited before answering (exit status 3)", dir);
        EXPECT_LOG("refusing module %s/wrongname.so: the module's descriptor names another module", dir);
        EXPECT_LOG("refusing module %s/garbagehello.so: its worker sent an invalid message", dir);
        /* badtools: the good tools load, each bad one is refused with its reason. */
        EXPECT_LOG("module %s/badtools.so: refusing tool unknownkw: inputSchema: ", dir);
        EXPECT_LOG(
                "module %s/badtools.so: refusing tool notobject: inputSchema must have \"type\": \"object\"",
                dir);
        EXPECT_LOG("module %s/badtools.so: refusing tool bad name: the tool name must match", dir);
        EXPECT_LOG(
                "module %s/badtools.so: refusing tool badtools.good: a tool of that name is served already",
                dir);
        EXPECT_LOG("module %s/badtools.so: refusing tool badout: outputSchema: ", dir);
        /* A log frame before the hello is the module's own log line, not a failure. */
        assert_non_null(strstr(log, "module logs: starting up"));
        free(log);

        assert_int_equal(hw_tools_count(f.r), 4);
        assert_string_equal(hw_tool_at(f.r, 0)->name, "badtools.good");
        assert_string_equal(hw_tool_at(f.r, 1)->name, "badtools.withoutput");
        assert_string_equal(hw_tool_at(f.r, 2)->name, "logs.echo");
        assert_string_equal(hw_tool_at(f.r, 3)->name, "logs.other");
        {
                const struct hw_tool *t = hw_tool_at(f.r, 1);
                const cJSON *ann = cJSON_GetObjectItemCaseSensitive(t->descriptor, "annotations");

                assert_non_null(t->output);
                assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(t->descriptor, "outputSchema")));
                assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ann, "readOnlyHint")));
                assert_null(cJSON_GetObjectItemCaseSensitive(ann, "bogus"));
        }
        /* The refused modules' workers were reaped at once. */
        assert_int_equal(hw_registry_workers(f.r, pids, 8), 2);
        assert_int_equal(count_zombies(), 0);
        fixture_free(&f);
        free(dir);
}

static void
test_pool_and_queue(void **state)
{
        enum {
                N = 12
        };
        struct fixture f;
        char *dir = new_dir("pool");
        struct rec x[N] = { { 0 } };
        pid_t pids[16], distinct[N];
        int n_distinct = 0, done = 0;
        int64_t t0;

        write_file(dir, "pool.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);

        /* 12 overlapping calls of 300 ms: 8 workers (HW_POOL_MAX), the other 4 calls queue. */
        t0 = mono_ms();
        for (int i = 0; i < N; i++)
                start_call(f.r, &x[i], "pool.echo", "{\"text\":\"slow\",\"sleep_ms\":300}", 10000);
        /* The idle worker took the first call at once. */
        assert_int_equal(x[0].ready_count, 1);
        for (int i = 1; i < N; i++)
                assert_int_equal(x[i].ready_count, 0);
        while (done < N && mono_ms() - t0 < 15000) {
                assert_true(sd_event_run(f.e, 50 * 1000) >= 0);
                done = 0;
                for (int i = 0; i < N; i++)
                        done += x[i].done_count;
                assert_true(hw_registry_workers(f.r, pids, 16) <= HW_POOL_MAX);
        }
        assert_int_equal(done, N);
        /* Two rounds of 300 ms in parallel, not twelve in a row. */
        assert_true(mono_ms() - t0 < 2500);
        for (int i = 0; i < N; i++) {
                bool seen = false;

                assert_string_equal(x[i].failure, "");
                assert_string_equal(result_text(x[i].result), "slow");
                for (int k = 0; k < n_distinct; k++)
                        seen |= distinct[k] == x[i].pid;
                if (!seen)
                        distinct[n_distinct++] = x[i].pid;
        }
        assert_int_equal(n_distinct, HW_POOL_MAX);
        assert_int_equal(hw_registry_workers(f.r, pids, 16), HW_POOL_MAX);
        /* The last four calls (FIFO) ran on workers freed by the first round. */
        for (int i = HW_POOL_MAX; i < N; i++) {
                bool reused = false;

                for (int k = 0; k < HW_POOL_MAX; k++)
                        reused |= x[k].pid == x[i].pid;
                assert_true(reused);
        }
        /* hw_registry_workers never writes past max. */
        pids[2] = -7;
        assert_int_equal(hw_registry_workers(f.r, pids, 2), 2);
        assert_int_equal(pids[2], -7);
        for (int i = 0; i < N; i++)
                rec_clear(&x[i]);
        fixture_free(&f);
        free(dir);
}

/* The pool grows only for calls that have to wait, and shrinks back to one worker once the
 * others have been idle for 10 s. */
static void
test_pool_grow_and_shrink(void **state)
{
        enum {
                FAST = 6
        };
        struct fixture f;
        char *dir = new_dir("shrink");
        struct rec x[FAST] = { { 0 } }, slow = { 0 }, quick = { 0 };
        pid_t pids[16];
        int done = 0;
        int64_t t0;

        write_file(dir, "shrink.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);

        /* Quick calls at once: they queue behind the one worker for a few microseconds each,
         * far less than the 1.5 ms that starts another (the old pool started one per queued
         * call: 6). Usually one or two; fewer than one per call even on a loaded machine,
         * where a queued call may wait past 1.5 ms (no timing bound here: it flaked). */
        for (int i = 0; i < FAST; i++)
                start_call(f.r, &x[i], "shrink.echo", "{\"text\":\"quick\"}", 10000);
        for (int i = 0; i < FAST; i++) {
                run_until(f.e, &x[i].done_count, 1, 15000);
                assert_string_equal(x[i].failure, "");
                done += x[i].done_count;
        }
        assert_int_equal(done, FAST);
        assert_true(hw_registry_workers(f.r, pids, 16) < FAST);

        /* A slow call holds a worker: a call arriving meanwhile gets a new worker and is
         * answered while the slow one still runs. */
        start_call(f.r, &slow, "shrink.echo", "{\"text\":\"slow\",\"sleep_ms\":3000}", 10000);
        run_for(f.e, 20);
        start_call(f.r, &quick, "shrink.echo", "{\"text\":\"quick\"}", 10000);
        run_until(f.e, &quick.done_count, 1, 15000);
        assert_int_equal(quick.done_count, 1);
        assert_int_equal(slow.done_count, 0);
        run_until(f.e, &slow.done_count, 1, 15000);
        assert_int_equal(slow.done_count, 1);
        assert_true(hw_registry_workers(f.r, pids, 16) >= 2);

        /* Ten seconds idle: back to one worker. */
        t0 = mono_ms();
        while (hw_registry_workers(f.r, pids, 16) > 1 && mono_ms() - t0 < 13000)
                assert_true(sd_event_run(f.e, 100 * 1000) >= 0);
        assert_int_equal(hw_registry_workers(f.r, pids, 16), 1);
        assert_true(mono_ms() - t0 > 5000);
        /* And it still serves. */
        rec_clear(&quick);
        call_sync(f.e, f.r, &quick, "shrink.echo", "{\"text\":\"again\"}", 10000);
        assert_string_equal(result_text(quick.result), "again");
        for (int i = 0; i < FAST; i++)
                rec_clear(&x[i]);
        rec_clear(&slow);
        rec_clear(&quick);
        fixture_free(&f);
        free(dir);
}

/* Calls of a module measured fast are bound to its busy worker (pipelined) instead of
 * growing the pool; a call bound behind one that fails ends as "crashed" without running; a
 * waiting call can be cancelled. */
static void
test_pipeline(void **state)
{
        enum {
                WARM = 10,
                BURST = 16
        };
        struct fixture f;
        char *dir = new_dir("pipe");
        struct rec warm[WARM] = { { 0 } }, x[BURST] = { { 0 } }, slow = { 0 }, behind = { 0 }, y = { 0 };
        pid_t pids[16];
        int done = 0;
        int64_t t0;

        write_file(dir, "pipe.so", "ok", 0644);
        write_file(dir, "pipe2.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 2);
        /* One call at a time: measured, and one worker per module (a call that overlaps
         * another before 8 calls were measured queues: see the timeout case below). */
        for (int i = 0; i < WARM; i++)
                call_sync(f.e, f.r, &warm[i], "pipe.echo", "{\"text\":\"warm\"}", 10000);
        run_for(f.e, 50);
        assert_int_equal(hw_registry_workers(f.r, pids, 16), 2); /* one per module */

        /* 16 at once: every call is bound to the one worker at once (its call-begin could go
         * out now), and they run there one after the other. */
        for (int i = 0; i < BURST; i++) {
                char args[64];

                snprintf(args, sizeof(args), "{\"text\":\"burst %d\"}", i);
                start_call(f.r, &x[i], "pipe.echo", args, 10000);
                assert_int_equal(x[i].ready_count, 1);
                assert_int_equal(x[i].pid, warm[WARM - 1].pid);
        }
        for (int i = 0; i < BURST; i++) {
                char want[64];

                run_until(f.e, &x[i].done_count, 1, 15000);
                snprintf(want, sizeof(want), "burst %d", i);
                assert_string_equal(x[i].failure, "");
                assert_string_equal(result_text(x[i].result), want);
                done += x[i].done_count;
        }
        assert_int_equal(done, BURST);
        assert_int_equal(hw_registry_workers(f.r, pids, 16), 2);

        /* A call waiting behind one that times out: its worker is killed, it ends "crashed"
         * without having run (its token names that worker), and the module serves on. */
        start_call(f.r, &slow, "pipe.echo", "{\"text\":\"slow\",\"sleep_ms\":5000}", 300);
        start_call(f.r, &behind, "pipe.echo", "{\"text\":\"behind\"}", 10000);
        assert_int_equal(behind.ready_count, 1);
        assert_int_equal(behind.pid, slow.pid);
        t0 = mono_ms();
        run_until(f.e, &behind.done_count, 1, 15000);
        run_until(f.e, &slow.done_count, 1, 15000);
        assert_true(mono_ms() - t0 < 4000);
        assert_string_equal(slow.failure, "timeout");
        assert_string_equal(behind.failure, "crashed");
        assert_null(behind.result);
        if (!strstr(behind.message, "before this call ran"))
                fail_msg("message \"%s\"", behind.message);
        call_sync(f.e, f.r, &y, "pipe.echo", "{\"text\":\"after\"}", 10000);
        assert_string_equal(result_text(y.result), "after");
        assert_true(y.pid != slow.pid);
        rec_clear(&slow);
        rec_clear(&behind);
        rec_clear(&y);

        /* The timeout counts as a slow call: pipe is not pipelined for a while. */
        start_call(f.r, &slow, "pipe.echo", "{\"text\":\"ahead\",\"sleep_ms\":300}", 10000);
        start_call(f.r, &behind, "pipe.echo", "{\"text\":\"behind\"}", 10000);
        assert_int_equal(behind.ready_count, 0);
        run_until(f.e, &behind.done_count, 1, 15000);
        run_until(f.e, &slow.done_count, 1, 15000);
        assert_string_equal(behind.failure, "");
        rec_clear(&slow);
        rec_clear(&behind);

        /* A waiting call is cancelled without disturbing the one ahead of it (pipe2). */
        for (int i = 0; i < WARM; i++) {
                rec_clear(&warm[i]);
                call_sync(f.e, f.r, &warm[i], "pipe2.echo", "{\"text\":\"warm\"}", 10000);
        }
        start_call(f.r, &slow, "pipe2.echo", "{\"text\":\"ahead\",\"sleep_ms\":300}", 10000);
        start_call(f.r, &behind, "pipe2.echo", "{\"text\":\"behind\"}", 10000);
        assert_int_equal(behind.ready_count, 1);
        assert_int_equal(behind.pid, slow.pid);
        hw_call_cancel(behind.call);
        run_until(f.e, &slow.done_count, 1, 15000);
        run_until(f.e, &behind.done_count, 1, 15000);
        assert_string_equal(behind.failure, "cancelled");
        assert_string_equal(slow.failure, "");
        assert_string_equal(result_text(slow.result), "ahead");

        for (int i = 0; i < WARM; i++)
                rec_clear(&warm[i]);
        for (int i = 0; i < BURST; i++)
                rec_clear(&x[i]);
        rec_clear(&slow);
        rec_clear(&behind);
        fixture_free(&f);
        free(dir);
}

static void
test_queue_full_and_stop(void **state)
{
        struct fixture f;
        char *dir = new_dir("queue");
        struct rec *x = calloc(HW_POOL_MAX + HW_QUEUE_MAX + 1, sizeof(*x));
        struct rec extra = { 0 };
        int done = 0;

        write_file(dir, "q.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        /* Fill the pool and the queue; one more call is refused with -EAGAIN. */
        for (int i = 0; i < HW_POOL_MAX + HW_QUEUE_MAX; i++)
                start_call(f.r, &x[i], "q.echo", "{\"sleep_ms\":60000}", 120000);
        run_for(f.e, 300);
        assert_int_equal(hw_call_start(f.r, "q.echo", &ops, &extra, &extra.call), -EAGAIN);
        assert_int_equal(extra.done_count, 0);
        /* Freeing the registry ends every call, running or queued, with "stopped". */
        hw_registry_free(f.r);
        f.r = NULL;
        for (int i = 0; i < HW_POOL_MAX + HW_QUEUE_MAX; i++) {
                done += x[i].done_count;
                assert_string_equal(x[i].failure, "stopped");
                rec_clear(&x[i]);
        }
        assert_int_equal(done, HW_POOL_MAX + HW_QUEUE_MAX);
        f.e = sd_event_unref(f.e);
        assert_int_equal(count_zombies(), 0);
        free(x);
        free(dir);
}

/* A call on a module that misbehaves ends with failure, and the next call gets a new worker. */
static void
expect_failure_then_recovery(const char *mode, const char *args, unsigned timeout_ms, const char *failure,
                             const char *message)
{
        struct fixture f;
        char *dir, name[64];
        struct rec x = { 0 }, y = { 0 };
        pid_t pids[8];
        char tool[80];

        snprintf(name, sizeof(name), "m-%s", mode);
        dir = new_dir(name);
        snprintf(name, sizeof(name), "%s.so", mode);
        write_file(dir, name, mode, 0644);
        /* A second, well-behaved module keeps serving. */
        write_file(dir, "fine.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 2);

        snprintf(tool, sizeof(tool), "%s.echo", mode);
        call_sync(f.e, f.r, &x, tool, args, timeout_ms);
        assert_null(x.result);
        assert_string_equal(x.failure, failure);
        if (!strstr(x.message, message))
                fail_msg("message \"%s\" lacks \"%s\"", x.message, message);
        run_for(f.e, 100);
        /* The bad worker is gone (killed and reaped); the other module's worker is not. */
        assert_int_equal(hw_registry_workers(f.r, pids, 8), 1);
        assert_int_equal(count_zombies(), 0);

        call_sync(f.e, f.r, &y, "fine.echo", "{\"text\":\"still here\"}", 5000);
        assert_string_equal(result_text(y.result), "still here");
        rec_clear(&y);
        /* The next call of the module gets a fresh worker (which misbehaves again, unless it
         * only hung on the first call's arguments). */
        call_sync(f.e, f.r, &y, tool, "{\"text\":\"fresh\"}", 5000);
        assert_true(y.pid != x.pid);
        if (strcmp(mode, "ok") == 0)
                assert_string_equal(result_text(y.result), "fresh");
        else
                assert_string_equal(y.failure, failure);
        rec_clear(&y);
        rec_clear(&x);
        fixture_free(&f);
        free(dir);
}

static void
test_crash(void **state)
{
        expect_failure_then_recovery(
                "crash-call", "{}", 5000, "crashed",
                "the crash-call module's worker crashed (signal SIGSEGV) during the call");
        expect_failure_then_recovery(
                "exit-call", "{}", 5000, "crashed",
                "the exit-call module's worker crashed (exit status 5) during the call");
}

static void
test_timeout(void **state)
{
        int64_t t0 = mono_ms();

        /* The worker sleeps 60 s and ignores cancellation: killed after 200 ms. */
        expect_failure_then_recovery("ok", "{\"sleep_ms\":60000,\"ignore_cancel\":true}", 200, "timeout",
                                     "the call did not finish within 200 ms");
        assert_true(mono_ms() - t0 < 5000);
}

static void
test_garbage(void **state)
{
        static const char *const modes[] = { "wrongid", "badframe", "notjson", "unknown", "badresult" };

        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
                expect_failure_then_recovery(modes[i], "{}", 5000, "garbage",
                                             "module's worker sent an invalid message");
}

static void
test_result_while_idle(void **state)
{
        struct fixture f;
        char *dir = new_dir("twice");
        struct rec x = { 0 }, y = { 0 };
        pid_t pids[4];
        int64_t t0;

        write_file(dir, "twice.so", "twice", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        /* The first result ends the call; the second comes while idle: the worker is killed. */
        call_sync(f.e, f.r, &x, "twice.echo", "{\"text\":\"one\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_string_equal(result_text(x.result), "one");
        t0 = mono_ms();
        while (hw_registry_workers(f.r, pids, 4) > 0 && mono_ms() - t0 < 5000)
                assert_true(sd_event_run(f.e, 50 * 1000) >= 0);
        assert_int_equal(hw_registry_workers(f.r, pids, 4), 0);
        /* Lazily replaced on the next call. */
        call_sync(f.e, f.r, &y, "twice.echo", "{\"text\":\"two\"}", 5000);
        assert_string_equal(result_text(y.result), "two");
        assert_true(y.pid != x.pid);
        rec_clear(&x);
        rec_clear(&y);
        fixture_free(&f);
        free(dir);
}

static void
test_cancel(void **state)
{
        struct fixture f;
        char *dir = new_dir("cancel");
        struct rec a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, e = { 0 };
        pid_t pids[8];
        int64_t t0;

        write_file(dir, "cx.so", "ok", 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);

        /* A worker that honours the cancel answers; done says "cancelled" and the worker stays. */
        start_call(f.r, &a, "cx.echo", "{\"sleep_ms\":30000}", 60000);
        run_for(f.e, 50);
        t0 = mono_ms();
        hw_call_cancel(a.call);
        hw_call_cancel(a.call); /* twice: still one done */
        assert_int_equal(a.done_count, 0);
        run_until(f.e, &a.done_count, 1, 5000);
        assert_int_equal(a.done_count, 1);
        assert_string_equal(a.failure, "cancelled");
        assert_null(a.result);
        assert_true(mono_ms() - t0 < 1500);
        run_for(f.e, 50);
        assert_int_equal(a.done_count, 1);
        assert_int_equal(hw_registry_workers(f.r, pids, 8), 1);
        assert_int_equal(pids[0], a.pid);

        /* One that ignores it is killed after 2 s; done comes once. */
        start_call(f.r, &b, "cx.echo", "{\"sleep_ms\":30000,\"ignore_cancel\":true}", 60000);
        assert_int_equal(b.pid, a.pid);
        run_for(f.e, 50);
        t0 = mono_ms();
        hw_call_cancel(b.call);
        run_until(f.e, &b.done_count, 1, 5000);
        assert_int_equal(b.done_count, 1);
        assert_string_equal(b.failure, "cancelled");
        assert_true(mono_ms() - t0 >= 1900 && mono_ms() - t0 < 3500);
        run_for(f.e, 100);
        assert_int_equal(hw_registry_workers(f.r, pids, 8), 0);

        /* A reserved call that is cancelled or aborted before it is sent gives its worker back. */
        c.r = f.r;
        assert_int_equal(hw_call_start(f.r, "cx.echo", &ops, &c, &c.call), 0);
        run_until(f.e, &c.ready_count, 1, 5000);
        assert_int_equal(c.ready_count, 1);
        hw_call_cancel(c.call);
        assert_int_equal(c.done_count, 0); /* done is never called inside the owner's call */
        run_until(f.e, &c.done_count, 1, 1000);
        assert_string_equal(c.failure, "cancelled");

        d.r = f.r;
        d.abort_on_ready = true;
        assert_int_equal(hw_call_start(f.r, "cx.echo", &ops, &d, &d.call), 0);
        assert_int_equal(d.ready_count, 1); /* idle worker: ready before hw_call_start returned */
        assert_int_equal(d.pid, c.pid);
        assert_int_equal(d.done_count, 0);
        run_until(f.e, &d.done_count, 1, 1000);
        assert_string_equal(d.failure, "aborted");
        assert_string_equal(d.message, "the call was not sent");

        /* A queued call cancelled before it got a worker. */
        rec_clear(&a);
        start_call(f.r, &a, "cx.echo", "{\"sleep_ms\":300}", 60000);
        assert_int_equal(a.ready_count, 1);
        assert_int_equal(a.pid, c.pid);
        e.r = f.r;
        assert_int_equal(hw_call_start(f.r, "cx.echo", &ops, &e, &e.call), 0);
        assert_int_equal(e.ready_count, 0);
        hw_call_cancel(e.call);
        run_until(f.e, &e.done_count, 1, 1000);
        assert_string_equal(e.failure, "cancelled");
        assert_int_equal(e.ready_count, 0);
        run_until(f.e, &a.done_count, 1, 5000);
        assert_string_equal(a.failure, "");
        run_for(f.e, 100);
        assert_int_equal(e.ready_count, 0);
        assert_int_equal(e.done_count, 1);

        rec_clear(&a);
        rec_clear(&b);
        rec_clear(&c);
        rec_clear(&d);
        rec_clear(&e);
        fixture_free(&f);
        free(dir);
}

static void
test_unavailable(void **state)
{
        struct fixture f;
        char *dir = new_dir("unavail");
        char script[4200], counter[4096];
        struct rec x = { 0 }, y = { 0 }, z = { 0 };
        struct capture cap;
        char *log;
        FILE *fp;
        int starts = 0;

        snprintf(counter, sizeof(counter), "%s/starts", dir);
        write_file(dir, "starts", "0", 0644);
        snprintf(script, sizeof(script), "start-crash %s", counter);
        write_file(dir, "flaky.so", script, 0644);
        fixture_new(&f, self_exe, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        /* The first worker crashes in its call; every later one dies before its hello. */
        call_sync(f.e, f.r, &x, "flaky.echo", "{}", 5000);
        assert_string_equal(x.failure, "crashed");

        capture_start(&cap);
        start_call(f.r, &y, "flaky.echo", "{}", 5000);
        run_until(f.e, &y.done_count, 1, 10000);
        log = capture_end(&cap);
        assert_int_equal(y.done_count, 1);
        assert_int_equal(y.ready_count, 0);
        assert_string_equal(y.failure, "unavailable");
        assert_string_equal(y.message,
                            "the flaky module is unavailable: its workers failed to start 5 times in a row");
        assert_non_null(strstr(
                log, "module flaky: a worker failed to start (it exited before its hello (exit status 1))"));
        assert_non_null(strstr(log, "module flaky is unavailable"));
        free(log);
        fp = fopen(counter, "r");
        assert_non_null(fp);
        assert_int_equal(fscanf(fp, "%d", &starts), 1);
        fclose(fp);
        assert_int_equal(starts, 1 + 5);

        /* From now on calls end with "unavailable" without starting anything. */
        assert_int_equal(hw_call_start(f.r, "flaky.echo", &ops, &z, &z.call), 0);
        assert_int_equal(z.done_count, 0);
        run_until(f.e, &z.done_count, 1, 1000);
        assert_string_equal(z.failure, "unavailable");
        fp = fopen(counter, "r");
        assert_int_equal(fscanf(fp, "%d", &starts), 1);
        fclose(fp);
        assert_int_equal(starts, 6);
        rec_clear(&x);
        rec_clear(&y);
        rec_clear(&z);
        fixture_free(&f);
        free(dir);
}

/* ======================================================================
 * Tests with the real agentbroker-worker and modules
 * ====================================================================== */

static bool
real_paths(char *worker, size_t wsize, char *modules, size_t msize, char *test_modules, size_t tsize)
{
        snprintf(worker, wsize, "%s/agentbroker-worker", builddir);
        snprintf(modules, msize, "%s/modules/.libs", builddir);
        snprintf(test_modules, tsize, "%s/tests/modules/.libs", builddir);
        return access(worker, X_OK) == 0;
}

static void
test_real_echo(void **state)
{
        char worker[4096], mods[4096], tmods[4096], src[8192];
        struct fixture f;
        struct rec x = { 0 };
        char *dir;

        if (!real_paths(worker, sizeof(worker), mods, sizeof(mods), tmods, sizeof(tmods))) {
                print_message("agentbroker-worker is not built in %s\n", builddir);
                skip();
        }
        dir = new_dir("real-echo");
        snprintf(src, sizeof(src), "%s/echo.so", mods);
        if (!copy_file(src, dir, "echo.so", 0644)) {
                print_message("%s is not built\n", src);
                free(dir);
                skip();
        }
        fixture_new(&f, worker, NULL);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 1);
        assert_non_null(hw_tool_find(f.r, "echo.echo"));
        call_sync(f.e, f.r, &x, "echo.echo", "{\"text\":\"héllo, wörld\"}", 5000);
        assert_string_equal(x.failure, "");
        assert_string_equal(result_text(x.result), "héllo, wörld");
        rec_clear(&x);
        fixture_free(&f);
        free(dir);
}

static void
test_real_test_modules(void **state)
{
        static const char *const names[] = { "crash",  "hang",          "garbage",
                                             "badabi", "groupwritable", "initbreak" };
        char worker[4096], mods[4096], tmods[4096], src[8192];
        struct fixture f;
        struct rec x = { 0 };
        struct capture cap;
        char *dir, *log;
        int64_t t0;

        if (!real_paths(worker, sizeof(worker), mods, sizeof(mods), tmods, sizeof(tmods))) {
                print_message("agentbroker-worker is not built in %s\n", builddir);
                skip();
        }
        dir = new_dir("real-test-modules");
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char file[64];

                snprintf(src, sizeof(src), "%s/%s.so", tmods, names[i]);
                snprintf(file, sizeof(file), "%s.so", names[i]);
                if (!copy_file(src, dir, file, strcmp(names[i], "groupwritable") == 0 ? 0664 : 0644)) {
                        print_message("%s is not built (tests/modules)\n", src);
                        free(dir);
                        skip();
                }
        }
        fixture_new(&f, worker, NULL);
        capture_start(&cap);
        assert_int_equal(hw_registry_load_dir(f.r, dir), 3);
        log = capture_end(&cap);
        EXPECT_LOG("refusing module %s/groupwritable.so: it is group-writable", dir);
        EXPECT_LOG("refusing module %s/badabi.so: ", dir);
        assert_non_null(strstr(log, "major differs"));
        /* the tools are checked again after init, which may change them */
        EXPECT_LOG("refusing module %s/initbreak.so: tool never has no input schema", dir);
        free(log);
        assert_null(hw_tool_find(f.r, "badabi.boom"));
        assert_null(hw_tool_find(f.r, "initbreak.never"));

        call_sync(f.e, f.r, &x, "crash.segv", "{}", 5000);
        assert_string_equal(x.failure, "crashed");
#ifdef __SANITIZE_ADDRESS__
        /* AddressSanitizer in the worker catches the SIGSEGV and exits with status 1. */
        assert_string_equal(x.message, "the crash module's worker crashed (exit status 1) during the call");
#else
        assert_string_equal(x.message, "the crash module's worker crashed (signal SIGSEGV) during the call");
#endif
        rec_clear(&x);

        t0 = mono_ms();
        call_sync(f.e, f.r, &x, "hang.forever", "{}", 300);
        assert_string_equal(x.failure, "timeout");
        assert_string_equal(x.message, "the call did not finish within 300 ms");
        assert_true(mono_ms() - t0 < 3000);
        rec_clear(&x);

        call_sync(f.e, f.r, &x, "garbage.write", "{\"kind\":\"bytes\"}", 5000);
        assert_string_equal(x.failure, "garbage");
        rec_clear(&x);
        call_sync(f.e, f.r, &x, "garbage.write", "{\"kind\":\"notjson\"}", 5000);
        assert_string_equal(x.failure, "garbage");
        rec_clear(&x);
        call_sync(f.e, f.r, &x, "garbage.write", "{\"kind\":\"wrongid\"}", 5000);
        assert_string_equal(x.failure, "garbage");
        rec_clear(&x);

        /* Progress through the real library; a cancelled slow call stops early. */
        call_sync(f.e, f.r, &x, "hang.progress", "{\"steps\":3,\"interval_ms\":1}", 5000);
        assert_string_equal(x.failure, "");
        assert_int_equal(x.progress_count, 3);
        assert_true(x.progress == 3.0 && x.total == 3.0);
        rec_clear(&x);
        start_call(f.r, &x, "hang.slow", "{\"ms\":20000}", 60000);
        run_for(f.e, 100);
        t0 = mono_ms();
        hw_call_cancel(x.call);
        run_until(f.e, &x.done_count, 1, 5000);
        assert_string_equal(x.failure, "cancelled");
        assert_true(mono_ms() - t0 < 1500);
        rec_clear(&x);

        /* After all that the modules still serve. */
        call_sync(f.e, f.r, &x, "hang.slow", "{\"ms\":1}", 5000);
        assert_string_equal(x.failure, "");
        assert_string_equal(result_text(x.result), "slept");
        rec_clear(&x);
        fixture_free(&f);
        free(dir);
}

/* Remove the temporary tree (files, fifos, links, directories). */
static void
rm_rf(const char *path)
{
        struct stat st;
        DIR *d;
        struct dirent *de;

        if (lstat(path, &st) < 0)
                return;
        if (S_ISDIR(st.st_mode) && (d = opendir(path))) {
                while ((de = readdir(d))) {
                        char sub[8192];

                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
                        rm_rf(sub);
                }
                closedir(d);
                rmdir(path);
        } else
                unlink(path);
}

int
main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_load_and_call),
                cmocka_unit_test(test_worker_environment),
                cmocka_unit_test(test_module_file_checks),
                cmocka_unit_test(test_module_refusals),
                cmocka_unit_test(test_pool_and_queue),
                cmocka_unit_test(test_pool_grow_and_shrink),
                cmocka_unit_test(test_pipeline),
                cmocka_unit_test(test_queue_full_and_stop),
                cmocka_unit_test(test_crash),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_result_while_idle),
                cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_unavailable),
                cmocka_unit_test(test_real_echo),
                cmocka_unit_test(test_real_test_modules),
        };
        const char *b = getenv("ABS_TOP_BUILDDIR");
        ssize_t n;
        int rc;

        if (argc > 1 && strcmp(argv[1], "--module-fd") == 0)
                return fake_worker_main(argc, argv);
        /* This program is the registry's worker: it is also the run sandbox's builder. */
        if (argc == 2 && strcmp(argv[1], "--sandbox-build") == 0)
                _exit(sb_build_main(3)); /* (no exit handlers: LeakSanitizer cannot work in its new root) */

        if (b && *b)
                builddir = b;
        n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
        if (n <= 0)
                return 1;
        self_exe[n] = '\0';
        if (geteuid() != 0) {
                /* chown to another owner and the owner check need root. */
                printf("1..0 # SKIP test_workers needs root (module owner checks)\n");
                return 0;
        }
        if (!mkdtemp(tmp_root))
                return 1;
        chmod(tmp_root, 0755);
        rc = cmocka_run_group_tests(tests, NULL, NULL);
        rm_rf(tmp_root);
        return rc;
}
