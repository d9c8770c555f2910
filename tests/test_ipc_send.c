/*
 * Tests of ipc/, the sending side and the edges of a channel: the outstanding-request limit, a
 * full socket (bounded wait, then the send queue in order, then EOVERFLOW), the queue's fds
 * closed on free and on a peer gone, fd ownership, peer credentials, listening sockets, bad
 * sockets and limits refused, and the protocol tables against the .proto files. Round trips and
 * calls are test_ipc.c's. Every error test also checks that no fd leaked (/proc/self/fd).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "control.pb-c.h"
#include "ipc_test.h"
#include "test_wait.h"

/* ---- sending limits --------------------------------------------------------------------- */

static void test_ipc_request_outstanding_limit_enobufs(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds();
	struct ipc_chan *a, *b;
	struct ipc_msg *req, *rep;
	uint32_t id1, id2, id3;

	l.max_outstanding = 2;
	chan_pair(&l, NULL, &a, &b);
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, &id1), 0);
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, &id2), 0);
	assert_true(id1 != id2 && id1 && id2);
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, &id3), -ENOBUFS);
	assert_int_equal(ipc_chan_recv(b, &req), 0);
	assert_int_equal(ipc_chan_reply(b, req, NULL, NULL, 0), 0);
	ipc_msg_free(req);
	assert_int_equal(ipc_chan_recv(a, &rep), 0);
	assert_int_equal(rep->id, id1);
	ipc_msg_free(rep);
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, &id3), 0);
	assert_true(id3 != id2);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* A reply packed by its sender arrives as the same message would have, sent by ipc_chan_reply();
 * one of another type, or larger than a datagram, is refused before anything is sent. */
static void test_ipc_reply_packed_arrives_as_packed_wrong_type_or_size_refused(void **state)
{
	int before = count_fds();
	struct ipc_chan *a, *b;
	struct ipc_msg *req, *rep;
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	static uint8_t buf[64 * 1024];
	uint8_t payload[100];
	size_t len;

	chan_pair(NULL, NULL, &a, &b);
	memset(payload, 0x5a, sizeof(payload));
	d.data.data = payload;
	d.data.len = sizeof(payload);
	len = protobuf_c_message_pack(&d.base, buf);
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, NULL), 0);
	assert_int_equal(ipc_chan_recv(b, &req), 0);
	assert_int_equal(ipc_chan_reply_packed(b, req, &vb__empty__descriptor, buf, len), -EINVAL);
	assert_int_equal(ipc_chan_reply_packed(b, req, &vb__dev__data__descriptor, buf,
					       ipc_limits_default.max_datagram - IPC_HDR_SIZE + 1),
			 -EMSGSIZE);
	assert_int_equal(ipc_chan_reply_packed(b, req, &vb__dev__data__descriptor, buf, len), 0);
	ipc_msg_free(req);
	assert_int_equal(ipc_chan_recv(a, &rep), 0);
	assert_int_equal(rep->kind, IPC_KIND_REPLY);
	assert_int_equal(((Vb__Dev__Data *)rep->body)->data.len, sizeof(payload));
	assert_memory_equal(((Vb__Dev__Data *)rep->body)->data.data, payload, sizeof(payload));
	ipc_msg_free(rep);
	/* Nothing else was sent: the refused ones left no datagram behind. */
	assert_int_equal(ipc_chan_recv(a, &rep), -EAGAIN);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_send_misuse_rejected_locally(void **state)
{
	int before = count_fds(), fds[4], neg = -1;
	struct ipc_chan *a, *b;
	struct ipc_msg *m;
	Vb__Empty e = VB__EMPTY__INIT;
	struct ipc_msg fake = {.kind = IPC_KIND_EVENT, .type = T_PING};

	chan_pair(NULL, NULL, &a, &b);
	make_fds(fds, 4);
	assert_int_equal(ipc_chan_request(a, 99, NULL, NULL, 0, NULL), -EINVAL);
	assert_int_equal(ipc_chan_request(a, T_NOTE, NULL, NULL, 0, NULL), -EINVAL);
	assert_int_equal(ipc_chan_request(a, T_PING, &e.base, NULL, 0, NULL), -EINVAL);
	assert_int_equal(ipc_chan_request(a, T_FDS, NULL, fds, 4, NULL), -ETOOMANYREFS);
	assert_int_equal(ipc_chan_event(a, T_PING, NULL, NULL, 0), -EINVAL);
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, fds, 2), -ETOOMANYREFS);
	assert_int_equal(ipc_chan_request(a, T_ONE, NULL, &neg, 1, NULL), -EBADF);
	assert_int_equal(ipc_chan_reply(a, &fake, NULL, NULL, 0), -EINVAL);
	fake.kind = IPC_KIND_REQUEST;
	assert_int_equal(ipc_chan_reply_error(a, &fake, 0, "x"), -EINVAL);
	assert_int_equal(ipc_chan_reply_error(a, &fake, 5, "x"), -EINVAL);
	/* Nothing of that reached the peer. */
	assert_int_equal(ipc_chan_recv(b, &m), -EAGAIN);
	close_all(fds, 4);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_send_full_socket_etimedout(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), r = 0, i;
	struct ipc_chan *a, *b;
	uint8_t blob[4000] = {0};
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	int64_t t0 = 0, dt;

	l.send_timeout_ms = 100;
	l.queue_msgs = 0; /* the queue off: a send waits, and gives up */
	chan_pair(&l, NULL, &a, &b);
	d.data.data = blob;
	d.data.len = sizeof(blob);
	for (i = 0; i < 100000; i++) {
		t0 = test_now_ms();
		r = ipc_chan_event(a, T_NOTE, &d.base, NULL, 0);
		if (r < 0)
			break;
	}
	dt = test_now_ms() - t0;
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(i > 0);
	assert_true(dt >= 100 && dt < 60000);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* Fills `a`'s peer socket until a send is queued; returns how many went straight out. */
