/* SPDX-License-Identifier: MIT */
/* The one non-cryptographic string hash (64-bit FNV-1a) for in-memory hash tables: the tunnel's
 * call store, the audit report's tables, the fs module's log summary. Header-only, so modules
 * use it without linking common code. Never for anything a peer could exploit by choosing
 * keys beyond making its own lookups slower (tables that hold peer keys bound their size). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define AB_FNV1A64_OFFSET 14695981039346656037ULL
#define AB_FNV1A64_PRIME 1099511628211ULL

/* FNV-1a of the n bytes at p. */
static inline uint64_t
ab_hash_bytes(const void *p, size_t n)
{
        const unsigned char *s = p;
        uint64_t h = AB_FNV1A64_OFFSET;

        for (size_t i = 0; i < n; i++)
                h = (h ^ s[i]) * AB_FNV1A64_PRIME;
        return h;
}

/* FNV-1a of the string s (without its NUL). */
static inline uint64_t
ab_hash_str(const char *s)
{
        uint64_t h = AB_FNV1A64_OFFSET;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * AB_FNV1A64_PRIME;
        return h;
}
