/*
 * server_cfg: what the process gives a VMM server of either protocol, native (server.h) or
 * vfio-user (vfu.h). One struct for both so that the process fills it once for its device and
 * hands it to each server it runs; a field one protocol has no use for says so.
 */
#ifndef VB_WKR_SERVER_CFG_H
#define VB_WKR_SERVER_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "backend.h"
#include "wkr.h"

struct wkr_server_cfg {
	uv_loop_t *loop;
	/* Listening: SOCK_SEQPACKET for native, SOCK_STREAM for vfio-user. Taken over on success
	 * (made non-blocking). */
	int listen_fd;
	struct wkr_dev *dev; /* borrowed */
	struct wkr_backend backend;
	/* Offer mmap areas in region info, with the VMM's grant (from the backend's vmm_admit;
	 * never the worker's own device fd) when it has one. */
	bool allow_mmap;
	uid_t owner_uid;
	uint32_t iommu_pgsize;
	/* The VM's quota, announced: in HELLO (native), as max_dma_maps when below the spec's
	 * default (vfio-user). 0: not known. */
	uint32_t max_dma_mappings;
	uint64_t max_pinned_bytes; /* announced in HELLO (native) */
	uint32_t generation;	   /* native: > 0, the first VMM hears EVENT_WORKER_RESTARTED */
	/* Native: announced in HELLO, the backend's longest wait for the broker (its call
	 * timeout; 0: no broker). */
	uint32_t broker_wait_ms;
	/* Native: decline every VMM's shared-memory ring (the socket carries every access). */
	bool no_ring;
	/* The device's worker eventfds are serviced by another server of the process (vfio-user
	 * beside a native server): this one leaves them alone. */
	bool irqs_elsewhere;
	/* Another protocol's VMM holds the device: a new connection is refused with EBUSY. NULL:
	 * never. */
	bool (*busy)(void *data);
	void *busy_data;
	/* Native: told why the server ended a session itself (the VMM stopped reading and its
	 * replies outgrew the send queue), for the process to log; may be NULL. */
	void (*dropped)(pid_t pid, uid_t uid, const char *why);
	/* vfio-user: one line about what a VMM did wrong (a library does not log; the process
	 * does). NULL: dropped. */
	void (*note)(void *data, const char *line);
	void *note_data;
};

#endif
