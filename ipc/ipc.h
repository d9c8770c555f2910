/*
 * ipc: AF_UNIX SOCK_SEQPACKET channels that carry one typed protobuf message, and up to a bounded
 * number of fds, per datagram. Every vfio-broker process speaks it: orchestrator <-> broker,
 * worker <-> broker, VMM <-> worker.
 *
 * Trust: the peer is untrusted. Every datagram is checked against the channel's limits and its
 * protocol table before anything is allocated for it; decoding runs on a bounded arena; every
 * fd that arrives is owned by exactly one party at all times and is closed on every error path.
 *
 * Errors are negative errno values. The library never logs. A channel is used by one thread at a
 * time (no locking inside); separate channels are independent.
 */
#ifndef VB_IPC_H
#define VB_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "base.h"

/* The kernel's SCM_MAX_FD; no channel may be configured above it. */
#define IPC_FDS_MAX 253

/* ipc_chan_call() holds at most this many unrelated messages for the next ipc_chan_recv(). */
#define IPC_QUEUE_MAX 64

/* Wire header: little endian, IPC_HDR_SIZE bytes, then the protobuf body. */
#define IPC_MAGIC    0x4b524256u /* "VBRK" */
#define IPC_HDR_SIZE 20

/* Protocol ids carried in every header; a datagram of another protocol is refused. */
enum ipc_proto_id {
	IPC_PROTO_CONTROL = 1,
	IPC_PROTO_BROKER = 2,
	IPC_PROTO_DEVICE = 3,
	IPC_PROTO_TEST = 0x7e,
};

enum ipc_kind {
	IPC_KIND_REQUEST = 1, /* expects exactly one REPLY or ERROR with the same id */
	IPC_KIND_REPLY = 2,
	IPC_KIND_ERROR = 3, /* body is vb.Error */
	IPC_KIND_EVENT = 4, /* unsolicited; never answered */
};

/* One message type of a protocol: the body descriptors and how many fds each direction may
 * carry. A NULL `reply` marks an event-only type. */
struct ipc_msgdef {
	uint16_t type;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *reply;
	uint8_t max_request_fds;
	uint8_t max_reply_fds;
};

struct ipc_proto {
	const char *name;
	uint16_t id;
	uint16_t version;
	const struct ipc_msgdef *defs;
	size_t ndefs;
};

/* The protocols of proto/, with their message tables (ipc/protocols.c). */
extern const struct ipc_proto ipc_proto_control;
extern const struct ipc_proto ipc_proto_broker;
extern const struct ipc_proto ipc_proto_device;

struct ipc_limits {
	uint32_t max_datagram;	  /* bytes, header included */
	uint32_t max_fds;	  /* per datagram, <= IPC_FDS_MAX */
	uint32_t decode_budget;	  /* bytes the protobuf decoder may allocate for one message */
	uint32_t max_outstanding; /* requests this side may have in flight */
	uint32_t send_timeout_ms; /* how long a send may wait for socket buffer space, when
				   * nothing may be queued (queue_msgs 0) */
	/* What may wait in this side's send queue when the peer's socket is full: datagrams,
	 * their bytes (headers included), and the fds they carry (each held as a duplicate).
	 * queue_msgs 0 turns the queue off: sends then wait up to send_timeout_ms instead. */
	uint32_t queue_msgs;
	uint32_t queue_bytes;
	uint32_t queue_fds;
};

/* 64 KiB datagrams, 16 fds, 1 MiB decode budget, 64 requests in flight; a send queue of 256
 * datagrams, 1 MiB and 8 fds (so no send ever waits), 1 s send timeout when it is turned off. */
extern const struct ipc_limits ipc_limits_default;

/* A received message. Fds in `fds` belong to the message until taken with ipc_msg_take_fd();
 * ipc_msg_free() closes every fd still in it and frees the body. */
struct ipc_msg {
	enum ipc_kind kind;
	uint16_t type;
	uint32_t id;
	/* Decoded with the type's descriptor; vb.Error for IPC_KIND_ERROR. */
	ProtobufCMessage *body;
	size_t nfds;
	int fds[]; /* nfds entries; -1 once taken */
};

/* What the peer answered when a request failed with an error reply. */
struct ipc_error {
	int code; /* negative errno */
	char message[256];
};

struct ipc_chan;

/* Sockets. Every fd returned is SOCK_CLOEXEC. */
int ipc_socketpair(int ret_fds[2]);
/* Binds a non-blocking listening socket at `path` and sets its mode (<= 0777, else -EINVAL)
 * before listen(), so nobody can connect under the umask's mode. A socket left at `path` by a
 * dead listener is replaced; a live one is -EADDRINUSE, anything that is not a socket -EEXIST;
 * a path too long for sun_path is -ENAMETOOLONG. The file appears at `path` only once the socket
 * listens (bound under a temporary name beside it, then renamed), so a client that waits for it
 * is never refused. */
