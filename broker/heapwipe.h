/* SPDX-License-Identifier: MIT */
/* Heap blocks of OpenSSL and cJSON wiped when freed (agentbrokerd). */
#pragma once

/* Make OpenSSL (CRYPTO_set_mem_functions) and cJSON (cJSON_InitHooks) wipe every heap block
 * they free or move in realloc: their internal copies of secrets (a PKCS#8 key's decoded
 * octet string, a reply being printed into a growing buffer) are gone once freed, not left
 * for a core dump or a debugger to find in free memory. Call first thing in main(), before
 * OpenSSL or cJSON allocates. Returns 0, or -EBUSY when OpenSSL has allocated already. */
int ab_heapwipe_install(void);
