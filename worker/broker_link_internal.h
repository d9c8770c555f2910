/*
 * broker_link internals, shared by the three files of the worker's broker link:
 * broker_link.c (the link's life, the broker's requests, the re-attach to a new broker),
 * broker_handoff.c (the HANDOFF) and broker_ops.c (the backend: calls to the broker and the
 * undoing of what a call given up on did after all).
 */
#ifndef VB_WKR_BROKER_LINK_INTERNAL_H
#define VB_WKR_BROKER_LINK_INTERNAL_H

#include "broker_call.h"
#include "broker_link.h"
#include "defer.h"
#include "dma_held.h"

/* Timed-out unmaps remembered for the VMM's retry; the oldest goes first when full (a VMM
 * retries at once, as it is told). */
#define WKR_LOST_UNMAPS_MAX 16

struct wkr_broker {
	struct ipc_chan *chan; /* until wkr_broker_start */
	struct ipc_uv *u;
	struct ipc_msg *handoff;
	struct ipc_msg *removal; /* the REMOVAL request being served */
	struct wkr_server *srv;	 /* NULL when the native protocol is not served */
	struct wkr_vfu *vfu;	 /* NULL when vfio-user is not served */
	struct wkr_dev *dev;
	void (*gone)(void *data, int err);
	void *gone_data;
	void (*note)(void *data, const char *line);
	/* The broker instance (Handoff, Heartbeat); 0 while none said. */
	uint64_t epoch;
	struct wkr_bcalls calls;
	/* IRQ indexes (bits) whose SET_IRQS failed or went unanswered since the last re-attach,
	 * and those whose routing is to be sent again from the loop. */
	uint32_t irq_dirty, irq_resync;
	bool reattach; /* a new broker: re-send the VMM state from the loop */
	/* A new broker that answers SYNC (Heartbeat.answers_sync) has attached: its fence is
	 * still to be sent. */
	bool fence_owed;
	/* DMA_UNMAPs the VMM was told timed out (oldest first): the broker may have carried one
	 * out all the same, so the VMM's retry of the same range is told it is done when the
	 * range is gone (ENOENT). Forgotten when retried, mapped over, or answered ENOENT late. */
	struct {
		uint64_t iova, size;
	} lost_unmaps[WKR_LOST_UNMAPS_MAX];
	size_t nlost;
	/* What the VMM holds mapped, in the channel's order: a timed-out DMA_MAP over it created
	 * nothing, and its range is not unmapped (it is the VMM's). */
	struct wkr_held held;
	uint64_t held_from; /* the seq of the last DMA_UNMAP_ALL: maps sent before it are gone */
	/* The re-sent routing's calls: until they complete, the servers are held (no VMM access
	 * may reach the device while an index is off in the kernel). */
	struct wkr_defer resync;
	struct {
		bool known, connected;
		pid_t pid;
		uid_t uid;
	} vmm;		 /* what the last VMM_STATE said */
	uv_timer_t kick; /* runs the re-sends from the loop */
	bool kick_open;
	int open_handles; /* libuv still holds them after wkr_broker_free() */
};

/* The channel: the raw one until wkr_broker_start(), then the loop's. */
struct ipc_chan *wkr_broker__chan(struct wkr_broker *b);
/* One line through the note hook (wkr_broker_set_note), if any. */
__attribute__((format(printf, 2, 3))) void wkr_broker__note(struct wkr_broker *b, const char *fmt,
							    ...);
/* Has the re-sends (VMM state, IRQ routing) run from the loop, on a stack that holds no VMM
 * request. */
void wkr_broker__kick(struct wkr_broker *b);
/* Every outcome of a call (broker_call.h's wkr_bcall_outcome). */
int wkr_broker__outcome(void *data, struct wkr_bcall *c, struct ipc_msg *m, int err);
/* A new broker has attached: the range of every DMA_MAP the VMM was told failed and whose
 * undoing is still owed is unmapped now, in the channel's order. */
void wkr_broker__undo_late_maps(struct wkr_broker *b);
/* Sends the fence of a re-attach (a SYNC), or leaves it owed (b->fence_owed). */
void wkr_broker__send_fence(struct wkr_broker *b);
/* Tells the broker the VMM's state as last known, without waiting for its answer. */
void wkr_broker__send_vmm_state(struct wkr_broker *b);

#endif