int ipc_listen(const char *path, mode_t mode, int backlog, int *ret_fd);
/* The same for a SOCK_STREAM socket (the vfio-user protocol's transport). */
int ipc_listen_stream(const char *path, mode_t mode, int backlog, int *ret_fd);
/* -EAGAIN when no connection is pending (the listening socket is non-blocking). */
int ipc_accept(int listen_fd, int *ret_fd);
int ipc_connect(const char *path, int *ret_fd);
/* Any of the pointers may be NULL. */
int ipc_peer_cred(int fd, pid_t *ret_pid, uid_t *ret_uid, gid_t *ret_gid);
/* Whether `gid` is among the peer's supplementary groups, as the kernel recorded them when it
 * connected (SO_PEERGROUPS): 1 or 0, or a negative errno. */
int ipc_peer_in_group(int fd, gid_t gid);

/* Wraps a connected SOCK_SEQPACKET fd and makes it non-blocking. Takes ownership of `fd` on
 * success only. `limits` may be NULL for ipc_limits_default. Errors: -EINVAL for limits out of
 * range (max_datagram from IPC_HDR_SIZE to 16 MiB, max_fds <= IPC_FDS_MAX, decode_budget >= 1,
 * max_outstanding from 1 to 4096, send_timeout_ms <= INT_MAX, queue_msgs <= 65536, queue_bytes
 * <= 256 MiB, queue_fds <= 4096) or a protocol table with a
 * duplicate type or a NULL request descriptor; -ENOTSOCK, -EAFNOSUPPORT (not AF_UNIX),
 * -EPROTOTYPE (not SOCK_SEQPACKET), -ENOTCONN. */
int ipc_chan_new(int fd, const struct ipc_proto *proto, const struct ipc_limits *limits,
		 struct ipc_chan **ret);
/*
 * For a channel whose socket another process used before this one (a broker that restarted and
 * adopts its workers' channels): answers still in the socket that match no request of this
 * channel were meant for the predecessor and are dropped on arrival (after the usual checks)
 * instead of failing with -EPROTO, and this side's request ids start at `first_id` (pass a
 * random value, never 0) so that such an answer is not mistaken for one of ours.
 */
void ipc_chan_take_over(struct ipc_chan *c, uint32_t first_id);
/*
 * Forgets outstanding request `id` (its slot is free again): for a request its owner knows will
 * never be answered (its peer read it and went away). An answer that came all the same would
 * answer no request (-EPROTO, or dropped after ipc_chan_take_over). -ENOENT: no such request.
 */
int ipc_chan_forget(struct ipc_chan *c, uint32_t id);
/* Closes the fd, drops outstanding requests and queued messages (closing their fds). */
void ipc_chan_free(struct ipc_chan *c);
VB_DEFINE_CLEANUP(struct ipc_chan, ipc_chan_free);
int ipc_chan_fd(const struct ipc_chan *c);
const struct ipc_proto *ipc_chan_proto(const struct ipc_chan *c);
/* The peer's credentials, read once with SO_PEERCRED when the channel was made. */
int ipc_chan_peer(const struct ipc_chan *c, pid_t *pid, uid_t *uid, gid_t *gid);

/*
 * Sending never takes ownership of `fds`: the caller closes them when it likes. A NULL body is
 * the all-defaults body of the type (e.g. vb.Empty). Errors, before anything is sent:
 *   -EINVAL       type not in the protocol table, a request type sent as an event or the
 *                 reverse, or a body whose descriptor is not the type's;
 *   -ETOOMANYREFS more fds than the type or the channel allows;
 *   -EMSGSIZE     the datagram would exceed max_datagram;
 *   -EBADF        a negative fd;
 *   -ENOBUFS      (requests) max_outstanding requests already in flight;
 * and when sending: -EPIPE or -ECONNRESET when the peer is gone (never SIGPIPE). A datagram the
 * socket cannot take now, or that would overtake one already queued, is queued (0 is returned)
 * and sent, in order, by ipc_chan_flush(); when it would take the queue past its budget it is
 * not sent and the error is -EOVERFLOW: the peer is not reading, and its owner should drop it
 * (what it was sent so far is no longer complete). With the queue turned off a send waits for
 * socket space instead, -ETIMEDOUT after send_timeout_ms (0: no wait).
 */
int ipc_chan_request(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body,
		     const int *fds, size_t nfds, uint32_t *ret_id);
int ipc_chan_reply(struct ipc_chan *c, const struct ipc_msg *req, const ProtobufCMessage *body,
		   const int *fds, size_t nfds);
