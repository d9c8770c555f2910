/*
 * Tests of ipc_recv: every way a datagram can be malformed, sent by a raw peer that writes bytes
 * by hand, plus stray and mistyped answers and the decode budget. Each test checks the errno,
 * the error reply the peer gets (or that it gets none) and that no fd leaked.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "ipc_test.h"

/* ---- malformed datagrams from a raw peer ------------------------------------------------ */

static void test_ipc_recv_oversized_datagram_emsgsize(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), raw, fds[2];
	struct ipc_chan *c;
	struct ipc_msg *m;
	uint8_t buf[4096] = {0};
	struct raw_hdr h;
	size_t sizes[] = {1025, 3000}, i;

	l.max_datagram = 1024;
	c = chan_raw(&l, &raw);
	for (i = 0; i < 2; i++) {
		h = raw_hdr(T_PING, IPC_KIND_REQUEST, 40 + (uint32_t)i,
			    (uint32_t)(sizes[i] - IPC_HDR_SIZE), 2);
		raw_encode(&h, buf);
		make_fds(fds, 2);
		assert_int_equal(raw_sendmsg(raw, buf, sizes[i], fds, 2), sizes[i]);
		close_all(fds, 2);
		assert_int_equal(ipc_chan_recv(c, &m), -EMSGSIZE);
		raw_expect_error(raw, T_PING, 40 + (uint32_t)i, EMSGSIZE);
	}
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_too_many_fds_for_type_closed(void **state)
{
	int before = count_fds(), raw, fds[3];
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("x", body);
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 5, (uint32_t)blen, 3);

	make_fds(fds, 3);
	assert_true(raw_send(raw, &h, body, blen, fds, 3) > 0);
	close_all(fds, 3);
	assert_int_equal(ipc_chan_recv(c, &m), -ETOOMANYREFS);
	raw_expect_error(raw, T_ONE, 5, ETOOMANYREFS);
	/* One fd is within the type's limit. */
	h.nfds = 1;
	make_fds(fds, 1);
	assert_true(raw_send(raw, &h, body, blen, fds, 1) > 0);
	close(fds[0]);
	assert_int_equal(ipc_chan_recv(c, &m), 0);
	assert_int_equal(m->nfds, 1);
	ipc_msg_free(m);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_control_truncated_all_fds_closed(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), raw, fds[5];
	struct ipc_chan *c;
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("x", body);
	struct raw_hdr h = raw_hdr(T_FDS, IPC_KIND_REQUEST, 6, (uint32_t)blen, 5);

	l.max_fds = 2;
	c = chan_raw(&l, &raw);
	make_fds(fds, 5);
	assert_true(raw_send(raw, &h, body, blen, fds, 5) > 0);
	close_all(fds, 5);
	assert_int_equal(ipc_chan_recv(c, &m), -ETOOMANYREFS);
	raw_expect_error(raw, T_FDS, 6, ETOOMANYREFS);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

/* max_fds 1: CMSG_SPACE(4) is 24 bytes, room for two fds without MSG_CTRUNC. The channel's
 * limit still holds (the type alone would allow 3), and both fds are closed. */
