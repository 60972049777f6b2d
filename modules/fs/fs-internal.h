/* SPDX-License-Identifier: MIT */
/*
 * fs module, internal: the helpers fs.c shares with the tools in their own files
 * (grep.c, tree.c, lines.c, json_select.c, logsum.c, walk.c). Every path a tool opens goes
 * through fs_open()/fs_open_regular() (beneath a configured root, see fs.c) or, below a
 * directory already opened that way, through fs_openat2() with RESOLVE_NO_SYMLINKS.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <linux/openat2.h>

#include <cjson/cJSON.h>

#include <agentbroker/module.h>

#include "common/buf.h"
#include "common/encode.h"
#include "common/utf8.h"

#define FS_SLACK 512                   /* result bytes kept for the envelope and the note */
#define FS_SNIFF_BYTES 8192            /* bytes looked at to tell binary from text */
#define FS_QUOTE_MAX 160               /* bytes of a path quoted in a message */
#define FS_CURSOR_TEXT_MAX (64 * 1024) /* longest cursor argument decoded */
#define FS_CANCEL_EVERY 256
#define FS_WALK_DEPTH_MAX 16 /* directory levels below the path argument */

/* ---- fs.c ---- */

const char *fs_quote(const char *arg, char *buf, size_t size);
size_t json_escape_extra(const char *s, size_t n);
size_t fs_budget(const struct abm_call *call);
char *fs_name_display(const char *name, bool *ret_escaped);
const char *fs_type_name(mode_t m);
int fs_openat2(int dirfd, const char *rel, uint64_t flags, uint64_t extra_resolve);
int fs_open(const char *arg, uint64_t flags, struct abm_error *err);
int fs_arg_path(struct abm_call *call, const char *key, const char **ret, struct abm_error *err);
int fs_arg_int(struct abm_call *call, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret,
               struct abm_error *err);
int fs_arg_cursor(struct abm_call *call, const char *tool, unsigned char **ret, size_t *ret_len,
                  struct abm_error *err);
const char *fs_binary_type(const unsigned char *buf, size_t n);
/* Whether buf[0..n) (the start of a file) is binary: a NUL, or not UTF-8 (a sequence cut by
 * the end counts as UTF-8 when more_follows). */
bool fs_is_binary(const unsigned char *buf, size_t n, bool more_follows);
/* Look at the start of the open file fd (q: its quoted path, size bytes): 1 when it is text;
 * 0 when it is binary, and then a text block describing it was added to the result; or a
 * negative errno with err filled. */
int fs_text_or_describe(struct abm_call *call, int fd, const char *q, uint64_t size, struct abm_error *err);
ssize_t fs_pread_all(int fd, void *buf, size_t n, off_t off);
int fs_open_regular(const char *arg, struct stat *ret_st, struct abm_error *err);
/* Open path argument path as a text file: 1 with *ret_fd and *ret_st set (q, qsize bytes:
 * its quoted path); 0 when it is binary (a text block describing it was added); or a
 * negative errno with err filled. */
int fs_open_text(struct abm_call *call, const char *path, char *q, size_t qsize, struct stat *ret_st,
                 int *ret_fd, struct abm_error *err);
int fs_read_names(int dfd, char ***ret, size_t *ret_n, size_t *read_count);
void fs_names_free(char **names, size_t n);
int fs_cursor_split(char *rel, char **comps, size_t max);

/* ---- text.c: compact text ---- */

/* An optional boolean argument (def when absent). Returns 0 or a negative errno with err
 * filled. */
int fs_arg_bool(struct abm_call *call, const char *key, bool def, bool *ret, struct abm_error *err);
/* Append s[0..n) with every byte of an invalid UTF-8 sequence (and NUL) written as \xNN.
 * Returns true when something was escaped. */
bool fs_buf_put_escaped(struct ab_buf *b, const char *s, size_t n);
/* Bytes b[0..len) takes in a JSON text block (its length plus escapes). */
size_t fs_text_cost(const char *s, size_t n);
/* A byte count for people: "812 B", "4.0 KiB", "12.3 MiB". Returns buf. */
const char *fs_human_bytes(uint64_t n, char *buf, size_t size);
/* Render a structuredContent object of the fs tools as compact text (see
 * docs/result-shaping.md, "No result pays twice"). Returns a new string or NULL. */
char *fs_render_compact(const cJSON *o);

/* ---- walk.c: depth-first walks in name order, resumable ---- */

struct fs_walk;
/* Called for each entry, name in dirfd (w->rel holds its path relative to the walk's base,
 * lstat-style st). Return 1 to go on (and descend into a directory), 2 to go on without
 * descending, 0 to stop the walk here (resuming starts at this entry), or -errno. */
typedef int (*fs_walk_fn)(struct fs_walk *w, int dirfd, const char *name, const struct stat *st);
/* Called when a directory's entries are all done (w->rel is the directory). May be NULL. */
typedef int (*fs_walk_done_fn)(struct fs_walk *w, unsigned depth);
struct fs_walk {
        fs_walk_fn visit;
        fs_walk_done_fn leave;
        void *userdata;
        struct abm_call *call;
        char rel[PATH_MAX];  /* the entry being visited, relative to the base */
        unsigned depth;      /* of the entry being visited: 0 for the base's entries */
        unsigned max_depth;  /* directories at this depth are not entered */
        size_t read;         /* directory entries read */
        size_t not_searched; /* directories not entered: unreadable, too deep, too large */
        size_t visited;
        bool resume_after; /* the cursor names an entry already visited: do not
                                          * visit it again, but do enter it */
        bool stop;
};
/* Walk the directory dfd (closed here) from the entry the cursor components name
 * (inclusive, or exclusive with w->resume_after; NULL: from the start). Returns 0 or a negative errno (-ECANCELED). */
int fs_walk(struct fs_walk *w, int dfd, char **cursor, size_t n_cursor);

/* ---- the tools ---- */

int fs_read_lines(struct abm_call *call, const char *path, struct abm_error *err);
int fs_grep(struct abm_call *call, struct abm_error *err);
int fs_tree(struct abm_call *call, struct abm_error *err);
int fs_read_json(struct abm_call *call, struct abm_error *err);
int fs_summarize_log(struct abm_call *call, struct abm_error *err);

extern const char fs_grep_schema[], fs_tree_schema[], fs_read_json_schema[], fs_summarize_log_schema[];