static int fill_until_queued(struct ipc_chan *a, Vb__Dev__Data *d)
{
	int i;

	for (i = 0; i < 100000 && !ipc_chan_out_pending(a); i++) {
		d->data.data[0] = (uint8_t)i;
		assert_int_equal(ipc_chan_event(a, T_NOTE, &d->base, NULL, 0), 0);
	}
	assert_true(ipc_chan_out_pending(a));
	return i;
}

static void test_ipc_send_full_socket_queued_in_order_then_eoverflow(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), sent, i, p[2];
	struct ipc_chan *a, *b;
	uint8_t blob[4000] = {0};
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	struct ipc_msg *m;

	l.queue_msgs = 3;
	l.queue_fds = 1;
	chan_pair(&l, NULL, &a, &b);
	d.data.data = blob;
	d.data.len = sizeof(blob);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	/* The datagram that did not fit is the first queued: nothing waited for the peer. */
	sent = fill_until_queued(a, &d);
	assert_true(sent > 0);
	/* One fd may wait (a duplicate), a second is over the fd budget. */
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, &p[1], 1), 0);
	assert_int_equal(count_fds(), before + 2 + 2 + 1);
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, &p[1], 1), -EOVERFLOW);
	/* The third datagram fills the queue, a fourth is refused and nothing is sent. */
	d.data.data[0] = 0xee;
	assert_int_equal(ipc_chan_event(a, T_NOTE, &d.base, NULL, 0), 0);
	assert_int_equal(ipc_chan_event(a, T_NOTE, &d.base, NULL, 0), -EOVERFLOW);
	/* Flushing while the peer does not read sends nothing and keeps everything. */
	assert_int_equal(ipc_chan_flush(a), 0);
	assert_true(ipc_chan_out_pending(a));
	/* The peer reads: everything arrives once, in the order it was sent. */
	for (i = 0; i < sent + 2; i++) {
		int r;

		while ((r = ipc_chan_recv(b, &m)) == -EAGAIN)
			assert_int_equal(ipc_chan_flush(a), 0);
		assert_int_equal(r, 0);
		assert_int_equal(m->nfds, i == sent ? 1 : 0);
		if (i != sent)
			assert_int_equal(((Vb__Dev__Data *)m->body)->data.data[0],
					 i < sent ? (uint8_t)i : 0xee);
		ipc_msg_free(m);
	}
	assert_false(ipc_chan_out_pending(a));
	assert_int_equal(ipc_chan_recv(b, &m), -EAGAIN);
	assert_int_equal(count_fds(), before + 2 + 2);
	close_all(p, 2);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_send_queue_fds_closed_on_free(void **state)
{
	int before = count_fds(), p[2];
	struct ipc_chan *a, *b;
	uint8_t blob[4000] = {0};
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	chan_pair(NULL, NULL, &a, &b);
	d.data.data = blob;
	d.data.len = sizeof(blob);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	(void)fill_until_queued(a, &d);
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, &p[1], 1), 0);
	close_all(p, 2);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_send_queue_flush_peer_gone_epipe(void **state)
{
	int before = count_fds(), r;
	struct ipc_chan *a, *b;
	uint8_t blob[4000] = {0};
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	chan_pair(NULL, NULL, &a, &b);
	d.data.data = blob;
	d.data.len = sizeof(blob);
	(void)fill_until_queued(a, &d);
	ipc_chan_free(b);
	r = ipc_chan_flush(a);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	ipc_chan_free(a);
	assert_int_equal(count_fds(), before);
}

