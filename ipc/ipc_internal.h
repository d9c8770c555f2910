/*
 * ipc internals shared by the files of ipc/: the wire header codec, the per-message arena that
 * bounds protobuf-c's allocations, the channel structure and the receive path. Nothing here is
 * part of the public API.
 */
#ifndef VB_IPC_INTERNAL_H
#define VB_IPC_INTERNAL_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"

/* Byte offsets of the header fields on the wire (all little endian). */
#define IPC__OFF_MAGIC	 0
#define IPC__OFF_PROTO	 4
#define IPC__OFF_VERSION 6
#define IPC__OFF_TYPE	 8
#define IPC__OFF_KIND	 10
#define IPC__OFF_NFDS	 11
#define IPC__OFF_ID	 12
#define IPC__OFF_LEN	 16
_Static_assert(IPC__OFF_LEN + 4 == IPC_HDR_SIZE, "the header is 20 bytes, no padding");
_Static_assert(IPC_FDS_MAX <= UINT8_MAX, "the header's fd count is one byte");

/* The header in host byte order. */
struct ipc__hdr {
	uint32_t magic;
	uint16_t proto;
	uint16_t version;
	uint16_t type;
	uint8_t kind;
	uint8_t nfds;
	uint32_t id;
	uint32_t len;
};

void ipc__hdr_encode(const struct ipc__hdr *h, uint8_t out[IPC_HDR_SIZE]);
void ipc__hdr_decode(const uint8_t in[IPC_HDR_SIZE], struct ipc__hdr *h);

/* A bump allocator whose blocks are charged against a byte budget. protobuf-c frees piecemeal;
 * the arena ignores that and releases everything at once when the message goes. */
struct ipc__arena_block;
struct ipc__arena {
	size_t budget;
	size_t charged;
	bool exhausted; /* an allocation was refused: the decode failed for lack of budget */
	struct ipc__arena_block *head;
	struct ipc__arena_block *inline_block; /* lives in the message's allocation: not freed */
	ProtobufCAllocator allocator;
};

void ipc__arena_init(struct ipc__arena *a, size_t budget);
/* Makes `mem` (`size` bytes, max_align_t aligned, owned by the caller) the arena's first block,
 * charged to the budget like any other, when the budget has room for it. */
void ipc__arena_give(struct ipc__arena *a, void *mem, size_t size);
void ipc__arena_release(struct ipc__arena *a);

/* Every received message lives behind one of these, in the same allocation. */
struct ipc__msgbox {
	struct ipc__msgbox *next; /* the channel's queue */
	struct ipc__arena arena;
};

/* A message with room for `nfds` fds (all -1 and nfds 0 until the receive path fills them) and
 * an empty arena of `budget` bytes. NULL when out of memory. */
struct ipc_msg *ipc__msg_new(size_t nfds, size_t budget);
struct ipc__msgbox *ipc__msg_box(struct ipc_msg *m);
struct ipc_msg *ipc__box_msg(struct ipc__msgbox *b);

/* A datagram waiting for socket space: its bytes (header and body) and duplicates of its fds. */
struct ipc__outbox {
	struct ipc__outbox *next;
	uint8_t *data; /* len bytes, in the same allocation after fds */
	size_t len;
	size_t nfds;
	int fds[];
};

enum ipc__pending_state {
	IPC__PENDING_FREE = 0,
	IPC__PENDING_ACTIVE,
	IPC__PENDING_ABANDONED, /* its call gave up; the answer is dropped when it comes */
};

struct ipc__pending {
	uint32_t id;
	uint16_t type;
	uint8_t state;
};

struct ipc_chan {
	int fd;
	const struct ipc_proto *proto;
	struct ipc_limits lim;
	pid_t peer_pid;
	uid_t peer_uid;
	gid_t peer_gid;
	uint32_t next_id;
	bool taken_over; /* answers matching no request are dropped (ipc_chan_take_over) */
	bool recv_waits; /* ipc_chan_wait_in_recv(): calls wait in a blocking recvmsg() */
	int rcvtimeo_ms; /* SO_RCVTIMEO as last set, -2 before */
	struct ipc__pending *pending; /* lim.max_outstanding slots */
	uint32_t npending; /* slots not free: none is the common case, found without a scan */
	struct ipc__msgbox *qhead, *qtail;
	size_t qlen;
	struct ipc__outbox *ohead, *otail; /* the send queue, oldest first */
	uint32_t oq_msgs, oq_bytes, oq_fds;
	uint8_t *rbuf; /* max_datagram + 1: one byte more tells an oversized datagram */
	uint8_t *sbuf; /* max_datagram - IPC_HDR_SIZE: the packed body */
	void *cbuf;    /* control data for max_fds fds */
	size_t cbuf_len;
};

const struct ipc_msgdef *ipc__def(const struct ipc_proto *p, uint16_t type);
struct ipc__pending *ipc__pending_find(struct ipc_chan *c, uint32_t id);

/* Reads one datagram from the socket (never the queue) and validates it. */
int ipc__chan_read(struct ipc_chan *c, struct ipc_msg **ret);
/* The same, but the first read waits in recvmsg() itself, up to the socket's SO_RCVTIMEO; on a
 * channel whose fd is non-blocking it does not wait. -EAGAIN when it timed out, was
 * interrupted or would have blocked: the caller then waits with poll() to its deadline. */
int ipc__chan_read_wait(struct ipc_chan *c, struct ipc_msg **ret);

/* Sends one datagram, or queues it behind those already waiting; with the queue turned off,
 * waits for buffer space up to `timeout_ms` (0: try once). */
int ipc__chan_send(struct ipc_chan *c, enum ipc_kind kind, uint16_t type, uint32_t id,
		   const ProtobufCMessage *body, const int *fds, size_t nfds, int timeout_ms);

/* Best effort, never waits: the answer to a request that could not be accepted. */
void ipc__chan_refuse(struct ipc_chan *c, uint16_t type, uint32_t id, int err, const char *why);

void ipc__close_fds(int *fds, size_t n);

#endif
