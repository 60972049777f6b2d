/* SPDX-License-Identifier: MIT */
/* Heap blocks of OpenSSL and cJSON wiped when freed (broker/heapwipe.h). Both libraries
 * handle secrets in ordinary heap memory and free it without wiping: OpenSSL 3.0 frees the
 * decoded private key of a PKCS#8 Ed25519 key with a plain ASN1_OCTET_STRING_free, and cJSON
 * prints into a buffer it grows and shrinks with realloc, which may move the text and free
 * the old block as it is. The hooks here wipe a block's usable size (malloc_usable_size)
 * before freeing it, and realloc always moves, wiping the old block. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "broker/heapwipe.h"

/* Wipe the whole usable block at p, then free it. Accepts NULL. */
static void
wipe_free(void *p)
{
        if (!p)
                return;
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
}

/* realloc that never leaves the old bytes behind: a new block, the contents copied, the old
 * block wiped and freed. Returns the new block, or NULL (p unchanged) when out of memory. */
static void *
wipe_realloc(void *p, size_t n)
{
        size_t old;
        void *q;

        if (!p)
                return malloc(n);
        if (n == 0) {
                wipe_free(p);
                return NULL;
        }
        q = malloc(n);
        if (!q)
                return NULL;
        old = malloc_usable_size(p);
        memcpy(q, p, old < n ? old : n);
        wipe_free(p);
        return q;
}

static void *
ossl_malloc(size_t n, const char *file, int line)
{
        (void)file;
        (void)line;
        return malloc(n);
}

static void *
ossl_realloc(void *p, size_t n, const char *file, int line)
{
        (void)file;
        (void)line;
        return wipe_realloc(p, n);
}

static void
ossl_free(void *p, const char *file, int line)
{
        (void)file;
        (void)line;
        wipe_free(p);
}

int
ab_heapwipe_install(void)
{
        /* A free_fn other than free() also makes cJSON print with malloc, copy and free
         * instead of realloc (cJSON_InitHooks). */
        cJSON_Hooks hooks = { .malloc_fn = malloc, .free_fn = wipe_free };

        if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
                return -EBUSY;
        cJSON_InitHooks(&hooks);
        return 0;
}