/* ---- fd ownership, credentials, sockets ------------------------------------------------- */

static void test_ipc_msg_take_fd_survives_free(void **state)
{
	int before = count_fds(), p[2], fd, taken;
	struct ipc_chan *a, *b;
	struct ipc_msg *m;
	char c;

	chan_pair(NULL, NULL, &a, &b);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, &p[1], 1), 0);
	close(p[1]);
	assert_int_equal(ipc_chan_recv(b, &m), 0);
	assert_int_equal(m->nfds, 1);
	fd = m->fds[0];
	taken = ipc_msg_take_fd(m, 0);
	assert_int_equal(taken, fd);
	assert_int_equal(m->fds[0], -1);
	assert_int_equal(ipc_msg_take_fd(m, 0), -EBADF);
	assert_int_equal(ipc_msg_take_fd(m, 1), -EBADF);
	ipc_msg_free(m);
	/* Still ours after the message went. */
	assert_int_equal(write(taken, "k", 1), 1);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'k');
	close(taken);
	close(p[0]);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_peer_credentials_match_process(void **state)
{
	int before = count_fds();
	struct ipc_chan *a, *b;
	pid_t pid = 0;
	uid_t uid = 1;
	gid_t gid = 1;

	chan_pair(NULL, NULL, &a, &b);
	assert_int_equal(ipc_chan_peer(a, &pid, &uid, &gid), 0);
	assert_int_equal(pid, getpid());
	assert_int_equal(uid, getuid());
	assert_int_equal(gid, getgid());
	assert_int_equal(ipc_peer_cred(ipc_chan_fd(b), &pid, NULL, NULL), 0);
	assert_int_equal(pid, getpid());
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* The socket file appears at the path only once it listens: the child that binds it is stopped
 * at the entry of its listen() system call (ptrace), and the path is not there yet; afterwards it
 * is, with its mode, and nothing else is left in the directory. Before, bind() made the path
 * and a client that waited for it could be refused (ECONNREFUSED) until listen(): it made
 * test_brokerd_reexec fail under load. */
static void test_ipc_listen_path_appears_only_listening(void **state)
{
	char dir[] = "/tmp/ipc-test-XXXXXX", path[128];
	int status, sig = 0, listens = 0, entries = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int lfd;

		/* _exit: no exit-time work (LeakSanitizer's tracer) in a traced child. */
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 || raise(SIGSTOP) < 0)
			_exit(2);
		_exit(ipc_listen(path, 0640, 4, &lfd) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSTOPPED(status));
	assert_int_equal(ptrace(PTRACE_SETOPTIONS, pid, NULL,
				(void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)),
			 0);
	for (;;) {
		struct __ptrace_syscall_info si;

		assert_int_equal(ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSTOPPED(status))
			break;
		sig = WSTOPSIG(status) == (SIGTRAP | 0x80) ? 0 : WSTOPSIG(status);
		if (sig)
			continue; /* a signal: delivered as the child goes on */
		assert_true(ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(si), &si) > 0);
		if (si.op == PTRACE_SYSCALL_INFO_ENTRY && si.entry.nr == SYS_listen) {
			listens++;
			assert_int_equal(stat(path, &st), -1);
			assert_int_equal(errno, ENOENT);
		}
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(listens, 1);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0640);
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			entries++;
	closedir(d);
	assert_int_equal(entries, 1);
	unlink(path);
	rmdir(dir);
}

