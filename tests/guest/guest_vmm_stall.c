/*
 * guest_vmm_stall SOCKET: a VMM that misbehaves the way issue 14 found, against a brokered
 * worker and its real device, and checks the worker keeps serving (findings 1 and 5):
 *   1. connects, says HELLO, and sends 200 reads of the whole 4 KiB config space without reading
 *      a single reply (more than its socket holds, less than the worker's send-queue budget);
 *   2. a second VMM connects meanwhile and must get its EBUSY answer;
 *   3. the first VMM reads: all 200 replies arrive, in order, 4096 bytes each;
 *   4. it sends reads without reading until the worker disconnects it (at most 4000);
 *   5. 200 times: connect, HELLO, read the vendor ID, close; each must get in at once.
 * Prints one line per step; exits 0 when every check held, 1 with the reason otherwise. Waits
 * for answers without a deadline of its own: the guest test's timeout bounds the run.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.pb-c.h"
#include "ipc.h"

#define STALLED 200

static int fail(const char *what, int r, const char *want)
{
	printf("FAIL: %s: %s%s\n", what, strerror(-r), want);
	return 1;
}

static int connect_vmm(const char *path, bool greedy, struct ipc_chan **ret)
{
	struct ipc_limits l = ipc_limits_default;
	int fd, r;

	/* The greedy one keeps thousands of requests in flight and sends them straight away
	 * (waiting for socket room) instead of holding them in its own queue. */
	if (greedy) {
		l.max_outstanding = 4096;
		l.queue_msgs = 0;
		l.send_timeout_ms = 600000;
	}
	r = ipc_connect(path, &fd);
	if (r == 0) {
		r = ipc_chan_new(fd, &ipc_proto_device, &l, ret);
		if (r < 0)
			close(fd);
	}
	return r;
}

static int hello(struct ipc_chan *c)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	struct ipc_msg *m = NULL;
	int r;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	h.client = "guest_vmm_stall";
	r = ipc_chan_call(c, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, -1, &m, NULL);
	ipc_msg_free(m);
	return r;
}

static int read_config(struct ipc_chan *c, uint32_t size)
{
	Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;

	req.offset = 0;
	req.size = size;
	return ipc_chan_request(c, VB__DEV__TYPE__CFG_READ, &req.base, NULL, 0, NULL);
}

static int recv_wait(struct ipc_chan *c, struct ipc_msg **m)
{
	struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};
	int r;

	while ((r = ipc_chan_recv(c, m)) == -EAGAIN)
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -errno;
	return r;
}

static int vendor_id(struct ipc_chan *c, uint32_t *ret)
{
	Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;
	struct ipc_msg *m = NULL;
	const Vb__Dev__Data *d;
	int r;

	req.size = 2;
	r = ipc_chan_call(c, VB__DEV__TYPE__CFG_READ, &req.base, NULL, 0, -1, &m, NULL);
	if (r < 0)
		return r;
	d = (const Vb__Dev__Data *)m->body;
	*ret = d->data.len == 2 ? (uint32_t)d->data.data[0] | (uint32_t)d->data.data[1] << 8 : 0;
	ipc_msg_free(m);
	return 0;
}

static int stall_and_recover(const char *path, uint32_t *vendor)
{
	struct ipc_chan *a, *b;
	struct ipc_msg *m;
	uint32_t last = 0;
	int i, r;

	r = connect_vmm(path, true, &a);
	if (r < 0 || (r = hello(a)) < 0 || (r = vendor_id(a, vendor)) < 0)
		return fail("first VMM", r, "");
	for (i = 0; i < STALLED; i++)
		if ((r = read_config(a, 4096)) < 0)
			return fail("unread config reads", r, "");
	printf("  sent %d reads of 4096 bytes, reading none\n", STALLED);
	r = connect_vmm(path, false, &b);
	if (r == 0)
		r = hello(b);
	ipc_chan_free(b);
	if (r != -EBUSY)
		return fail("second VMM's HELLO", r, " (want EBUSY)");
	printf("  a second VMM got its EBUSY while the first read nothing\n");
	for (i = 0; i < STALLED; i++) {
		r = recv_wait(a, &m);
		if (r < 0)
			return fail("reading the replies", r, "");
		if (m->kind != IPC_KIND_REPLY || m->id <= last ||
		    ((const Vb__Dev__Data *)m->body)->data.len != 4096) {
			printf("FAIL: reply %d: kind %d id %u after %u\n", i, m->kind, m->id, last);
			return 1;
		}
		last = m->id;
		ipc_msg_free(m);
	}
	printf("  all %d replies arrived, in order\n", STALLED);
	for (i = 0; i < 4000; i++) {
		r = read_config(a, 4096);
		if (r == -EPIPE || r == -ECONNRESET)
			break;
		if (r < 0)
			return fail("flooding", r, "");
	}
	ipc_chan_free(a);
	if (i == 4000) {
		printf("FAIL: 4000 unread 4 KiB replies and the worker still waits for the VMM\n");
		return 1;
	}
	printf("  disconnected by the worker after %d more unread reads\n", i);
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t vendor = 0, v;
	struct ipc_chan *c;
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: guest_vmm_stall SOCKET\n");
		return 2;
	}
	if (stall_and_recover(argv[1], &vendor))
		return 1;
	for (int i = 0; i < 200; i++) {
		r = connect_vmm(argv[1], false, &c);
		if (r == 0 && (r = hello(c)) == 0 && (r = vendor_id(c, &v)) == 0 && v != vendor)
			r = -EIO;
		if (r < 0) {
			printf("FAIL: reconnect %d: %s\n", i, strerror(-r));
			return 1;
		}
		ipc_chan_free(c);
	}
	printf("  200 quick reconnects got in\nOK vendor %04x\n", vendor);
	return 0;
}
