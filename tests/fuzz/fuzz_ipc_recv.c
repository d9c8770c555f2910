/*
 * fuzz_ipc_recv: feeds arbitrary bytes to an ipc channel as one datagram and checks that it is
 * either accepted as a well-formed message or refused, with no crash, no leak and no fd left
 * open. It exercises the size checks, the header, the protocol tables, the in-flight table (the
 * channel has one request outstanding, id 1, so answers can match) and protobuf-c decoding on
 * the bounded arena.
 *
 * Input: byte 0 picks the setup (bits 0-2: fds attached, 0-7, more than the channel's 4; bits
 * 3-4: the protocol: test, device, broker, control); the rest is the datagram.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "fuzz_msgs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct setup {
	const struct ipc_proto *proto;
	uint16_t outstanding_type; /* the type of request id 1 */
};

static const struct setup setups[4] = {
    {&test_proto_client, T_FDS},
    {&ipc_proto_device, VB__DEV__TYPE__REGION_INFO},
    {&ipc_proto_broker, VB__BRK__TYPE__DMA_UNMAP_ALL},
    {&ipc_proto_control, VB__CTL__TYPE__LIST_DEVICES},
};

static const struct ipc_limits fuzz_limits = {
    .max_datagram = 2048,
    .max_fds = 4,
    .decode_budget = 16 * 1024,
    .max_outstanding = 4,
    .send_timeout_ms = 0,
};

/* What a received message must look like whatever the input was. */
static void check_msg(struct ipc_chan *c, struct ipc_msg *m)
{
	size_t i;

	if (m->kind < IPC_KIND_REQUEST || m->kind > IPC_KIND_EVENT || !m->body ||
	    m->nfds > fuzz_limits.max_fds)
		fuzz_fail("a received message of kind %u, %s body, %zu fds (at most %u)",
			  (unsigned)m->kind, m->body ? "a" : "no", (size_t)m->nfds,
			  (unsigned)fuzz_limits.max_fds);
	for (i = 0; i < m->nfds; i++)
		if (fcntl(m->fds[i], F_GETFD) != FD_CLOEXEC)
			fuzz_fail("a received message's fd %zu (%d) is not close-on-exec", i,
				  m->fds[i]);
	/* Walk the decoded body: a bad pointer in it is an ASan report here. */
	(void)protobuf_c_message_get_packed_size(m->body);
	if (m->kind == IPC_KIND_REQUEST)
		(void)ipc_chan_reply_error(c, m, -EIO, "fuzz");
	if (m->nfds) {
		int fd = ipc_msg_take_fd(m, 0);

		if (fd < 0 || ipc_msg_take_fd(m, 0) != -EBADF)
			fuzz_fail("a message's fd 0 can be taken %s",
				  fd < 0 ? "not once" : "twice");
		close(fd);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct setup *s;
	struct ipc_chan *c;
	struct ipc_msg *m;
	int before = count_fds(), sv[2], fds[8], devnull, r;
	size_t nfds, i;

	if (size < 1)
		return 0;
	nfds = data[0] & 7;
	s = &setups[(data[0] >> 3) & 3];
	if (ipc_socketpair(sv) < 0)
		fuzz_fail("set-up: socketpair: %m");
	if (ipc_chan_new(sv[0], s->proto, &fuzz_limits, &c) < 0)
		fuzz_fail("set-up: ipc_chan_new");
	if (ipc_chan_request(c, s->outstanding_type, NULL, NULL, 0, NULL) < 0)
		fuzz_fail("set-up: the outstanding request");
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (i = 0; i < nfds; i++)
		fds[i] = devnull;
	/* Too big for the socket is fine: then nothing arrives. */
	(void)raw_sendmsg(sv[1], data + 1, size - 1, fds, nfds);
	close(devnull);
	for (i = 0; i < 4; i++) {
		r = ipc_chan_recv(c, &m);
		if (r == -EAGAIN)
			break;
		if (r == 0) {
			check_msg(c, m);
			ipc_msg_free(m);
		}
	}
	if (i == 4)
		fuzz_fail("one datagram made more than one message");
	ipc_chan_free(c);
	close(sv[1]);
	fuzz_fds_check(before);
	return 0;
}
