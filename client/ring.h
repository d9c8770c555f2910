/*
 * ring: the VMM's side of the shared-memory ring for trapped accesses (layout and doorbells:
 * ipc/ipc_ring.h). The device handle makes one, offers it in its HELLO and, once the worker has
 * taken it, sends its config and region accesses of up to 8 bytes through it instead of the
 * socket. Everything else, and every access after the ring failed, stays on the socket.
 */
#ifndef VFB_RING_H
#define VFB_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vb_ring_page;

struct vfb__ring {
	struct vb_ring_page *page;
	int doorbell; /* the worker's wake-up when it sleeps: an eventfd it watches */
	uint32_t seq; /* the request posted last */
};

/* Makes the page (a memfd of VB_RING_SIZE bytes, sealed) and the doorbell; *ret_memfd is the
 * memfd to offer (the caller closes it once sent: the mapping stays). */
int vfb__ring_make(struct vfb__ring *r, int *ret_memfd);
/* Unmaps and closes; safe on a ring never made or already undone. */
void vfb__ring_fini(struct vfb__ring *r);

/*
 * One access through the ring: `op` is the device protocol's CFG_READ, CFG_WRITE, REGION_READ or
 * REGION_WRITE, `len` 1 to VB_RING_DATA_MAX. Waits for the answer at most `timeout_ms` (-1:
 * forever), spinning first only when the worker is awake on another CPU, then asleep in
 * FUTEX_WAIT, looking at the socket `sock` between slices of sleep so that a worker that died
 * is noticed as a hang-up (-EPIPE), not a timeout. The worker's errno is returned and its reason
 * left in `msg` (of `msglen` bytes). When the ring itself failed (no answer in time, -ETIMEDOUT;
 * the worker hung up, -EPIPE; an answer that is not one, -EPROTO; the doorbell could not be
 * rung) *broken is set: the ring is unusable and the caller goes back to the socket. A worker's
 * own -ETIMEDOUT (the broker did not answer) leaves it unset.
 */
int vfb__ring_call(struct vfb__ring *r, uint32_t op, uint32_t index, uint64_t offset, void *buf,
		   size_t len, int timeout_ms, int sock, char *msg, size_t msglen, bool *broken);

#endif
