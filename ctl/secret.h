/* SPDX-License-Identifier: MIT */
/* agentbrokerctl secret install: a secret for a new module into the credential store
 * (ctl/secret.c). */
#pragma once

#include <stdio.h>

#define AB_SECRET_INSTALL_MAX (64 * 1024) /* the broker's AB_SECRET_MAX */
#define AB_SECRET_NAME_MAX 64

struct ab_secret_install {
        const char *name;       /* the policy's secret name: [A-Za-z0-9_-]{1,64} */
        const char *file;       /* the value's file, "-" for standard input */
        const char *credstore;  /* directory of the credential store (/etc/credstore) */
        const char *dropin_dir; /* agentbroker.service's drop-in directory, or NULL: none */
};

/* Copy the value (1..AB_SECRET_INSTALL_MAX bytes) into CREDSTORE/agentbroker.NAME (mode
 * 0600, written to a temporary file and renamed; an existing one is not replaced), write
 * DROPIN_DIR/agentbroker-secret-NAME.conf with the LoadCredential= line that passes it to
 * agentbroker.service, and print what was done and the policy lines that use it to out.
 * The value is wiped from memory and never printed. Returns 0 or -errno with a message in
 * err (size bytes). */
int ab_secret_install(const struct ab_secret_install *s, FILE *out, char *err, size_t size);
