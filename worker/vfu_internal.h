/*
 * Internal state of the vfio-user server, shared by vfu_server.c (the session's connection;
 * the rest is vmm_serve.c's), vfu_cmd.c (the command table) and vfu_version.c (VERSION
 * negotiation).
 */
#ifndef VB_WKR_VFU_INTERNAL_H
#define VB_WKR_VFU_INTERNAL_H

#include "base.h"
#include "dma_held.h"
#include "err.h"
#include "vfu.h"
#include "vfu_conn.h"
#include "vmm_serve.h"

/* What a VMM may send in one message: a REGION_WRITE of max_data_xfer_size bytes. */
#define VFU_MSG_MAX (VFU_HDR_SIZE + VFU_RW_SIZE + WKR_VFU_MAX_DATA_XFER)
/* Replies waiting for a VMM that does not read: a few of the largest, then it is dropped. */
#define VFU_OUT_BYTES (4u * VFU_MSG_MAX)
#define VFU_OUT_FDS   64
/* VMM mistakes written to the log per session; the rest are counted. */
#define VFU_NOTES_MAX 16

/* What VERSION settled. */
struct vfu_caps {
	uint32_t client_max_fds; /* fds the client takes with one reply */
	uint64_t pgsize;	 /* DMA granularity */
	uint32_t max_dma_maps;
};

/* A reply being built: payload and at most one fd (the region's mmap fd). */
struct vfu_reply {
	uint8_t *buf;
	size_t len;
	int fd;
	uint8_t small[128];
};

struct wkr_vfu;
typedef int (*vfu_step_fn)(struct wkr_vfu *s, struct vfu_msg *m, struct vfu_reply *rp);

struct vfu_session {
	struct wkr_serve_session base;
	struct vfu_conn *conn;
	struct wkr_vfu *s;
	bool versioned;
	struct vfu_caps caps;
	struct wkr_held maps; /* what the session mapped (dma_held.h) */
	unsigned notes;
	/* The command being answered (its reply may wait for the backend: base.defer), the step
	 * that goes on with it, the one after a reset, and how far a REGION_WRITE got before the
	 * FLR it initiated. */
	struct vfu_msg *waiting;
	struct vfu_reply rp;
	vfu_step_fn then, after_reset;
	uint32_t written;
};

struct wkr_vfu {
	struct wkr_server_cfg cfg;
	struct wkr_serve *sv; /* listening, admission, the session's life, removal */
	struct vb_err err;    /* why the command being answered failed */
};

/* The running session, or NULL. */
static inline struct vfu_session *wkr__vfu_session(const struct wkr_vfu *s)
{
	return s->sv->vmm ? container_of(s->sv->vmm, struct vfu_session, base) : NULL;
}

/* vfu_cmd.c: answers one message (a reply, an error reply, or nothing for NO_REPLY), now or,
 * when it waits for the backend, once the backend has answered: then it returns
 * WKR_VFU_WAITING and keeps `m` (the session reads nothing more meanwhile). Returns 0, or a
 * negative errno when the session must end (the peer stopped reading). */
#define WKR_VFU_WAITING 1
int wkr__vfu_dispatch(struct wkr_vfu *s, struct vfu_msg *m);
/* Frees what a session keeps for the command being answered. */
void wkr__vfu_session_release(struct vfu_session *v);
/* Drops every DMA mapping of the session through the backend. */
void wkr__vfu_unmap_all(struct wkr_vfu *s);

/* vfu_version.c: parses the client's VERSION payload (`len` bytes after the header), settles
 * `caps` and writes the reply payload (at most `cap` bytes: QEMU's buffer for it is the size
 * of its request) to `out`. Errors: -EINVAL (garbage, a JSON that is not an object, a
 * capability of the wrong type or out of range, no NUL), -ENOTSUP (another major version, no
 * page size both support), explained in `err`. */
int wkr__vfu_version(const struct wkr_vfu *s, const uint8_t *data, size_t len,
		     struct vfu_caps *caps, uint8_t *out, size_t cap, size_t *ret_len,
		     struct vb_err *err);
/* Called once before the seccomp filter: json-c seeds its hash on first use. */
void wkr__vfu_version_warmup(void);

#endif
