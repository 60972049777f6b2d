/* SPDX-License-Identifier: MIT */
/* agentbrokerd: the credential broker daemon. Parses the command line, hardens the process,
 * loads the policy and secrets, and runs the event loop (broker/server.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "broker/heapwipe.h"
#include "broker/secrets.h"
#include "broker/server.h"
#include "common/client.h"
#include "common/log.h"
#include "common/secmem.h"

static void
usage(FILE *f)
{
        fprintf(f,
                "Usage: agentbrokerd [OPTIONS]\n"
                "The agentbroker credential broker: holds secrets, decides tool calls by policy,\n"
                "issues short-lived call tokens and audits every decision.\n\n"
                "  -p, --policy FILE   policy file (default %s)\n"
                "  -s, --socket PATH   socket to listen on, unless systemd passes one\n"
                "                      (default %s)\n"
                "  -c, --credentials-dir DIR  read `credential:` secrets from DIR (default:\n"
                "                      systemd's $CREDENTIALS_DIRECTORY); for starts without systemd\n"
                "  -f, --foreground    stay in the foreground and log to stderr\n"
                "  -d, --debug         log debug messages\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n",
                AB_POLICY_DEFAULT_PATH, AB_DEFAULT_SOCKET);
}

/* Detach from the terminal: fork twice, new session, stdio to /dev/null. The parent exits
 * only once the child says it is ready (or failed), with the child's status.
 * Returns the write end of the readiness pipe in the child, or -errno. */
static int
daemonize(void)
{
        int p[2], devnull;
        pid_t pid;
        char status = 1;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0) {
                close(p[1]);
                if (read(p[0], &status, 1) != 1)
                        status = 1;
                _exit(status);
        }
        close(p[0]);
        if (setsid() < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0)
                _exit(0);
        if (chdir("/") < 0)
                return -errno;
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
                dup2(devnull, 2);
                if (devnull > 2)
                        close(devnull);
        }
        return p[1];
}

static void
tell_parent(int fd, char status)
{
        if (fd >= 0) {
                (void)!write(fd, &status, 1);
                close(fd);
        }
}

int
main(int argc, char **argv)
{
        static const struct option opts[] = { { "policy", required_argument, NULL, 'p' },
                                              { "socket", required_argument, NULL, 's' },
                                              { "credentials-dir", required_argument, NULL, 'c' },
                                              { "foreground", no_argument, NULL, 'f' },
                                              { "debug", no_argument, NULL, 'd' },
                                              { "help", no_argument, NULL, 'h' },
                                              { "version", no_argument, NULL, 'V' },
                                              {} };
        struct ab_broker b = { .epfd = -1, .listen_fd = -1, .sigfd = -1, .timerfd = -1 };
        const char *policy = AB_POLICY_DEFAULT_PATH, *sock = AB_DEFAULT_SOCKET, *creds_dir = NULL;
        bool foreground = false, debug = false, under_systemd;
        int c, r, ready_fd = -1, ret = EXIT_FAILURE;

        /* Before OpenSSL or cJSON allocates: their freed blocks are wiped (secrets pass through). */
        r = ab_heapwipe_install();
        if (r < 0) {
                fprintf(stderr, "agentbrokerd: cannot hook OpenSSL's allocator: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        while ((c = getopt_long(argc, argv, "p:s:c:fdhV", opts, NULL)) != -1) {
                switch (c) {
                case 'p': policy = optarg; break;
                case 's': sock = optarg; break;
                case 'c': creds_dir = optarg; break;
                case 'f': foreground = true; break;
                case 'd': debug = true; break;
                case 'h': usage(stdout); return EXIT_SUCCESS;
                case 'V': printf("agentbrokerd %s\n", PACKAGE_VERSION); return EXIT_SUCCESS;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "agentbrokerd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (creds_dir && (creds_dir[0] != '/' || ab_secrets_set_credentials_dir(creds_dir) < 0)) {
                fprintf(stderr, "agentbrokerd: --credentials-dir takes an absolute path\n");
                return 2;
        }

        /* Under systemd (Type=notify) we never fork and we log to the journal. */
        under_systemd = getenv("NOTIFY_SOCKET") || getenv("JOURNAL_STREAM") || getenv("LISTEN_FDS");
        if (under_systemd)
                foreground = true;
        ab_log_use_journal();
        ab_log_init("agentbrokerd", under_systemd || !foreground);
        if (debug)
                ab_log_set_max_level(LOG_DEBUG);

        /* Before any secret is read: no core dumps, no ptrace by same-uid processes. */
        r = ab_process_harden();
        if (r < 0) {
                log_error("cannot harden the process: %s", strerror(-r));
                return EXIT_FAILURE;
        }
        if (!foreground) {
                ready_fd = daemonize();
                if (ready_fd < 0) {
                        log_error("cannot daemonize: %s", strerror(-ready_fd));
                        return EXIT_FAILURE;
                }
        }
        umask(0077);
        /* OpenSSL keeps private keys (Ed25519) in its secure heap when there is one:
         * mlock'd, MADV_DONTDUMP, guarded. Set up after daemonizing: locks do not survive
         * fork. Without it the keys would sit in the ordinary heap. */
        if (CRYPTO_secure_malloc_init(256 * 1024, 32) != 1)
                log_warning("OpenSSL's secure heap is not available: private keys stay in ordinary memory");

        b.socket_path = strdup(sock);
        if (!b.socket_path)
                goto out;
        r = ab_state_init(&b.state, policy);
        if (r < 0) {
                log_error("cannot set up: %s", strerror(-r));
                goto out;
        }
        r = ab_state_load_policy(&b.state, NULL);
        if (r < 0)
                goto out;
        r = ab_audit_open(b.state.policy->audit.failure_deny, &b.state.audit);
        if (r < 0) {
                log_error("cannot open the audit path: %s", strerror(-r));
                goto out;
        }
        {
                /* The start-up policy-load record, now that audit is open. */
                struct ab_event ev = ab_event_init(AB_EV_POLICY_LOAD, getuid(), 0);

                ev.detail = b.state.policy_path;
                (void)ab_audit_emit(b.state.audit, &ev);
        }
        ab_audit_defer_journal(b.state.audit, true);
        r = ab_server_setup(&b);
        if (r < 0) {
                log_error("cannot set up the server: %s", strerror(-r));
                goto out;
        }
        log_info("agentbrokerd %s serving on %s", PACKAGE_VERSION, b.socket_path);
        tell_parent(ready_fd, 0);
        ready_fd = -1;
        r = ab_server_run(&b);
        if (r < 0)
                log_error("event loop failed: %s", strerror(-r));
        else
                ret = EXIT_SUCCESS;
out:
        tell_parent(ready_fd, 1);
        ab_server_teardown(&b);
        ab_state_done(&b.state);
        free(b.socket_path);
        (void)ab_secrets_set_credentials_dir(NULL);
        return ret;
}
