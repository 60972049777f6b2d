/* SPDX-License-Identifier: MIT */
/* tests/abi/dlopen-modules: every module built in modules/ loads the way a worker loads it
 * (dlopen RTLD_NOW|RTLD_LOCAL: every symbol resolved at once), exports a descriptor of the
 * right type, ABI major and name, and the set of built modules is exactly the expected one:
 * a module that appears without being added here fails the test, as does one that is missing
 * (SSSD's dlopen-tests do the same). TAP output.
 *
 * Usage: dlopen-modules [DIR]   (default: $ABS_TOP_BUILDDIR/modules/.libs) */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <agentbroker/module.h>

/* The modules the build ships, sorted. Add a new module here when adding it to Makefile.am. */
static const char *const expected[] = { "echo", "fs", "http", "sign" };

static unsigned n_test;

static void __attribute__((format(printf, 2, 3))) ok(bool good, const char *fmt, ...)
{
        va_list ap;

        n_test++;
        printf("%sok %u - ", good ? "" : "not ", n_test);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

static int
is_module_file(const struct dirent *d)
{
        size_t n = strlen(d->d_name);

        return n > 3 && strcmp(d->d_name + n - 3, ".so") == 0;
}

static bool
is_expected(const char *name)
{
        for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
                if (strcmp(expected[i], name) == 0)
                        return true;
        return false;
}

/* Load one module and check its descriptor. */
static void
check_module(const char *dir, const char *file)
{
        char path[4096 + 512], name[256];
        const struct abm_module *m;
        void *h;

        snprintf(name, sizeof(name), "%.*s", (int)(strlen(file) - 3), file);
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        ok(h != NULL, "%s loads with RTLD_NOW|RTLD_LOCAL", file);
        if (!h) {
                printf("# %s\n", dlerror());
                ok(true, "%s exports %s # SKIP not loaded", file, ABM_MODULE_SYMBOL);
                ok(true, "%s has a well-formed descriptor # SKIP not loaded", file);
                return;
        }
        m = dlsym(h, ABM_MODULE_SYMBOL);
        ok(m != NULL, "%s exports %s", file, ABM_MODULE_SYMBOL);
        if (m) {
                bool good = m->type == ABM_MODULE_TYPE && ABM_GET_MAJOR(m->abi_version) == ABM_ABI_MAJOR &&
                            ABM_GET_MINOR(m->abi_version) <= ABM_ABI_MINOR && m->name &&
                            strcmp(m->name, name) == 0 && m->tools && m->n_tools >= 1 &&
                            m->n_tools <= ABM_TOOLS_MAX;

                if (!good)
                        printf("# type 0x%08x abi %u.%u name %s tools %zu\n", m->type,
                               ABM_GET_MAJOR(m->abi_version), ABM_GET_MINOR(m->abi_version),
                               m->name ? m->name : "(null)", m->n_tools);
                for (size_t i = 0; good && i < m->n_tools; i++)
                        if (!m->tools[i].name || !m->tools[i].input_schema || !m->tools[i].call) {
                                printf("# tool %zu lacks a name, an input schema or a call hook\n", i);
                                good = false;
                        }
                ok(good, "%s: type ABM1, ABI %d.x, name \"%s\", 1..%d tools with name, schema and hook",
                   file, ABM_ABI_MAJOR, name, ABM_TOOLS_MAX);
        } else
                ok(true, "%s has a well-formed descriptor # SKIP no descriptor", file);
        dlclose(h);
}

int
main(int argc, char **argv)
{
        char dir[4096], got[1024] = "", want[1024] = "";
        const char *top = getenv("ABS_TOP_BUILDDIR");
        struct dirent **files = NULL;
        bool same;
        int n;

        if (argc > 1)
                snprintf(dir, sizeof(dir), "%s", argv[1]);
        else
                snprintf(dir, sizeof(dir), "%s/modules/.libs", top ? top : ".");
        n = scandir(dir, &files, is_module_file, alphasort);
        if (n < 0) {
                printf("1..0 # SKIP cannot read %s: no modules built\n", dir);
                return 0;
        }

        for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
                snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s.so", i ? " " : "",
                         expected[i]);
        for (int i = 0; i < n; i++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
                         files[i]->d_name);
        same = strcmp(got, want) == 0;

        printf("1..%d\n", 1 + 3 * n);
        ok(same, "the built modules are exactly: %s", want);
        if (!same) {
                printf("# built: %s\n", got);
                for (int i = 0; i < n; i++) {
                        char name[256];

                        snprintf(name, sizeof(name), "%.*s", (int)(strlen(files[i]->d_name) - 3),
                                 files[i]->d_name);
                        if (!is_expected(name))
                                printf("# unknown module %s: add it to tests/abi/dlopen-modules.c\n",
                                       files[i]->d_name);
                }
        }
        for (int i = 0; i < n; i++) {
                check_module(dir, files[i]->d_name);
                free(files[i]);
        }
        free(files);
        /* Failures are counted by their "not ok" lines, as in the other TAP tests. */
        return 0;
}
