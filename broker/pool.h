/*
 * pool: sandboxed workers started before any AddDevice asks for one ([worker] prestart), so
 * that a hot-plug waits for neither the sandbox's construction nor the worker's exec. A pooled
 * worker is a vfio-worker in its sandbox (its own uid from uid_range, namespaces, empty root,
 * no capabilities) holding nothing but its broker channel: no device, no VMM socket, nothing
 * of any VM, until the HANDOFF of the device it is taken for. Filled in the background: a spawn
 * is begun on the loop (clone3, the id maps) and completed when the child's report pipe says
 * it exec'd, so neither the refill nor the taking ever waits for a child.
 *
 * Nothing of the pool outlives the broker: the workers' channels are not in the fd store, so a
 * restart or exit hangs them up and they exit; a re-exec drains the pool first (brk_pool_drain)
 * so that the new image has no unknown children.
 */
#ifndef VB_BROKER_POOL_H
#define VB_BROKER_POOL_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"

struct brk_pool;

/* A pre-started worker, taken out of the pool: the caller owns both fds. */
struct brk_pool_proc {
	pid_t pid;
	int pidfd;
	int chan_fd;
	uid_t uid;
	gid_t gid;
};

/* Whether `uid` is the uid of a worker the caller has (a device's): the pool never picks it. */
typedef bool (*brk_pool_uid_used_fn)(void *ctx, uid_t uid);

/*
 * A pool of cfg->prestart workers, filled from the loop's next iteration on. `uid_used` tells
 * which uids of the range the daemon's workers hold. With prestart 0 the pool stays empty and
 * brk_pool_take() always says -ENOENT. Errors: -ENOMEM.
 */
int brk_pool_new(uv_loop_t *loop, const struct brk_config *cfg, brk_pool_uid_used_fn uid_used,
		 void *ctx, struct brk_pool **ret);
/* A worker that has exec'd and waits for its HANDOFF, or -ENOENT when none is ready (the
 * caller spawns one the usual way). The refill begins at once when none was ready; after a take
 * it waits for brk_pool_kick() or 1 s, so that it does not compete with the hot-plug. */
int brk_pool_take(struct brk_pool *p, struct brk_pool_proc *ret);
/* The hot-plug that took a worker is nearly done (its VMM was admitted): refill in 100 ms, once
 * the worker has answered the VMM's HELLO. */
void brk_pool_kick(struct brk_pool *p);
/* A worker uid of `c`'s uid_range that neither `used` (the daemon's workers) nor the pool `p`
 * (NULL: none) holds; a shared user= is always free. -EUSERS when every one is taken. */
int brk_pool_pick_uid(const struct brk_pool *p, const struct brk_config *c,
		      brk_pool_uid_used_fn used, void *ctx, uid_t *uid, gid_t *gid);
/* Whether a pooled (or starting) worker runs as `uid`. */
bool brk_pool_uid_taken(const struct brk_pool *p, uid_t uid);
/* Ends every pooled and starting worker (SIGKILL, reaped), and stops refilling. */
void brk_pool_drain(struct brk_pool *p);
/* Refills a drained pool (a re-exec that did not happen). */
void brk_pool_resume(struct brk_pool *p);
/* Drains the pool and frees it once libuv has closed its handles (run the loop afterwards).
 * NULL allowed. */
void brk_pool_free(struct brk_pool *p);
/* vfio_broker_pool_* metrics, in Prometheus text. */
void brk_pool_metrics(const struct brk_pool *p, FILE *f);

#endif
