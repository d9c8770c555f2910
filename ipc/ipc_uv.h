/*
 * ipc_uv: drives an ipc channel from a libuv loop with a uv_poll_t. libuv's own pipes pass only
 * handles, so the datagrams and fds go through ipc's sendmsg/recvmsg.
 */
#ifndef VB_IPC_UV_H
#define VB_IPC_UV_H

#include <uv.h>

#include "ipc.h"

struct ipc_uv;

/* Called once per received message (the callback owns `msg`), or with msg NULL and a negative
 * errno when the channel failed or the peer hung up; after such a call no more calls come and
 * the owner should ipc_uv_close(). Every receive error is final here, malformed datagrams
 * included (a refused request has already had its error reply). The callback may call
 * ipc_uv_close() itself; no call follows then. Messages that an ipc_chan_call() on the same
 * channel queued are delivered before the loop next blocks. */
typedef void (*ipc_uv_cb)(struct ipc_uv *u, struct ipc_msg *msg, int err, void *data);

/* Takes ownership of `chan` on success; on failure the caller still owns it. What the channel
 * queues for sending (ipc_chan_* returned 0 with the peer's socket full) is flushed from the loop
 * as the socket drains; a flush that finds the peer gone is reported like a hangup. */
int ipc_uv_start(uv_loop_t *loop, struct ipc_chan *chan, ipc_uv_cb cb, void *data,
		 struct ipc_uv **ret);
struct ipc_chan *ipc_uv_chan(struct ipc_uv *u);
/* Paused, no message is read or delivered (what the peer sends stays in its socket, for whoever
 * gets the fd next: a re-executed broker) and a hang-up goes unnoticed; the send queue is still
 * flushed. Resumed, reading goes on. */
void ipc_uv_pause(struct ipc_uv *u, bool paused);
/* Stops polling, frees the channel when libuv has closed the handle, then calls `closed`
 * (may be NULL). */
void ipc_uv_close(struct ipc_uv *u, void (*closed)(void *data));

#endif
