/* SPDX-License-Identifier: MIT */
/* probe: a test-only module that looks at its run's sandbox from inside a worker and tries
 * its limits, for tests/integration/sandbox.sh (docs/architecture.md, "Run sandboxes").
 *
 * probe.do {action, path?, text?, n?} → one text block:
 *   ps          "pids=P1,P2,..." : the numeric entries of /proc (what the worker can name)
 *   ls PATH     "ls rc=0 NAMES" (sorted, space-separated) or "ls rc=-1 errno=NAME"
 *   read PATH   "read rc=0 TEXT" (the first 256 bytes) or "read rc=-1 errno=NAME"
 *   write PATH TEXT  "write rc=0|-1 errno=NAME" (creates or truncates)
 *   tcp / udp   connect / sendto 127.0.0.1 port n: "tcp rc=-1 errno=NAME"
 *   forkbomb N  forks up to N children that wait; "forked=K errno=NAME" (the error that
 *               stopped it, 0 when all N were made); all of them are killed and reaped after
 *   memhog N    a child touches N MiB; "memhog exit=STATUS" or "memhog signal=NAME"
 *   leak N      the worker itself touches N MiB (kept until it exits) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <agentbroker/module.h>

#define PROBE_FORK_MAX 4096
#define PROBE_MIB_MAX 4096
#define PROBE_OUT_MAX 4096

static const char probe_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"action\":{\"type\":\"string\",\"enum\":[\"ps\",\"ls\",\"read\",\"write\",\"tcp\",\"udp\",\"forkbomb\","
        "\"memhog\",\"leak\"]},"
        "\"path\":{\"type\":\"string\",\"maxLength\":4096},"
        "\"text\":{\"type\":\"string\",\"maxLength\":4096},"
        "\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":65535}},"
        "\"required\":[\"action\"],\"additionalProperties\":false}";

static const char *
errname(int e)
{
        const char *n = e ? strerrorname_np(e) : "0";
        return n ? n : "?";
}

static int
cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir (numeric only: /proc's processes), sorted, into out. */
static int
list(const char *dir, bool numeric, char *out, size_t len)
{
        char *names[512];
        size_t n = 0, off = 0;
        struct dirent *de;
        DIR *d = opendir(dir);

        if (!d)
                return -errno;
        while ((de = readdir(d)) && n < 512) {
                if (de->d_name[0] == '.' || (numeric && (de->d_name[0] < '0' || de->d_name[0] > '9')))
                        continue;
                names[n] = strdup(de->d_name);
                if (names[n])
                        n++;
        }
        closedir(d);
        qsort(names, n, sizeof(*names), cmp);
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                if (off < len)
                        off += (size_t)snprintf(out + off, len - off, "%s%s", i ? (numeric ? "," : " ") : "",
                                                names[i]);
                free(names[i]);
        }
        return 0;
}

static int
net(struct abm_call *call, bool tcp, int port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0), rc, e;

        if (fd < 0)
                return abm_call_textf(call, "%s rc=-1 errno=%s", tcp ? "tcp" : "udp", errname(errno));
        if (tcp)
                rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        else
                rc = sendto(fd, "x", 1, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -1 : 0;
        e = errno;
        close(fd);
        return abm_call_textf(call, "%s rc=%d errno=%s", tcp ? "tcp" : "udp", rc, errname(rc < 0 ? e : 0));
}

static int
forkbomb(struct abm_call *call, int n)
{
        pid_t pids[PROBE_FORK_MAX];
        int k = 0, e = 0;

        if (n > PROBE_FORK_MAX)
                n = PROBE_FORK_MAX;
        for (; k < n; k++) {
                pid_t p = fork();

                if (p < 0) {
                        e = errno;
                        break;
                }
                if (p == 0) {
                        pause();
                        _exit(0);
                }
                pids[k] = p;
        }
        for (int i = 0; i < k; i++)
                (void)kill(pids[i], SIGKILL);
        for (int i = 0; i < k; i++)
                (void)waitpid(pids[i], NULL, 0);
        return abm_call_textf(call, "forked=%d errno=%s", k, errname(e));
}

