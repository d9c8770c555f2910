/*
 * worker_priv: what broker/worker.c (one worker's channel, handoff, supervision hooks and
 * lifecycle) and broker/worker_req.c (the request table: what a worker may ask, confined to its
 * device and VM) share. Nothing here is seen outside broker/worker*.c: the rest of the broker
 * uses worker.h.
 */
#ifndef VB_BROKER_WORKER_PRIV_H
#define VB_BROKER_WORKER_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "base.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "registry.h"
#include "supervise.h"
#include "worker.h"

#define WKR_TYPES (VB__BRK__TYPE__SYNC + 1)

/* Worker states, as bits for the table's allowed-when. */
enum bw_state {
	W_HANDOFF = 1u << 0,  /* HANDOFF sent, not yet acknowledged */
	W_ACTIVE = 1u << 1,   /* serving */
	W_REMOVING = 1u << 2, /* REMOVAL sent: teardown requests only */
	W_DEAD = 1u << 3,     /* killed or faulted: nothing */
};

struct brk_worker {
	struct brk_worker_args a;
	char bdf[VB_BDF_LEN], vm[BRK_VM_NAME_MAX + 1];
	unsigned state;
	pid_t pid;
	int pidfd; /* owned by sup */
	struct ipc_uv *u;
	struct brk_sup *sup;
	uv_timer_t removal_timer;
	uint32_t handoff_id, removal_id, heartbeat_id;
	uint64_t heartbeat_seq;
	bool removal_pending, vmm_connected, fault_reported, freeing;
	/* Adopted from a predecessor and not yet heard from: `ready` comes with the first answer
	 * to a heartbeat of ours, and the first VMM_STATE is news whatever it says. */
	bool adopting, vmm_state_known;
	int open; /* things libuv still has to close: channel, timer */
};

/* worker.c: the worker is faulted (once): its fault hook is told `kind` and why, and it is
 * killed. */
void brk_worker__fault(struct brk_worker *w, enum brk_worker_fault kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* worker_req.c: a request `m` of the worker, served by the table or refused (a request out of
 * place faults the worker); and the table's metrics (answers by result, latency). */
void brk_worker__dispatch(struct brk_worker *w, struct ipc_msg *m);
void brk_worker__req_metrics(FILE *f);

#endif