/*
 * A reply whose body the caller packed itself: `len` bytes of a `desc` message at `body`, sent as
 * they are (the caller answers for them being one). For a body built entry by entry until one
 * datagram is full (ListDevices' pages), which ipc_chan_reply() would size and pack a second
 * time. Errors as ipc_chan_reply()'s; -EINVAL also when `desc` is not the request's reply type.
 */
int ipc_chan_reply_packed(struct ipc_chan *c, const struct ipc_msg *req,
			  const ProtobufCMessageDescriptor *desc, const void *body, size_t len);
/* `err` is a negative errno; the message is formatted like printf. */
int ipc_chan_reply_error(struct ipc_chan *c, const struct ipc_msg *req, int err, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));
int ipc_chan_event(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		   size_t nfds);

/*
 * Receives one message without blocking. Returns 0 and sets *ret, or:
 *   -EAGAIN       nothing to read;
 *   -EPIPE        the peer hung up (also -ECONNRESET);
 *   -EMSGSIZE     datagram larger than max_datagram, shorter than a header, or whose length
 *                 is not the header's body length (either way);
 *   -ETOOMANYREFS more fds than the type or the channel allows (an error reply allows none), or
 *                 control data truncated;
 *   -EBADMSG      bad magic, protocol, version, kind, a header fd count that is not the number
 *                 of fds that arrived, control data other than SCM_RIGHTS, an error reply
 *                 whose code is not an errno (1..4095), or a body protobuf-c cannot decode;
 *   -EPROTO       unknown type, a reply that answers no outstanding request or has the wrong
 *                 type, an event-only type sent as a request or a request type sent as event;
 *   -ENOMEM       decoding would allocate past decode_budget.
 * On every error each fd that arrived has been closed. When a malformed datagram had a readable
 * header of our magic and protocol and of kind REQUEST, the channel has already answered it with
 * an error reply carrying the same errno and a reason (best effort: it never waits for socket
 * space), so a server can keep serving or drop the peer as its policy says. An answer to a call
 * that timed out is dropped silently when it arrives.
 */
int ipc_chan_recv(struct ipc_chan *c, struct ipc_msg **ret);

/*
 * Sends a request and waits up to `timeout_ms` (-1: forever) for its answer. Returns 0 with the
 * reply in *ret; the peer's negative errno when it answered with an error (details in *err when
 * non-NULL; *err is cleared first); -ETIMEDOUT; any error of sending or of ipc_chan_recv().
 * Events, requests and answers to other requests that arrive meanwhile are queued, in order, for
 * the next ipc_chan_recv(); with IPC_QUEUE_MAX of them queued the call fails with -ENOBUFS
 * (nothing is lost). After a failure the request's answer, if it ever comes, is dropped.
 */
int ipc_chan_call(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		  size_t nfds, int timeout_ms, struct ipc_msg **ret, struct ipc_error *err);

/* Sends what the send queue holds, as far as the socket takes it now; never waits. 0 (check
 * ipc_chan_out_pending() for the rest), or -EPIPE/-ECONNRESET when the peer is gone. An event
 * loop polls the fd for writability while ipc_chan_out_pending() is true and calls this. */
int ipc_chan_flush(struct ipc_chan *c);
/* True while datagrams wait in the send queue. */
bool ipc_chan_out_pending(const struct ipc_chan *c);

/* True when ipc_chan_recv() would return a queued message without reading the socket. */
bool ipc_chan_has_queued(const struct ipc_chan *c);

/*
 * For a channel whose owner only ever polls its fd (never reads or writes it, and never hands
 * it to a loop that does, such as libuv's): clears the fd's O_NONBLOCK, so that
 * ipc_chan_call() waits for its answer in one blocking recvmsg() bounded by SO_RCVTIMEO rather
 * than in poll() and then recvmsg(), one system call less per call. Every other operation of
 * the channel stays non-blocking: it passes MSG_DONTWAIT. A call whose request had to be
 * queued, or with a timeout of 0, waits in poll() as before, and so does a call on an fd that
 * was made non-blocking again. The file status flag is shared with every duplicate of the fd.
 * Errors: fcntl()'s, as negative errno.
 */
int ipc_chan_wait_in_recv(struct ipc_chan *c);

/* Takes ownership of fd `i` of a message; returns -EBADF when it is absent or already taken. */
int ipc_msg_take_fd(struct ipc_msg *m, size_t i);
/* Only for messages from ipc_chan_recv() or ipc_chan_call(); NULL is ignored. */
void ipc_msg_free(struct ipc_msg *m);
VB_DEFINE_CLEANUP(struct ipc_msg, ipc_msg_free);

#endif