static void test_ipc_listen_replaces_only_stale_sockets(void **state)
{
	int before = count_fds(), lfd, lfd2, cfd, sfd, ffd;
	char dir[] = "/tmp/ipc-test-XXXXXX", path[128], file[128];
	struct stat st;
	pid_t pid;
	uid_t uid;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	snprintf(file, sizeof(file), "%s/file", dir);

	assert_int_equal(ipc_listen(path, 0600, 4, &lfd), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(ipc_accept(lfd, &sfd), -EAGAIN);
	/* A live listener keeps its socket. */
	assert_int_equal(ipc_listen(path, 0600, 4, &lfd2), -EADDRINUSE);
	assert_int_equal(ipc_connect(path, &cfd), 0);
	assert_int_equal(ipc_accept(lfd, &sfd), 0);
	assert_int_equal(ipc_peer_cred(sfd, &pid, &uid, NULL), 0);
	assert_int_equal(pid, getpid());
	assert_int_equal(uid, getuid());
	close(cfd);
	close(sfd);
	close(lfd);

	/* The listener is gone: its socket file is stale and may be replaced. */
	assert_int_equal(ipc_listen(path, 0660, 4, &lfd), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	close(lfd);

	/* Not a socket: left alone. */
	ffd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(ffd >= 0);
	close(ffd);
	assert_int_equal(ipc_listen(file, 0600, 4, &lfd), -EEXIST);
	assert_int_equal(stat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(ipc_listen(path, 01777, 4, &lfd), -EINVAL);

	unlink(file);
	unlink(path);
	rmdir(dir);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_chan_new_rejects_bad_sockets_and_limits(void **state)
{
	int before = count_fds(), sv[2], p[2];
	struct ipc_limits l = ipc_limits_default;
	struct ipc_chan *c = NULL;
	struct ipc_proto dup = test_proto_server;
	struct ipc_msgdef defs[2] = {test_defs[0], test_defs[0]};

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, &c), -EPROTOTYPE);
	assert_null(c);
	/* Not taken on failure: still open. */
	assert_true(fcntl(sv[0], F_GETFD) >= 0);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(ipc_chan_new(p[0], &test_proto_server, NULL, &c), -ENOTSOCK);
	close(p[0]);
	close(p[1]);

	assert_int_equal(ipc_socketpair(sv), 0);
	l.max_fds = IPC_FDS_MAX + 1;
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, &l, &c), -EINVAL);
	l = ipc_limits_default;
	l.max_datagram = IPC_HDR_SIZE - 1;
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, &l, &c), -EINVAL);
	l = ipc_limits_default;
	l.max_outstanding = 0;
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, &l, &c), -EINVAL);
	dup.defs = defs;
	dup.ndefs = 2;
	assert_int_equal(ipc_chan_new(sv[0], &dup, NULL, &c), -EINVAL);
	assert_null(c);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(count_fds(), before);
}

/* ---- the protocol tables ---------------------------------------------------------------- */

