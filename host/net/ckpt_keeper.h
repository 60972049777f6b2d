/* SPDX-License-Identifier: MIT */
/* The keeper of a host's own run's tunnel checkpoint: a small child process that deletes the
 * checkpoint when the host is gone without deleting it itself (kill -9), so a run's call
 * results never outlive the run (issue 11; docs/tunnel.md, "Checkpoint"). */
#ifndef AB_HOST_NET_CKPT_KEEPER_H
#define AB_HOST_NET_CKPT_KEEPER_H

/* Fork the keeper for the checkpoint at path (and path.tmp). It ignores SIGTERM, SIGINT and
 * SIGHUP, holds no descriptor but stderr and the read end of a pipe whose only write end is
 * *ret_fd (close-on-exec, kept by the host), and when that pipe ends (the host exited, however
 * it ended) deletes both files and exits. Call before any thread is started. Returns 0 or
 * -errno. */
int ckpt_keeper_start(const char *path, int *ret_fd);

#endif /* AB_HOST_NET_CKPT_KEEPER_H */
