/*
 * broker_link: the worker's side of the broker channel (proto/broker.proto, fd 3): receives the
 * HANDOFF, answers HEARTBEAT and REMOVAL, and is the backend (backend.h) through which DMA,
 * interrupt routing, reset and VMM presence reach the broker.
 */
#ifndef VB_WKR_BROKER_LINK_H
#define VB_WKR_BROKER_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backend.h"
#include "ipc.h"
#include "server.h"
#include "vfu.h"
#include "wkr.h"

/* What the broker handed over. The fds are owned by whoever holds the struct. */
struct wkr_handoff {
	struct wkr_devinfo info;
	int device_fd;
	int listen_fd; /* native protocol (SOCK_SEQPACKET), or -1 when not served */
	int vfu_fd;    /* vfio-user (SOCK_STREAM), or -1 when not served */
	bool native, vfio_user;
	char vm[64];
	uid_t owner_uid;
	bool allow_mmap;
	uint32_t iommu_pgsize;
	uint32_t max_dma_mappings;
	uint64_t max_pinned_bytes;
	uint32_t generation;
	uint64_t rlimit_nofile; /* 0: keep the limit the worker was started with */
};

struct wkr_broker;

/* How long a call to the broker may stay unanswered (the loop never waits for it: the VMM
 * request that made it does): long enough for a broker restart under TCG. Then the call fails
 * with -ETIMEDOUT and "the broker did not answer in 30 s (it may be restarting); retry"; the
 * request stays in the channel for the next broker, and its late answer is undone (a DMA
 * mapping unmapped, an IRQ index's routing sent again, a VMM's mmap grant closed). */
#define WKR_BROKER_CALL_TIMEOUT_MS 30000

extern const struct wkr_backend_ops wkr_broker_ops;

/* Takes over `chan` (the broker channel). */
int wkr_broker_new(struct ipc_chan *chan, struct wkr_broker **ret);
/* Another call timeout than WKR_BROKER_CALL_TIMEOUT_MS (tests; vfio-worker --call-timeout). */
void wkr_broker_set_call_timeout(struct wkr_broker *b, int timeout_ms);
/* Where the link says what it did on its own (a late answer undone, a re-attach to a new
 * broker): one line each, with the `data` given to wkr_broker_start(). */
void wkr_broker_set_note(struct wkr_broker *b, void (*note)(void *data, const char *line));
void wkr_broker_free(struct wkr_broker *b);

/*
 * Waits up to `timeout_ms` for the HANDOFF request, checks it (region and IRQ tables within
 * vfio-pci's limits, exactly two fds) and fills *ret. The request is kept for
 * wkr_broker_handoff_answer(). On failure the broker has been answered with the error, `err`
 * says what was wrong, and *ret holds no fd (its fds are -1, or as the caller set them).
 */
int wkr_broker_handoff(struct wkr_broker *b, int timeout_ms, struct wkr_handoff *ret,
		       struct vb_err *err);
/* Acknowledges the HANDOFF (`err` NULL) or refuses it with err->code and err->msg. */
int wkr_broker_handoff_answer(struct wkr_broker *b, const struct vb_err *err);

/* Serves the broker's requests on `loop` from now on. `gone` runs once if the channel fails or
 * hangs up (the worker then ends). */
/* `srv` and `vfu` are the servers of the protocols served (either may be NULL). */
int wkr_broker_start(struct wkr_broker *b, uv_loop_t *loop, struct wkr_server *srv,
		     struct wkr_vfu *vfu, struct wkr_dev *dev, void (*gone)(void *data, int err),
		     void *data);

#endif