static void check_table(const struct ipc_proto *p, const ProtobufCEnumDescriptor *types,
			int proto_id, const char *event_name)
{
	unsigned i;
	size_t j;
	int sv[2];
	struct ipc_chan *c;

	assert_int_equal(p->id, proto_id);
	assert_int_equal(p->version, 1);
	/* Every Type but UNSPECIFIED has exactly one entry, and nothing else has one. */
	assert_int_equal(p->ndefs, types->n_values - 1);
	for (i = 0; i < types->n_values; i++) {
		const ProtobufCEnumValue *v = &types->values[i];
		const struct ipc_msgdef *d = NULL;

		for (j = 0; j < p->ndefs; j++)
			if (p->defs[j].type == v->value)
				d = &p->defs[j];
		if (v->value == 0) {
			assert_null(d);
			continue;
		}
		assert_non_null(d);
		assert_non_null(d->request);
		/* Only the type named EVENT is event-only. */
		if (event_name && strcmp(v->name, event_name) == 0)
			assert_null(d->reply);
		else
			assert_non_null(d->reply);
	}
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], p, NULL, &c), 0);
	ipc_chan_free(c);
	close(sv[1]);
}

static const struct ipc_msgdef *def_of(const struct ipc_proto *p, uint16_t type)
{
	size_t i;

	for (i = 0; i < p->ndefs; i++)
		if (p->defs[i].type == type)
			return &p->defs[i];
	fail_msg("type %u missing from %s", type, p->name);
	return NULL;
}

static void test_ipc_protocol_tables_match_proto_files(void **state)
{
	check_table(&ipc_proto_control, &vb__ctl__type__descriptor, IPC_PROTO_CONTROL, "EVENT");
	check_table(&ipc_proto_broker, &vb__brk__type__descriptor, IPC_PROTO_BROKER, NULL);
	check_table(&ipc_proto_device, &vb__dev__type__descriptor, IPC_PROTO_DEVICE, "EVENT");
	/* The fds the .proto comments name. */
	/* The device and up to two listening sockets (native, vfio-user). */
	assert_int_equal(def_of(&ipc_proto_broker, VB__BRK__TYPE__HANDOFF)->max_request_fds, 3);
	assert_int_equal(def_of(&ipc_proto_broker, VB__BRK__TYPE__DMA_MAP)->max_request_fds, 1);
	assert_int_equal(def_of(&ipc_proto_broker, VB__BRK__TYPE__SET_IRQS)->max_request_fds,
			 IPC_FDS_MAX);
	assert_int_equal(def_of(&ipc_proto_broker, VB__BRK__TYPE__HEARTBEAT)->max_request_fds, 0);
	assert_int_equal(def_of(&ipc_proto_device, VB__DEV__TYPE__DMA_MAP)->max_request_fds, 1);
	assert_int_equal(def_of(&ipc_proto_device, VB__DEV__TYPE__SET_IRQ_FDS)->max_request_fds,
			 IPC_FDS_MAX);
	assert_int_equal(def_of(&ipc_proto_device, VB__DEV__TYPE__REGION_INFO)->max_reply_fds, 1);
	assert_ptr_equal(def_of(&ipc_proto_device, VB__DEV__TYPE__REGION_INFO)->reply,
			 &vb__region__descriptor);
	assert_int_equal(def_of(&ipc_proto_device, VB__DEV__TYPE__CFG_READ)->max_reply_fds, 0);
	assert_int_equal(def_of(&ipc_proto_control, VB__CTL__TYPE__ADD_DEVICE)->max_request_fds, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipc_request_outstanding_limit_enobufs),
	    cmocka_unit_test(test_ipc_send_misuse_rejected_locally),
	    cmocka_unit_test(test_ipc_reply_packed_arrives_as_packed_wrong_type_or_size_refused),
	    cmocka_unit_test(test_ipc_send_full_socket_etimedout),
	    cmocka_unit_test(test_ipc_send_full_socket_queued_in_order_then_eoverflow),
	    cmocka_unit_test(test_ipc_send_queue_fds_closed_on_free),
	    cmocka_unit_test(test_ipc_send_queue_flush_peer_gone_epipe),
	    cmocka_unit_test(test_ipc_msg_take_fd_survives_free),
	    cmocka_unit_test(test_ipc_peer_credentials_match_process),
	    cmocka_unit_test(test_ipc_listen_replaces_only_stale_sockets),
	    cmocka_unit_test(test_ipc_listen_path_appears_only_listening),
	    cmocka_unit_test(test_ipc_chan_new_rejects_bad_sockets_and_limits),
	    cmocka_unit_test(test_ipc_protocol_tables_match_proto_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