static void test_ipc_recv_odd_max_fds_one_more_refused(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), raw, fds[2];
	struct ipc_chan *c;
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("x", body);
	struct raw_hdr h = raw_hdr(T_FDS, IPC_KIND_REQUEST, 7, (uint32_t)blen, 2);

	l.max_fds = 1;
	c = chan_raw(&l, &raw);
	make_fds(fds, 2);
	assert_true(raw_send(raw, &h, body, blen, fds, 2) > 0);
	close_all(fds, 2);
	assert_int_equal(ipc_chan_recv(c, &m), -ETOOMANYREFS);
	raw_expect_error(raw, T_FDS, 7, ETOOMANYREFS);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_truncated_datagram_emsgsize(void **state)
{
	int before = count_fds(), raw, fd;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t body[32], buf[IPC_HDR_SIZE];
	size_t blen = pack_data("0123456789", body);
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 7, (uint32_t)blen + 50, 1);

	/* The header claims more body than arrived. */
	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, blen, &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -EMSGSIZE);
	raw_expect_error(raw, T_ONE, 7, EMSGSIZE);

	/* Or less than arrived. */
	h.len = (uint32_t)blen - 1;
	h.nfds = 0;
	assert_true(raw_send(raw, &h, body, blen, NULL, 0) > 0);
	assert_int_equal(ipc_chan_recv(c, &m), -EMSGSIZE);
	raw_expect_error(raw, T_ONE, 7, EMSGSIZE);

	/* A datagram cut inside the header: nothing to answer. */
	raw_encode(&h, buf);
	make_fds(&fd, 1);
	assert_int_equal(raw_sendmsg(raw, buf, 11, &fd, 1), 11);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -EMSGSIZE);
	raw_expect_nothing(raw);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_empty_datagram_is_not_hangup(void **state)
{
	int before = count_fds(), raw;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("after", body);
	struct raw_hdr h = raw_hdr(T_PING, IPC_KIND_REQUEST, 8, (uint32_t)blen, 0);

	assert_int_equal(send(raw, "", 0, 0), 0);
	assert_true(raw_send(raw, &h, body, blen, NULL, 0) > 0);
	assert_int_equal(ipc_chan_recv(c, &m), -EMSGSIZE);
	assert_int_equal(ipc_chan_recv(c, &m), 0);
	assert_data(m, "after");
	ipc_msg_free(m);
	close(raw);
	assert_int_equal(ipc_chan_recv(c, &m), -EPIPE);
	ipc_chan_free(c);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_garbage_datagram_ebadmsg(void **state)
{
	int before = count_fds(), raw, fds[2], i;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t buf[200];
	uint32_t x = 12345;

	for (i = 0; i < (int)sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	buf[0] = 'X'; /* certainly not the magic */
	make_fds(fds, 2);
	assert_int_equal(raw_sendmsg(raw, buf, sizeof(buf), fds, 2), sizeof(buf));
	close_all(fds, 2);
	assert_int_equal(ipc_chan_recv(c, &m), -EBADMSG);
	raw_expect_nothing(raw); /* not our protocol: no answer */
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_undecodable_body_ebadmsg_answered(void **state)
{
	int before = count_fds(), raw, fd;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	/* Field 1 length-delimited, claiming 100 bytes of which 2 follow. */
	const uint8_t body[] = {0x0a, 0x64, 0x01, 0x02};
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 9, sizeof(body), 1);

	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, sizeof(body), &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -EBADMSG);
	raw_expect_error(raw, T_ONE, 9, EBADMSG);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

/* Sends one header-mangled request with an fd and expects `err`, answered or not. */
static void expect_bad_header(struct raw_hdr h, int err, bool answered)
{
	int before = count_fds(), raw, fd;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("x", body);

	h.len = (uint32_t)blen;
	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, blen, &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), err);
	if (answered)
		raw_expect_error(raw, h.type, h.id, -err);
	else
		raw_expect_nothing(raw);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_bad_magic_ebadmsg(void **state)
{
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 10, 0, 1);

	h.magic = 0x4b524257u;
	expect_bad_header(h, -EBADMSG, false);
}

static void test_ipc_recv_bad_protocol_ebadmsg(void **state)
{
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 11, 0, 1);

	h.proto = IPC_PROTO_DEVICE;
	expect_bad_header(h, -EBADMSG, false);
}

static void test_ipc_recv_bad_version_ebadmsg_answered(void **state)
{
	struct raw_hdr h = raw_hdr(T_ONE, IPC_KIND_REQUEST, 12, 0, 1);

	h.version = TEST_VERSION + 1;
	expect_bad_header(h, -EBADMSG, true);
}

static void test_ipc_recv_bad_kind_ebadmsg(void **state)
{
	expect_bad_header(raw_hdr(T_ONE, 0, 13, 0, 1), -EBADMSG, false);
	expect_bad_header(raw_hdr(T_ONE, 5, 13, 0, 1), -EBADMSG, false);
}

static void test_ipc_recv_fd_count_mismatch_ebadmsg(void **state)
{
	expect_bad_header(raw_hdr(T_ONE, IPC_KIND_REQUEST, 14, 0, 0), -EBADMSG, true);
}

static void test_ipc_recv_unknown_type_eproto_answered(void **state)
{
	expect_bad_header(raw_hdr(77, IPC_KIND_REQUEST, 15, 0, 1), -EPROTO, true);
}

static void test_ipc_recv_event_as_request_eproto(void **state)
{
	expect_bad_header(raw_hdr(T_NOTE, IPC_KIND_REQUEST, 16, 0, 1), -EPROTO, true);
	/* And a request type sent as an event: events are never answered. */
	expect_bad_header(raw_hdr(T_ONE, IPC_KIND_EVENT, 0, 0, 1), -EPROTO, false);
}

