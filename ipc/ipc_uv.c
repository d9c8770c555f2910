/*
 * ipc_uv: runs an ipc channel from a libuv loop. A uv_poll_t watches the socket; each readable
 * event reads until the socket is empty. A uv_prepare_t (unreferenced, so it never keeps the loop
 * alive) delivers messages that an ipc_chan_call() queued outside this channel's callback, before
 * the loop blocks again: nothing else would wake the loop for them. The same handle watches the
 * send queue: while datagrams wait in it, the poll handle also waits for writability and
 * flushes, so whoever sends on the channel, from any callback, never waits for the peer.
 *
 * Trusts the owner's callback to return; tolerates it closing the ipc_uv (the memory stays until
 * libuv has closed both handles).
 */
#include <errno.h>
#include <stdlib.h>

#include "ipc_uv.h"

struct ipc_uv {
	uv_poll_t poll;
	uv_prepare_t prepare;
	struct ipc_chan *chan;
	ipc_uv_cb cb;
	void *data;
	void (*closed)(void *data);
	int open_handles;
	bool stopped; /* failed or closing: no more callbacks */
	bool paused;  /* ipc_uv_pause: nothing read */
	int events;   /* what the poll handle waits for (0: stopped) */
	bool closing;
};

static void fail(struct ipc_uv *u, int err)
{
	u->stopped = true;
	uv_poll_stop(&u->poll);
	uv_prepare_stop(&u->prepare);
	u->cb(u, NULL, err, u->data);
}

/* The callback may close `u`: each round checks `stopped` before touching the channel. */
static void drain(struct ipc_uv *u)
{
	struct ipc_msg *m;
	int r;

	while (!u->stopped && !u->paused) {
		r = ipc_chan_recv(u->chan, &m);
		if (r == -EAGAIN)
			return;
		if (r < 0) {
			fail(u, r);
			return;
		}
		u->cb(u, m, 0, u->data);
	}
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Polls for writability exactly while the send queue holds something, for the rest unless
 * paused (a level-triggered readable socket nobody reads would wake the loop forever). */
static void watch(struct ipc_uv *u)
{
	int want = (u->paused ? 0 : UV_READABLE | UV_DISCONNECT) |
		   (ipc_chan_out_pending(u->chan) ? UV_WRITABLE : 0);
	int r = 0;

	if (u->stopped || want == u->events)
		return;
	if (want)
		r = uv_poll_start(&u->poll, want, on_poll);
	else
		uv_poll_stop(&u->poll);
	if (r < 0) {
		fail(u, r);
		return;
	}
	u->events = want;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct ipc_uv *u = h->data;
	int r;

	if (u->stopped)
		return;
	if (status == UV_EBADF) {
		/* libuv reports POLLERR so: the socket holds an error, which the next receive
		 * returns (a peer that closed with our datagrams unread: ECONNRESET), after what
		 * the peer sent before. */
		drain(u);
		if (!u->stopped)
			fail(u, status);
		return;
	}
	if (status < 0) {
		fail(u, status); /* libuv's errors are negative errno values on Linux */
		return;
	}
	if (events & UV_WRITABLE) {
		r = ipc_chan_flush(u->chan);
		if (r < 0) {
			fail(u, r);
			return;
		}
	}
	if (events & ~UV_WRITABLE)
		drain(u);
	watch(u);
}

static void on_prepare(uv_prepare_t *h)
{
	struct ipc_uv *u = h->data;

	if (!u->stopped && !u->paused && ipc_chan_has_queued(u->chan))
		drain(u);
	watch(u);
}

int ipc_uv_start(uv_loop_t *loop, struct ipc_chan *chan, ipc_uv_cb cb, void *data,
		 struct ipc_uv **ret)
{
	_cleanup_free_ struct ipc_uv *init = NULL;
	struct ipc_uv *u;
	int r;

	if (!loop || !chan || !cb || !ret)
		return -EINVAL;
	init = calloc(1, sizeof(*init));
	if (!init)
		return -ENOMEM;
	r = uv_poll_init(loop, &init->poll, ipc_chan_fd(chan));
	if (r < 0)
		return r; /* a failed init leaves nothing registered with the loop */
	/* The loop knows the handles now: only ipc_uv_close() may free them, once they are closed.
	 */
	u = TAKE_PTR(init);
	uv_prepare_init(loop, &u->prepare);
	uv_unref((uv_handle_t *)&u->prepare);
	u->poll.data = u;
	u->prepare.data = u;
	u->chan = chan;
	u->cb = cb;
	u->data = data;
	u->open_handles = 2;
	u->events = UV_READABLE | UV_DISCONNECT;
	r = uv_poll_start(&u->poll, u->events, on_poll);
	if (r == 0)
		r = uv_prepare_start(&u->prepare, on_prepare);
	if (r < 0) {
		/* The channel stays the caller's; only our handles go, asynchronously. */
		u->chan = NULL;
		ipc_uv_close(u, NULL);
		return r;
	}
	*ret = u;
	return 0;
}

struct ipc_chan *ipc_uv_chan(struct ipc_uv *u)
{
	return u->chan;
}

void ipc_uv_pause(struct ipc_uv *u, bool paused)
{
	u->paused = paused;
	watch(u);
}

static void on_closed(uv_handle_t *h)
{
	struct ipc_uv *u = h->data;

	if (--u->open_handles > 0)
		return;
	/* The poll handle is gone from the loop: the fd may be closed now. */
	ipc_chan_free(u->chan);
	if (u->closed)
		u->closed(u->data);
	free(u);
}

void ipc_uv_close(struct ipc_uv *u, void (*closed)(void *data))
{
	if (!u || u->closing)
		return;
	u->closing = true;
	u->stopped = true;
	u->closed = closed;
	uv_close((uv_handle_t *)&u->poll, on_closed);
	uv_close((uv_handle_t *)&u->prepare, on_closed);
}
