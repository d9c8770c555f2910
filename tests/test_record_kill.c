/*
 * test_record_kill: the broker's state record (broker/record*.c) killed with SIGKILL in the
 * middle of a compaction written off the loop, at each point of it (the thread writing the new
 * snapshot, the loop flipping to it): the record loads as the state before, with the intent in
 * flight pending. And the CRC32C the entries are checked with, against its known answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "crc32c.h"
#include "le.h"
#include "record.h"
#include "record_priv.h"
#include "record_env.h"

/* ---- a SIGKILL in the middle of a compaction written off the loop ------------------------- */

static enum rec_bg_point kill_point;

static void kill_hook(enum rec_bg_point point)
{
	if (point == kill_point)
		kill(getpid(), SIGKILL);
}

static struct brk_jop kill_op(uint32_t i)
{
	return (struct brk_jop){.kind = BRK_JOP_DMA_MAP,
				.owner = 1,
				.iova = (uint64_t)i << 12,
				.size = 0x1000,
				.offset = (uint64_t)i << 12,
				.prot = 3,
				.dev = 5,
				.ino = 77};
}

/* The state after the first `k` maps of the sequence, with map k's intent when `pending`. */
static char *kill_reference(uint32_t k, bool pending)
{
	struct brk_record *rec = rec_new();
	struct brk_rec_vm vm = vm_of("big", 65535);
	struct brk_journal j;
	struct brk_jop op;
	char *d;

	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dma_journal(rec, "big", &j), 0);
	for (uint32_t i = 0; i < k; i++) {
		op = kill_op(i);
		assert_int_equal(j.intent(&j, &op), 0);
		j.done(&j, &op, true);
	}
	op = kill_op(k);
	if (pending)
		assert_int_equal(j.intent(&j, &op), 0);
	d = dump(brk_record_state(rec));
	brk_record_free(rec);
	return d;
}

/* A child maps page after page until the compaction its journal brings reaches `point`, where it
 * is SIGKILLed; the memfd then loads as exactly the maps it had made (the last one's intent
 * pending if it died between intent and commit), whichever region is live. */
static void killed_at(enum rec_bg_point point)
{
	struct brk_record *rec = rec_new();
	struct brk_rec_vm vm = vm_of("big", 65535);
	const struct brk_rec_vm *got;
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};
	struct brk_journal j;
	char *want, *have;
	int status, r;
	pid_t pid;

	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dma_journal(rec, "big", &j), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* No cmocka here: a failure is an exit code. */
		kill_point = point;
		rec_bg_hook = kill_hook;
		for (uint32_t i = 0; i < 65535; i++) {
			struct brk_jop op = kill_op(i);

			if (j.intent(&j, &op) != 0)
				_exit(2);
			j.done(&j, &op, true);
		}
		_exit(3); /* never reached the point */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("the child was not killed at point %d: status %#x", point, status);
	r = brk_record_load(brk_record_fd(rec), &st, &err);
	if (r != 0)
		fail_msg("load after a kill at point %d: %d %s", point, r, err.msg);
	got = brk_rec_state_vm(st, "big");
	assert_non_null(got);
	assert_true(st->npending <= 1);
	/* Enough maps that the snapshot was written by a thread. */
	assert_true(got->nmaps > 1000);
	want = kill_reference(got->nmaps, st->npending == 1);
	have = dump(st);
	assert_same(want, have);
	free(want);
	free(have);
	brk_rec_state_free(st);
	brk_record_free(rec);
}

static void test_record_killed_while_thread_writes_snapshot_loads_state(void **state)
{
	(void)state;
	killed_at(REC_BG_HALF_WRITTEN);
	killed_at(REC_BG_WRITTEN);
}

static void test_record_killed_while_loop_flips_to_thread_snapshot_loads_state(void **state)
{
	(void)state;
	killed_at(REC_BG_DELTA_WRITTEN);
	killed_at(REC_BG_FLIPPED);
}

static void test_crc32c_known_answer(void **state)
{
	uint8_t buf[300];
	size_t i, off, len;

	(void)state;

	assert_int_equal(vb_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(vb_crc32c_sw(0, "123456789", 9), 0xe3069283);
	assert_int_equal(vb_crc32c(vb_crc32c(0, "1234", 4), "56789", 5), 0xe3069283);
	/* Every alignment and tail length: the 8-byte steps agree with the table. */
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (off = 0; off < 8; off++) {
		for (len = 0; len + off <= sizeof(buf); len += 13)
			assert_int_equal(vb_crc32c(5, buf + off, len),
					 vb_crc32c_sw(5, buf + off, len));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c_known_answer),
	    cmocka_unit_test(test_record_killed_while_thread_writes_snapshot_loads_state),
	    cmocka_unit_test(test_record_killed_while_loop_flips_to_thread_snapshot_loads_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