/* Touch mib MiB, a page at a time. Returns 0, or -1 when the allocation failed. */
static int
touch(long mib)
{
        size_t len = (size_t)mib << 20;
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return -1;
        for (size_t i = 0; i < len; i += 4096)
                p[i] = 1;
        return 0;
}

static int
memhog(struct abm_call *call, long mib)
{
        int st;
        pid_t p = fork();

        if (p < 0)
                return abm_call_textf(call, "memhog fork errno=%s", errname(errno));
        if (p == 0)
                _exit(touch(mib) == 0 ? 0 : 1);
        if (waitpid(p, &st, 0) < 0)
                return abm_call_textf(call, "memhog waitpid errno=%s", errname(errno));
        if (WIFSIGNALED(st))
                return abm_call_textf(call, "memhog signal=%s", sigabbrev_np(WTERMSIG(st)));
        return abm_call_textf(call, "memhog exit=%d", WEXITSTATUS(st));
}

static int
probe_do(struct abm_call *call, struct abm_error *err)
{
        const struct abm_json *args = abm_call_args(call);
        const char *action = NULL, *path = NULL, *text = NULL;
        char out[PROBE_OUT_MAX];
        int64_t n = 0;
        int fd, r;

        if (abm_json_get_string(args, "action", &action) < 0)
                return abm_error_set(err, -EINVAL, "action is required");
        (void)abm_json_get_string(args, "path", &path);
        (void)abm_json_get_string(args, "text", &text);
        (void)abm_json_get_int(args, "n", &n);

        if (strcmp(action, "ps") == 0) {
                r = list("/proc", true, out, sizeof(out));
                return r < 0 ? abm_error_set(err, r, "/proc: %s", strerror(-r))
                             : abm_call_textf(call, "pids=%s", out);
        }
        if (strcmp(action, "tcp") == 0 || strcmp(action, "udp") == 0)
                return net(call, action[0] == 't', (int)n);
        if (strcmp(action, "forkbomb") == 0)
                return forkbomb(call, (int)n);
        if (strcmp(action, "memhog") == 0)
                return memhog(call, n > PROBE_MIB_MAX ? PROBE_MIB_MAX : (long)n);
        if (strcmp(action, "leak") == 0)
                return abm_call_textf(call, "leak rc=%d",
                                      touch(n > PROBE_MIB_MAX ? PROBE_MIB_MAX : (long)n));
        if (!path)
                return abm_error_set(err, -EINVAL, "path is required");
        if (strcmp(action, "ls") == 0) {
                r = list(path, false, out, sizeof(out));
                return r < 0 ? abm_call_textf(call, "ls rc=-1 errno=%s", errname(-r))
                             : abm_call_textf(call, "ls rc=0 %s", out);
        }
        if (strcmp(action, "read") == 0) {
                ssize_t k;

                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return abm_call_textf(call, "read rc=-1 errno=%s", errname(errno));
                k = read(fd, out, sizeof(out) - 1);
                close(fd);
                if (k < 0)
                        return abm_call_textf(call, "read rc=-1 errno=%s", errname(errno));
                out[k] = '\0';
                return abm_call_textf(call, "read rc=0 %s", out);
        }
        if (strcmp(action, "write") == 0) {
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0)
                        return abm_call_textf(call, "write rc=-1 errno=%s", errname(errno));
                r = text && write(fd, text, strlen(text)) < 0 ? -1 : 0;
                int e = errno;
                close(fd);
                return abm_call_textf(call, "write rc=%d errno=%s", r, errname(r < 0 ? e : 0));
        }
        return abm_error_set(err, -EINVAL, "unknown action");
}

static const struct abm_tool probe_tools[] = {
        {
                .name = "do",
                .description = "Test only: looks at its run's sandbox from inside and tries its limits.",
                .input_schema = probe_schema,
                .call = probe_do,
        },
};

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "probe",
        .version = "test",
        .tools = probe_tools,
        .n_tools = 1,
};
