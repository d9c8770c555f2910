/*
 * ipc_ring: the shared-memory ring a VMM (libvfiobroker) and its worker may use for trapped
 * config and region accesses instead of the socket (negotiated in HELLO, proto/device.proto
 * RingOffer). This header is the layout of the page and the doorbell rules both sides follow;
 * client/ring.c is the VMM's side, worker/ring.c the worker's.
 *
 * The ring is one page of a memfd the VMM creates, exactly VB_RING_SIZE bytes, sealed with
 * F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL (so no side can make the other's mapping fault) and
 * mapped shared by both. It holds one slot: the VMM's handle makes one call at a time, so it
 * never has more than one access outstanding. Two cache lines, each written by one side only,
 * and the error message area:
 *
 *   vmm (offset 0, the VMM writes): the request's sequence number, op, region index, offset,
 *       size and data; `sleeping` while the VMM waits for the answer in FUTEX_WAIT on the
 *       worker line's `seq`; the CPU it last ran on.
 *   wkr (offset 64, the worker writes): the sequence number of the request answered last, its
 *       status (0 or a negative errno), data and message length; `sleeping` while the worker
 *       waits in its event loop; the CPU it last ran on.
 *   msg (offset 128, the worker writes): why a request failed, as the socket's error reply says.
 *
 * Words are in host byte order (both sides run on one host); data bytes are the device's, as in
 * config space. Sequence numbers wrap; a request is new when its number is one past the last
 * answered.
 *
 * Doorbells. To post, a side writes its payload, then its `seq` (sequentially consistent), then
 * reads the other side's `sleeping` (sequentially consistent); to sleep, a side sets its own
 * `sleeping`, then reads the other's `seq` again before it sleeps. So either the poster sees the
 * sleeper or the sleeper sees the post. The VMM wakes a sleeping worker by writing 1 to the
 * request doorbell, an eventfd it handed over with the page; the worker watches that eventfd
 * edge-triggered through an epoll set of its own and never reads or writes it (a VMM holds the
 * same file and could make a read or write block). The worker wakes a sleeping VMM with
 * FUTEX_WAKE on the wkr line's `seq`, which never blocks. Who spins before sleeping is decided
 * by where the other side last ran (`cpu`): on the same CPU spinning cannot see an answer.
 *
 * The page is hostile input for the worker: see worker/ring.c.
 */
#ifndef VB_IPC_RING_H
#define VB_IPC_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The layout described here; RingOffer.layout must name it. */
#define VB_RING_LAYOUT 1
/* The memfd's size, exactly. */
#define VB_RING_SIZE 4096u
/* The largest access the ring carries; longer ones go over the socket. */
#define VB_RING_DATA_MAX 8u
/* The message area, its NUL included. */
#define VB_RING_MSG_MAX 256u

/* The ring's ops are the device protocol's message types of the four accesses
 * (VB__DEV__TYPE__CFG_READ, _CFG_WRITE, _REGION_READ, _REGION_WRITE); nothing else travels on
 * the ring. */

struct vb_ring_vmm {
	_Atomic uint32_t seq;	   /* the request posted last */
	_Atomic uint32_t sleeping; /* the VMM waits in FUTEX_WAIT on wkr.seq: wake it */
	_Atomic int32_t cpu;	   /* where the VMM last ran */
	uint32_t op;		   /* the device protocol's message type */
	uint32_t index;		   /* region index (REGION_*) */
	uint32_t size;		   /* bytes, 1 to VB_RING_DATA_MAX */
	uint64_t offset;
	uint8_t data[VB_RING_DATA_MAX]; /* what a write writes */
};

struct vb_ring_wkr {
	_Atomic uint32_t seq;	   /* the request answered last */
	_Atomic uint32_t sleeping; /* the worker waits in its event loop: ring the doorbell */
	_Atomic int32_t cpu;	   /* where the worker last ran */
	int32_t status;		   /* 0 or a negative errno */
	uint32_t size;		   /* bytes in data (a read's answer) */
	uint32_t msg_len;	   /* bytes in msg, without a NUL */
	uint8_t data[VB_RING_DATA_MAX];
};

struct vb_ring_page {
	_Alignas(64) struct vb_ring_vmm vmm;
	_Alignas(64) struct vb_ring_wkr wkr;
	_Alignas(64) char msg[VB_RING_MSG_MAX];
};

_Static_assert(offsetof(struct vb_ring_page, vmm) == 0, "ring layout");
_Static_assert(offsetof(struct vb_ring_page, wkr) == 64, "ring layout");
_Static_assert(offsetof(struct vb_ring_page, msg) == 128, "ring layout");
_Static_assert(offsetof(struct vb_ring_vmm, offset) == 24, "ring layout");
_Static_assert(sizeof(struct vb_ring_vmm) == 40, "ring layout");
_Static_assert(sizeof(struct vb_ring_wkr) == 32, "ring layout");
_Static_assert(sizeof(struct vb_ring_page) <= VB_RING_SIZE, "ring layout");

/* How long the worker watches the page for the next request after an answer, when the VMM
 * runs on another CPU: a guest walking config space traps again within microseconds. This
 * bounds what one access costs the worker's CPU, and how long its broker channel and
 * interrupts wait behind the ring. */
#define VB_RING_WORKER_SPIN_NS 20000u
/* How long the VMM spins for an answer from a worker it found awake on another CPU: the
 * worker's own work for an access is about a microsecond. */
#define VB_RING_VMM_SPIN_NS 50000u

static inline void vb_ring_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* The memfd check the worker makes on what it is offered: an open memfd of exactly
 * VB_RING_SIZE bytes, readable and writable, sealed against shrinking, growing and further
 * sealing, with no write seal. Needs no /proc (the worker's root is empty). 0, or with a message
 * in `err`: -EBADF not open; -EACCES not a memfd (a tmpfs file opened by path has only
 * F_SEAL_SEAL), not open read-write, or sealed against writing; -EPERM a seal missing; -EINVAL
 * another size. */
int ipc_ring_memfd_check(int fd, struct vb_err *err);

#endif