static void test_ipc_recv_foreign_control_message_closed(void **state)
{
	int before = count_fds(), on = 1, fd;
	struct ipc_chan *a, *b;
	struct ipc_msg *m;
	Vb__Dev__Data d = data_of("n");

	chan_pair(NULL, NULL, &a, &b);
	/* With SO_PASSCRED the kernel adds SCM_CREDENTIALS to every datagram. */
	assert_int_equal(setsockopt(ipc_chan_fd(b), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
	make_fds(&fd, 1);
	assert_int_equal(ipc_chan_event(a, T_NOTE, &d.base, &fd, 1), 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(b, &m), -EBADMSG);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* ---- unknown types, stray and mistyped answers ------------------------------------------ */

static void test_ipc_request_unknown_type_sender_gets_eproto(void **state)
{
	int before = count_fds();
	struct ipc_chan *a, *b;
	struct ipc_msg *m;
	const Vb__Error *e;
	uint32_t id;

	chan_pair(NULL, NULL, &a, &b);
	assert_int_equal(ipc_chan_request(a, T_UNKNOWN, NULL, NULL, 0, &id), 0);
	assert_int_equal(ipc_chan_recv(b, &m), -EPROTO);
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	assert_int_equal(m->type, T_UNKNOWN);
	assert_int_equal(m->id, id);
	e = (const Vb__Error *)m->body;
	assert_int_equal(e->code, EPROTO);
	assert_non_null(strstr(e->message, "unknown"));
	ipc_msg_free(m);
	/* The server keeps serving after the refusal. */
	assert_int_equal(ipc_chan_request(a, T_PING, NULL, NULL, 0, &id), 0);
	assert_int_equal(ipc_chan_recv(b, &m), 0);
	assert_int_equal(m->id, id);
	ipc_msg_free(m);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_reply_without_request_eproto(void **state)
{
	int before = count_fds(), raw, fd;
	struct ipc_chan *c = chan_raw(NULL, &raw);
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("stray", body);
	struct raw_hdr h = raw_hdr(T_FDS, IPC_KIND_REPLY, 77, (uint32_t)blen, 1);

	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, blen, &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -EPROTO);
	h = raw_hdr(T_PING, IPC_KIND_ERROR, 78, 0, 0);
	assert_true(raw_send(raw, &h, NULL, 0, NULL, 0) > 0);
	assert_int_equal(ipc_chan_recv(c, &m), -EPROTO);
	raw_expect_nothing(raw); /* answers are never answered */
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

/* A client channel with a raw server: returns the id of a T_FDS request the raw side read. */
static struct ipc_chan *client_with_request(int *raw, uint32_t *id)
{
	struct ipc_chan *c;
	uint8_t body[64];
	struct raw_hdr h;
	int sv[2];

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_client, NULL, &c), 0);
	*raw = sv[1];
	assert_int_equal(ipc_chan_request(c, T_FDS, NULL, NULL, 0, id), 0);
	assert_true(raw_recv(*raw, &h, body, sizeof(body)) >= 0);
	assert_int_equal(h.id, *id);
	return c;
}

static void test_ipc_recv_reply_wrong_type_eproto_then_right_one(void **state)
{
	int before = count_fds(), raw, fd;
	uint32_t id;
	struct ipc_chan *c = client_with_request(&raw, &id);
	struct ipc_msg *m;
	uint8_t body[32];
	size_t blen = pack_data("r", body);
	struct raw_hdr h = raw_hdr(T_PING, IPC_KIND_REPLY, id, (uint32_t)blen, 1);

	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, blen, &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -EPROTO);
	/* The mistyped answer did not consume the request. */
	h.type = T_FDS;
	h.nfds = 0;
	assert_true(raw_send(raw, &h, body, blen, NULL, 0) > 0);
	assert_int_equal(ipc_chan_recv(c, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	assert_int_equal(m->id, id);
	assert_data(m, "r");
	ipc_msg_free(m);
	/* ...and the right one did: a second copy is a stray. */
	assert_true(raw_send(raw, &h, body, blen, NULL, 0) > 0);
	assert_int_equal(ipc_chan_recv(c, &m), -EPROTO);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_error_reply_with_fd_etoomanyrefs(void **state)
{
	int before = count_fds(), raw, fd;
	uint32_t id;
	struct ipc_chan *c = client_with_request(&raw, &id);
	struct ipc_msg *m;
	Vb__Error e = VB__ERROR__INIT;
	uint8_t body[64];
	size_t blen;
	struct raw_hdr h;

	e.code = EIO;
	e.message = "with an fd";
	blen = vb__error__pack(&e, body);
	h = raw_hdr(T_FDS, IPC_KIND_ERROR, id, (uint32_t)blen, 1);
	make_fds(&fd, 1);
	assert_true(raw_send(raw, &h, body, blen, &fd, 1) > 0);
	close(fd);
	assert_int_equal(ipc_chan_recv(c, &m), -ETOOMANYREFS);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_recv_error_code_not_errno_ebadmsg(void **state)
{
	uint32_t codes[] = {0, 4096, 0xffffffffu}, id;
	int before = count_fds(), raw;
	size_t i;

	for (i = 0; i < 3; i++) {
		struct ipc_chan *c = client_with_request(&raw, &id);
		Vb__Error e = VB__ERROR__INIT;
		struct ipc_msg *m;
		uint8_t body[64];
		size_t blen;
		struct raw_hdr h;

		e.code = codes[i];
		blen = vb__error__pack(&e, body);
		h = raw_hdr(T_FDS, IPC_KIND_ERROR, id, (uint32_t)blen, 0);
		assert_true(raw_send(raw, &h, body, blen, NULL, 0) > 0);
		assert_int_equal(ipc_chan_recv(c, &m), -EBADMSG);
		ipc_chan_free(c);
		close(raw);
	}
	assert_int_equal(count_fds(), before);
}

/* ---- decode budget ---------------------------------------------------------------------- */

/* A brk.Handoff body of `n` empty `regions` (field 5): two bytes on the wire each, a whole
 * Region structure and a pointer each once decoded. */
static size_t handoff_body(uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		buf[2 * i] = (5 << 3) | 2;
		buf[2 * i + 1] = 0;
	}
	return 2 * n;
}

static int send_handoff(const struct ipc_limits *l, size_t nregions, int *raw_out,
			struct ipc_chan **c_out, struct ipc_msg **m)
{
	static uint8_t body[4096];
	size_t blen = handoff_body(body, nregions);
	struct raw_hdr h = raw_hdr(T_BIG, IPC_KIND_REQUEST, 21, (uint32_t)blen, 0);

	*c_out = chan_raw(l, raw_out);
	assert_true(raw_send(*raw_out, &h, body, blen, NULL, 0) > 0);
	return ipc_chan_recv(*c_out, m);
}

static void test_ipc_recv_decode_over_budget_enomem(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	int before = count_fds(), raw;
	struct ipc_chan *c;
	struct ipc_msg *m;
	const size_t n = 2000;

	/* 4000 bytes on the wire; tens of KiB once decoded. */
	assert_true(n * (sizeof(Vb__Region) + sizeof(void *)) > 16 * 4000);
	l.decode_budget = 16 * 1024;
	assert_int_equal(send_handoff(&l, n, &raw, &c, &m), -ENOMEM);
	raw_expect_error(raw, T_BIG, 21, ENOMEM);
	ipc_chan_free(c);
	close(raw);

	/* The same body within a larger budget decodes: the budget was the reason. */
	l.decode_budget = 1024 * 1024;
	assert_int_equal(send_handoff(&l, n, &raw, &c, &m), 0);
	assert_int_equal(((const Vb__Brk__Handoff *)m->body)->n_regions, n);
	ipc_msg_free(m);
	ipc_chan_free(c);
	close(raw);

	/* And a small one fits the small budget. */
	l.decode_budget = 16 * 1024;
	assert_int_equal(send_handoff(&l, 8, &raw, &c, &m), 0);
	assert_int_equal(((const Vb__Brk__Handoff *)m->body)->n_regions, 8);
	ipc_msg_free(m);
	ipc_chan_free(c);
	close(raw);
	assert_int_equal(count_fds(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipc_recv_oversized_datagram_emsgsize),
	    cmocka_unit_test(test_ipc_recv_too_many_fds_for_type_closed),
	    cmocka_unit_test(test_ipc_recv_control_truncated_all_fds_closed),
	    cmocka_unit_test(test_ipc_recv_odd_max_fds_one_more_refused),
	    cmocka_unit_test(test_ipc_recv_truncated_datagram_emsgsize),
	    cmocka_unit_test(test_ipc_recv_empty_datagram_is_not_hangup),
	    cmocka_unit_test(test_ipc_recv_garbage_datagram_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_undecodable_body_ebadmsg_answered),
	    cmocka_unit_test(test_ipc_recv_bad_magic_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_bad_protocol_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_bad_version_ebadmsg_answered),
	    cmocka_unit_test(test_ipc_recv_bad_kind_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_fd_count_mismatch_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_unknown_type_eproto_answered),
	    cmocka_unit_test(test_ipc_recv_event_as_request_eproto),
	    cmocka_unit_test(test_ipc_recv_foreign_control_message_closed),
	    cmocka_unit_test(test_ipc_request_unknown_type_sender_gets_eproto),
	    cmocka_unit_test(test_ipc_recv_reply_without_request_eproto),
	    cmocka_unit_test(test_ipc_recv_reply_wrong_type_eproto_then_right_one),
	    cmocka_unit_test(test_ipc_recv_error_reply_with_fd_etoomanyrefs),
	    cmocka_unit_test(test_ipc_recv_error_code_not_errno_ebadmsg),
	    cmocka_unit_test(test_ipc_recv_decode_over_budget_enomem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
