/*
 * worker: the broker's side of one vfio-worker. Spawns it (spawn.h), hands it its device and
 * VMM socket (HANDOFF), supervises it (supervise.h), and answers its requests through a table of
 * {type, allowed-when, handler}. Every request is checked against the one device and the one VM
 * this worker serves: the DMA owner handle, the DMA table and the device's IRQs are fixed when
 * the worker starts, so a worker has no way to name anything else. A worker that sends something
 * malformed, unknown or out of order is treated as faulted: killed, and reported.
 */
#ifndef VB_BROKER_WORKER_H
#define VB_BROKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "dma.h"
#include "err.h"
#include "vfio.h"

enum brk_worker_fault {
	BRK_WORKER_CRASHED,  /* died, or failed its handoff */
	BRK_WORKER_HUNG,     /* stopped answering heartbeats */
	BRK_WORKER_PROTOCOL, /* sent garbage: killed */
};

struct brk_worker;
struct brk_pool_proc;

struct brk_worker_hooks {
	/* The worker acknowledged its HANDOFF and serves its VMM socket now. */
	void (*ready)(void *ctx);
	void (*vmm_state)(void *ctx, bool connected, uint32_t pid, uint32_t uid);
	/* The REMOVAL request ended: answered (acknowledged or not) or timed out. */
	void (*removal_done)(void *ctx, bool acknowledged);
	/* The worker is faulted and has been sent SIGKILL; `exited` follows. Called at most once,
	 * and not for a worker the daemon killed itself (brk_worker_kill). */
	void (*fault)(void *ctx, enum brk_worker_fault kind, const char *reason);
	/* The process has been reaped. Called once; the worker may be freed from here on. */
	void (*exited)(void *ctx, int code, int status);
};

/* What a worker is started with. Pointers are borrowed and must outlive the worker. */
struct brk_worker_args {
	const struct brk_config *cfg;
	uid_t uid; /* the worker's own uid/gid */
	gid_t gid;
	/* Its one device, its VM's DMA table, and its DMA owner handle. */
	struct brk_vfio_dev *dev;
	struct brk_dma *dma;
	uint64_t owner;
	/* HANDOFF contents. */
	const char *bdf, *vm;
	uid_t owner_uid;
	gid_t owner_gid;
	bool allow_mmap;
	uint32_t max_dma_mappings;
	uint64_t max_pinned_bytes;
	uint32_t iommu_pgsize;
	uint32_t generation;
	/* The VMM sockets, sent with the HANDOFF for the protocols in `protocols` (BRK_PROTO_*);
	 * the caller keeps (and may close) its copies. -1 for a protocol not served. */
	uint32_t protocols;
	int vmm_listen_fd;
	int vfu_listen_fd;
	const struct brk_worker_hooks *hooks;
	void *ctx;
	/* A pre-started worker (pool.h) to hand the device to instead of spawning one; start()
	 * owns its pidfd and channel from the call on, whatever it returns. NULL: spawn. */
	const struct brk_pool_proc *pre;
};

/* Spawns the worker and sends its HANDOFF. Errors: negative errno with a message in err. */
int brk_worker_start(uv_loop_t *loop, const struct brk_worker_args *args, struct brk_worker **ret,
		     struct vb_err *err);
/*
 * Takes over a worker that a predecessor started (a broker restarted or re-executed itself;
 * issue 12): `pid`, its `pidfd` and the broker's end of its channel `chan_fd` (from the fd
 * store), with the same args as brk_worker_start() but for the VMM sockets, which the worker
 * already holds. The worker is served at once (requests waiting in its channel since before the
 * restart included); a heartbeat goes out at once, and `ready` follows its answer (the worker
 * then re-sends its VMM state: `vmm_state`), or `fault` (CRASHED when the pidfd says it has
 * ended, HUNG when the heartbeat timeout passes unanswered). Answers in the channel meant for
 * the predecessor are dropped. The process need not be our child (after a restart its parent is
 * init or systemd): it is watched through the pidfd alone. On success the worker owns `pidfd`
 * and `chan_fd` (the accessors below give their numbers); on failure the caller still owns both
 * and nothing was sent. Errors: negative errno with a message in err.
 */
int brk_worker_adopt(uv_loop_t *loop, const struct brk_worker_args *args, pid_t pid, int pidfd,
		     int chan_fd, struct brk_worker **ret, struct vb_err *err);
/* Asks the worker to have its VMM let go of the device (REMOVAL); removal_done() follows within
 * timeout_ms plus a grace period. Errors: -ESHUTDOWN (not serving), send errors. */
int brk_worker_request_removal(struct brk_worker *w, uint32_t timeout_ms);
/* Stops serving and sends SIGKILL; `exited` follows. Idempotent. */
void brk_worker_kill(struct brk_worker *w);
/* Frees the worker; kills and reaps it first if needed. NULL allowed. */
void brk_worker_free(struct brk_worker *w);
pid_t brk_worker_pid(const struct brk_worker *w);
bool brk_worker_vmm_connected(const struct brk_worker *w);
/* The broker's end of the worker's channel and its pidfd, both owned by the worker: what the
 * daemon keeps in the fd store (fdstore.h) so that the next broker can adopt the worker. */
void brk_worker_fds(const struct brk_worker *w, int *ret_channel, int *ret_pidfd);
/* This broker instance: a random non-zero value chosen once per process, sent with every
 * HANDOFF and HEARTBEAT so that a worker can tell a new broker has adopted it. */
uint64_t brk_worker_epoch(void);

/*
 * The lifecycle operations above as a table: what the daemon is given to start and end workers,
 * as it is given a struct brk_sys for the kernel, so that its flows run on the host against a
 * fake (tests/test_daemon.c). The hooks of brk_worker_args are how a worker talks back.
 */
struct brk_worker_ops {
	int (*start)(uv_loop_t *loop, const struct brk_worker_args *args, struct brk_worker **ret,
		     struct vb_err *err);
	int (*adopt)(uv_loop_t *loop, const struct brk_worker_args *args, pid_t pid, int pidfd,
		     int chan_fd, struct brk_worker **ret, struct vb_err *err);
	int (*request_removal)(struct brk_worker *w, uint32_t timeout_ms);
	void (*kill)(struct brk_worker *w);
	void (*free)(struct brk_worker *w);
	pid_t (*pid)(const struct brk_worker *w);
	bool (*vmm_connected)(const struct brk_worker *w);
	void (*fds)(const struct brk_worker *w, int *ret_channel, int *ret_pidfd);
};

/* Real sandboxed vfio-worker processes (the functions above). */
extern const struct brk_worker_ops brk_worker_ops_real;

/* Worker request counts and latencies of every worker, in Prometheus text. */
void brk_worker_metrics(FILE *f);

#endif
