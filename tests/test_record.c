/*
 * test_record: the broker's state record (broker/record*.c): every mutation survives a reload
 * and an adoption; a write torn anywhere in the last entry (every prefix, every single byte left
 * unwritten) or in a compaction loads as the state before it, never garbage, never an error;
 * damaged and unknown records are refused with a message that says what is wrong; intents come
 * back pending and resolve; the cost of 65535 DMA maps' journal entries and of compaction. A
 * SIGKILL during a compaction off the loop, and CRC32C, are test_record_kill.c's; the helpers
 * record_env.c's.
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

/* ---- tests -------------------------------------------------------------------------------- */

static void test_record_new_loads_empty(void **state)
{
	struct brk_record *rec = rec_new();
	struct brk_record_stats s;
	char *d;

	(void)state;
	d = fd_dump(brk_record_fd(rec));
	assert_string_equal(d, "starts 0 epoch 0 next 0\n");
	brk_record_stats(rec, &s);
	assert_int_equal(s.generation, 1);
	assert_true(fcntl(brk_record_fd(rec), F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(brk_record_fd(rec), F_GET_SEALS) & F_SEAL_SHRINK);
	free(d);
	brk_record_free(rec);
}

static void test_record_mutations_survive_reload_and_adopt(void **state)
{
	struct brk_record *rec = rec_populated(), *rec2 = NULL;
	struct brk_rec_dev d = dev_of("0000:00:04.0", "vm-b", 2);
	struct vb_err err = {0};
	char *live, *loaded, *adopted;

	(void)state;
	assert_int_equal(brk_record_dev_put(rec, &d), 0);
	d.restarts = 9;
	snprintf(d.last_fault, sizeof(d.last_fault), "hung");
	assert_int_equal(brk_record_dev_put(rec, &d), 0);
	live = dump(brk_record_state(rec));
	assert_non_null(strstr(live, "map 100000 4000 100000 3 5 77 7: 8\n"));
	assert_null(strstr(live, "map 300000"));
	assert_non_null(strstr(live, " irq 2 33 5 3 0:101010000"));
	assert_non_null(strstr(live, "dev 0000:00:04.0 vm-b 2 7 1000 1001 1 3 12"));
	assert_non_null(strstr(live, " 9 4242 60000 60001 3 [hung]"));
	loaded = fd_dump(brk_record_fd(rec));
	assert_same(live, loaded);

	assert_int_equal(brk_record_adopt(brk_record_fd(rec), &rec2, &err), 0);
	adopted = dump(brk_record_state(rec2));
	assert_same(live, adopted);
	brk_record_free(rec);
	/* The adopter goes on writing where the first left off. */
	assert_int_equal(brk_record_dev_del(rec2, "0000:00:04.0"), 0);
	assert_int_equal(brk_record_vm_del(rec2, "vm-b"), 0);
	free(live);
	live = dump(brk_record_state(rec2));
	assert_null(strstr(live, "vm-b"));
	free(loaded);
	loaded = fd_dump(brk_record_fd(rec2));
	assert_same(live, loaded);
	free(live);
	free(loaded);
	free(adopted);
	brk_record_free(rec2);
}

static void test_record_bad_arguments_change_nothing(void **state)
{
	struct brk_record *rec = rec_populated();
	struct brk_rec_dev d = dev_of("0000:00:05.0", "nope", 2);
	struct brk_rec_vm vm = vm_of("bad\nname", 1);
	struct brk_journal j;
	struct brk_jop op = {.kind = BRK_JOP_DMA_MAP, .iova = 0, .size = 0x1000, .prot = 3};
	char *before = dump(brk_record_state(rec)), *after;

	(void)state;
	assert_int_equal(brk_record_dev_put(rec, &d), -ENOENT);
	assert_int_equal(brk_record_vm_put(rec, &vm), -EINVAL);
	assert_int_equal(brk_record_vm_del(rec, "vm-a"), -EBUSY);
	assert_int_equal(brk_record_vm_del(rec, "vm-zzz"), -ENOENT);
	assert_int_equal(brk_record_dev_del(rec, "0000:00:09.0"), -ENOENT);
	assert_int_equal(brk_record_resolve(rec, 999), -ENOENT);
	assert_int_equal(brk_record_dma_journal(rec, "vm-gone", &j), 0);
	assert_int_equal(j.intent(&j, &op), -ENOENT);
	assert_int_equal(brk_record_irq_journal(rec, "0000:00:0a.0", &j), 0);
	op = (struct brk_jop){.kind = BRK_JOP_IRQ_SET, .index = 1};
	assert_int_equal(j.intent(&j, &op), -ENOENT);
	after = fd_dump(brk_record_fd(rec));
	assert_same(before, after);
	free(before);
	free(after);
	brk_record_free(rec);
}

/* The last mutation torn after every prefix of its entry, and with each single byte of it not
 * written (stores may land in any order): the state before, or (whole entry) after. */
static void torn_check(struct brk_record *rec, void (*mutate)(struct brk_record *rec))
{
	size_t len0, len1, i, first, last, k;
	uint8_t *b0 = file_bytes(brk_record_fd(rec), &len0), *b1, *t;
	char *before = dump(brk_record_state(rec)), *after, *d;
	struct brk_record_stats s0, s1;

	brk_record_stats(rec, &s0);
	mutate(rec);
	brk_record_stats(rec, &s1);
	assert_int_equal(s1.generation, s0.generation); /* an append, not a compaction */
	after = dump(brk_record_state(rec));
	assert_string_not_equal(before, after);
	b1 = file_bytes(brk_record_fd(rec), &len1);
	assert_int_equal(len0, len1);
	for (first = 0; first < len1 && b0[first] == b1[first]; first++)
		;
	for (last = len1; last > first && b0[last - 1] == b1[last - 1]; last--)
		;
	assert_true(first < last);
	t = malloc(len1);
	for (k = first; k <= last; k++) {
		memcpy(t, b0, len1);
		memcpy(t + first, b1 + first, k - first);
		d = parse_dump(t, len1);
		assert_same(k == last ? after : before, d);
		free(d);
	}
	for (i = first; i < last; i++) {
		if (b0[i] == b1[i])
			continue;
		memcpy(t, b1, len1);
		t[i] = b0[i];
		d = parse_dump(t, len1);
		assert_same(before, d);
		free(d);
	}
	free(t);
	free(b0);
	free(b1);
	free(before);
	free(after);
}

static void mut_vm_put(struct brk_record *rec)
{
	struct brk_rec_vm vm = vm_of("vm-c", 9);

	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
}

static void mut_dev_put(struct brk_record *rec)
{
	struct brk_rec_dev d = dev_of("0000:00:03.0", "vm-a", 5);

	assert_int_equal(brk_record_dev_put(rec, &d), 0);
}

static struct brk_jop torn_op;

static void mut_map_intent(struct brk_record *rec)
{
	struct brk_journal j;

	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &j), 0);
	torn_op = (struct brk_jop){.kind = BRK_JOP_DMA_MAP,
				   .owner = 7,
				   .iova = 0x800000,
				   .size = 0x2000,
				   .prot = 1,
				   .dev = 5,
				   .ino = 78};
	assert_int_equal(j.intent(&j, &torn_op), 0);
}

static void mut_map_commit(struct brk_record *rec)
{
	struct brk_journal j;

	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &j), 0);
	j.done(&j, &torn_op, true);
}

static void mut_irq_intent(struct brk_record *rec)
{
	struct brk_journal j;

	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &j), 0);
	torn_op = (struct brk_jop){.kind = BRK_JOP_IRQ_SET, .index = 1};
	assert_int_equal(j.intent(&j, &torn_op), 0);
}

static void mut_irq_commit(struct brk_record *rec)
{
	static const uint8_t trig[1] = {1};
	struct brk_journal j;

	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &j), 0);
	torn_op.irq_count = 1;
	torn_op.irq_enabled = 1;
	torn_op.irq_trig = trig;
	j.done(&j, &torn_op, true);
}

static void mut_unshare(struct brk_record *rec)
{
	struct brk_journal j;

	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &j), 0);
	jop(&j, BRK_JOP_DMA_UNSHARE, 7, 0x100000, 0x4000);
}

static void test_record_torn_last_entry_loads_state_before(void **state)
{
	struct brk_record *rec = rec_populated();

	(void)state;
	torn_check(rec, mut_vm_put);
	torn_check(rec, mut_dev_put);
	torn_check(rec, mut_map_intent);
	torn_check(rec, mut_map_commit);
	torn_check(rec, mut_irq_intent);
	torn_check(rec, mut_irq_commit);
	torn_check(rec, mut_unshare);
	brk_record_free(rec);
}

/* The live slot of `b` (the higher generation): where its region lies. */
static const uint8_t *live_slot(const uint8_t *b)
{
	return b + (vb_le64_get(b + REC_SLOT_STEP + REC_SLOT_GEN) > vb_le64_get(b + REC_SLOT_GEN)
			? REC_SLOT_STEP
			: 0);
}

static void region_of(const uint8_t *b, size_t *off, size_t *len)
{
	const uint8_t *s = live_slot(b);

	*off = vb_le64_get(s + REC_SLOT_OFF);
	*len = vb_le64_get(s + REC_SLOT_SNAPLEN) + vb_le64_get(s + REC_SLOT_JRNCAP);
}

static void parse_same(const uint8_t *t, size_t len, const char *want)
{
	char *d = parse_dump(t, len);

	assert_same(want, d);
	free(d);
}

/* A compaction killed at any point, in its write order: the new region (in 8-byte steps), the
 * other slot (every byte), then the old region's release (in 8-byte steps). The state loads the
 * same at every cut. */
static void test_record_torn_compaction_loads_same_state(void **state)
{
	struct brk_record *rec = rec_populated();
	char *want = dump(brk_record_state(rec));
	size_t len0, len1, i, k, new_off, new_len, old_off, old_len, slot_at;
	uint8_t *b0 = file_bytes(brk_record_fd(rec), &len0), *b1, *t;

	(void)state;
	assert_int_equal(brk_record_compact(rec), 0);
	b1 = file_bytes(brk_record_fd(rec), &len1);
	assert_true(len1 >= len0);
	b0 = realloc(b0, len1);
	memset(b0 + len0, 0, len1 - len0); /* the memfd grew with zeros */
	t = malloc(len1);
	region_of(b0, &old_off, &old_len);
	region_of(b1, &new_off, &new_len);
	assert_true(new_off >= old_off + old_len || new_off + new_len <= old_off);
	slot_at = (size_t)(live_slot(b1) - b1);
	assert_int_not_equal(slot_at, (size_t)(live_slot(b0) - b0));
	memcpy(t, b0, len1);
	for (i = 0; i <= new_len; i += 8) {
		memcpy(t + new_off, b1 + new_off, i);
		parse_same(t, len1, want);
	}
	for (k = 0; k <= REC_SLOT_LEN; k++) {
		memcpy(t + slot_at, b1 + slot_at, k);
		parse_same(t, len1, want);
	}
	for (i = 0; i <= old_len; i += 8) {
		memcpy(t + old_off, b1 + old_off, i);
		parse_same(t, len1, want);
	}
	assert_memory_equal(t, b1, len1);
	free(t);
	free(b0);
	free(b1);
	free(want);
	brk_record_free(rec);
}

static void test_record_intents_pending_on_load_and_resolved(void **state)
{
	struct brk_record *rec = rec_populated(), *rec2 = NULL;
	struct brk_journal jd, ji;
	struct brk_jop map = {.kind = BRK_JOP_DMA_MAP,
			      .owner = 7,
			      .iova = 0x900000,
			      .size = 0x1000,
			      .prot = 3,
			      .dev = 1,
			      .ino = 2};
	struct brk_jop unmap = {
	    .kind = BRK_JOP_DMA_UNMAP, .owner = 7, .iova = 0x200000, .size = 0x1000};
	struct brk_jop irq = {.kind = BRK_JOP_IRQ_SET, .index = 2};
	const struct brk_rec_state *st;
	struct brk_rec_state *copy = NULL;
	struct brk_record_stats s;
	struct vb_err err = {0};
	char *d, *d2;

	(void)state;
	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &jd), 0);
	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &ji), 0);
	assert_int_equal(jd.intent(&jd, &map), 0);
	assert_int_equal(jd.intent(&jd, &unmap), 0);
	assert_int_equal(ji.intent(&ji, &irq), 0);
	/* The broker dies here: three calls in flight. */
	assert_int_equal(brk_record_adopt(brk_record_fd(rec), &rec2, &err), 0);
	brk_record_free(rec);
	st = brk_record_state(rec2);
	assert_int_equal(st->npending, 3);
	d = dump(st);
	assert_non_null(strstr(d, "pending 4 1 vm-a 7 900000 1000 0 3 0\n"));
	assert_non_null(strstr(d, "pending 5 2 vm-a 7 200000 1000 0 0 0\n"));
	assert_non_null(strstr(d, "pending 6 6 0000:00:03.0 0 0 0 0 0 2\n"));
	assert_non_null(strstr(d, "map 200000"));
	free(d);
	/* A copy resolved the same way says what the live record will. */
	assert_int_equal(brk_record_load(brk_record_fd(rec2), &copy, &err), 0);
	assert_int_equal(brk_rec_state_resolve(copy, map.id), 0);
	assert_int_equal(brk_rec_state_resolve(copy, unmap.id), 0);
	assert_int_equal(brk_rec_state_resolve(copy, irq.id), 0);
	assert_int_equal(brk_rec_state_resolve(copy, irq.id), -ENOENT);
	/* The adopter unmaps the map's range, redoes the unmap, disables the index. */
	assert_int_equal(brk_record_resolve(rec2, map.id), 0);
	assert_int_equal(brk_record_resolve(rec2, unmap.id), 0);
	assert_int_equal(brk_record_resolve(rec2, irq.id), 0);
	assert_int_equal(brk_record_resolve(rec2, irq.id), -ENOENT);
	d = fd_dump(brk_record_fd(rec2));
	assert_null(strstr(d, "pending"));
	assert_null(strstr(d, "map 900000"));
	assert_null(strstr(d, "map 200000"));
	assert_non_null(strstr(d, " irq 2 33 0 0 0:000000000"));
	d2 = dump(copy);
	assert_same(d, d2);
	/* A table rebuilt from a copy taken before resolving still lists the unmapped mapping and
	 * unmaps it again (the kernel says yes): the record stays as it is, and writable. */
	assert_int_equal(brk_record_dma_journal(rec2, "vm-a", &jd), 0);
	jop(&jd, BRK_JOP_DMA_UNMAP, 7, 0x200000, 0x1000);
	brk_record_stats(rec2, &s);
	assert_false(s.broken);
	jmap(&jd, 7, 0x200000, 0x1000, true);
	free(d);
	free(d2);
	brk_rec_state_free(copy);
	brk_record_free(rec2);
}

/* Rewrites the live slot's fields through `edit` and fixes its CRC. */
static void edit_slot(uint8_t *b, void (*edit)(uint8_t *slot))
{
	uint8_t *s =
	    b + (vb_le64_get(b + REC_SLOT_STEP + REC_SLOT_GEN) > vb_le64_get(b + REC_SLOT_GEN)
		     ? REC_SLOT_STEP
		     : 0);

	edit(s);
	vb_le32_put(s + REC_SLOT_CRC, vb_crc32c(0, s, REC_SLOT_CRC));
}

/* Where the live journal ends in `b`, its generation and next sequence number. */
static size_t tail_of(const uint8_t *b, uint64_t *gen, uint64_t *seq)
{
	const uint8_t *s =
	    b + (vb_le64_get(b + REC_SLOT_STEP + REC_SLOT_GEN) > vb_le64_get(b + REC_SLOT_GEN)
		     ? REC_SLOT_STEP
		     : 0);
	size_t off = vb_le64_get(s + REC_SLOT_OFF), l;

	*gen = vb_le64_get(s + REC_SLOT_GEN);
	*seq = 0;
	while ((l = rec_entry_ok(b + off, 1u << 20, *gen, *seq))) {
		off += rec_pad8(l);
		(*seq)++;
	}
	return off;
}

static void set_version7(uint8_t *s)
{
	vb_le32_put(s + REC_SLOT_VERSION, 7);
}

static void set_region_far(uint8_t *s)
{
	vb_le64_put(s + REC_SLOT_OFF, 1ull << 40);
}

static void expect_refused(const uint8_t *b, size_t len, int want, const char *msg)
{
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};
	int r = brk_record_parse(b, len, &st, &err);

	assert_int_equal(r, want);
	assert_null(st);
	if (!strstr(err.msg, msg))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg);
}

static void test_record_damaged_or_unknown_refused_with_reason(void **state)
{
	struct brk_record *rec = rec_populated();
	size_t len, tail;
	uint8_t *b = file_bytes(brk_record_fd(rec), &len), *t = malloc(len);
	struct rec_buf e = {0}, f = {0};
	uint64_t gen, seq;
	char msg[128];

	(void)state;
	memcpy(t, b, len);
	edit_slot(t, set_version7);
	expect_refused(t, len, -EPROTO, "state record: version 7 unknown (this broker reads 1)");
	memcpy(t, b, len);
	edit_slot(t, set_region_far);
	expect_refused(t, len, -EBADMSG, "does not fit its");
	memcpy(t, b, len);
	t[0] ^= 1;
	t[REC_SLOT_STEP] ^= 1;
	expect_refused(t, len, -EBADMSG, "no header slot has the magic");
	memcpy(t, b, len);
	t[REC_SLOT_GEN] ^= 1;
	t[REC_SLOT_STEP + REC_SLOT_GEN] ^= 1;
	expect_refused(t, len, -EBADMSG, "both header slots fail their CRC");
	memcpy(t, b, len);
	t[REC_PAGE + 30] ^= 0x40; /* inside the snapshot */
	expect_refused(t, len, -EBADMSG, "snapshot fails its CRC");
	expect_refused(t, 100, -EBADMSG, "shorter than its header page");
	expect_refused(b, BRK_RECORD_MAX_BYTES + 1, -EFBIG, "more than");
	/* A journal entry that checks but contradicts the state: a commit of no intent. */
	memcpy(t, b, len);
	tail = tail_of(t, &gen, &seq);
	rec_enc_id(&e, 4242);
	rec_frame(&f, gen, seq, REC_COMMIT, e.p, e.len);
	memcpy(t + tail, f.p, f.len);
	snprintf(msg, sizeof(msg), "journal entry %llu (commit): commit of no pending intent",
		 (unsigned long long)seq);
	expect_refused(t, len, -EBADMSG, msg);
	/* The same bytes one sequence number off are a torn tail, not an error. */
	memcpy(t, b, len);
	f.len = 0;
	rec_frame(&f, gen, seq + 1, REC_COMMIT, e.p, e.len);
	memcpy(t + tail, f.p, f.len);
	free(parse_dump(t, len));
	rec_buf_free(&f);
	free(t);
	free(b);
	rec_buf_free(&e);
	brk_record_free(rec);
}

/* Bytes after the tail that would check as the next entry (left by a longer entry torn there, or
 * planted through text that reached the record) are cleared when a broker adopts the record, so
 * the entry it appends over the torn one is never followed by them. */
static void test_record_adopt_clears_remnant_after_tail(void **state)
{
	struct brk_record *rec = rec_new(), *rec2 = NULL;
	struct brk_rec_vm vm = vm_of("x", 1);
	struct rec_buf p = {0}, f = {0};
	struct vb_err err = {0};
	uint64_t gen, seq;
	size_t len, tail;
	uint8_t *b;
	char *d;

	(void)state;
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	b = file_bytes(brk_record_fd(rec), &len);
	tail = tail_of(b, &gen, &seq);
	vm = vm_of("evil", 1);
	rec_enc_vm_put(&p, &vm);
	rec_frame(&f, gen, seq + 1, REC_VM_PUT, p.p, p.len);
	/* vm-del "x" is 24 bytes: the planted entry sits right where the next one would start. */
	assert_int_equal(pwrite(brk_record_fd(rec), f.p, f.len, (off_t)(tail + 24)),
			 (ssize_t)f.len);
	assert_int_equal(brk_record_adopt(brk_record_fd(rec), &rec2, &err), 0);
	brk_record_free(rec);
	assert_int_equal(brk_record_vm_del(rec2, "x"), 0);
	d = fd_dump(brk_record_fd(rec2));
	assert_null(strstr(d, "evil"));
	assert_null(strstr(d, "vm x"));
	free(d);
	free(b);
	rec_buf_free(&p);
	rec_buf_free(&f);
	brk_record_free(rec2);
}

/* An adopter that releases a VM or device with intents still pending on it (quiesced: the fds
 * closed) deletes it from the record: the intents go too, and the record still loads after a
 * compaction (an intent naming nothing would make the snapshot refuse to load). */
static void test_record_del_drops_pending_intents(void **state)
{
	struct brk_record *rec = rec_populated(), *rec2 = NULL;
	struct brk_jop map = {
	    .kind = BRK_JOP_DMA_MAP, .owner = 7, .iova = 0x900000, .size = 0x1000, .prot = 3};
	struct brk_jop irq = {.kind = BRK_JOP_IRQ_SET, .index = 2};
	struct brk_journal jd, ji;
	struct vb_err err = {0};
	char *d;

	(void)state;
	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &jd), 0);
	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &ji), 0);
	assert_int_equal(jd.intent(&jd, &map), 0);
	assert_int_equal(ji.intent(&ji, &irq), 0);
	assert_int_equal(brk_record_adopt(brk_record_fd(rec), &rec2, &err), 0);
	brk_record_free(rec);
	assert_int_equal(brk_record_state(rec2)->npending, 2);
	assert_int_equal(brk_record_dev_del(rec2, "0000:00:03.0"), 0);
	assert_int_equal(brk_record_state(rec2)->npending, 1);
	assert_int_equal(brk_record_vm_del(rec2, "vm-a"), 0);
	assert_int_equal(brk_record_state(rec2)->npending, 0);
	assert_int_equal(brk_record_compact(rec2), 0);
	d = fd_dump(brk_record_fd(rec2));
	assert_null(strstr(d, "pending"));
	assert_null(strstr(d, "vm-a"));
	free(d);
	brk_record_free(rec2);
}

/* Lookups by name among many VMs and devices, put and deleted in an order unlike the names'. */
static void test_record_many_vms_and_devices_found_by_name(void **state)
{
	struct brk_record *rec = rec_new();
	const struct brk_rec_state *st;
	char name[16], bdf[16], *live, *loaded;
	uint32_t i, k;

	(void)state;
	for (i = 0; i < 600; i++) {
		struct brk_rec_vm vm;
		struct brk_rec_dev d;

		k = (i * 7919) % 600;
		snprintf(name, sizeof(name), "vm%u", k);
		snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.%u", k / 32, k % 32, k % 8);
		vm = vm_of(name, k);
		d = dev_of(bdf, name, 2);
		assert_int_equal(brk_record_vm_put(rec, &vm), 0);
		assert_int_equal(brk_record_dev_put(rec, &d), 0);
	}
	for (k = 0; k < 600; k += 3) {
		snprintf(name, sizeof(name), "vm%u", k);
		snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.%u", k / 32, k % 32, k % 8);
		assert_int_equal(brk_record_dev_del(rec, bdf), 0);
		assert_int_equal(brk_record_vm_del(rec, name), 0);
	}
	st = brk_record_state(rec);
	assert_int_equal(st->nvms, 400);
	assert_int_equal(st->ndevs, 400);
	for (k = 0; k < 600; k++) {
		const struct brk_rec_vm *vm;

		snprintf(name, sizeof(name), "vm%u", k);
		snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.%u", k / 32, k % 32, k % 8);
		vm = brk_rec_state_vm(st, name);
		if (k % 3 == 0) {
			assert_null(vm);
			assert_null(brk_rec_state_dev(st, bdf));
			continue;
		}
		assert_non_null(vm);
		assert_int_equal(vm->max_mappings, k);
		assert_string_equal(brk_rec_state_dev(st, bdf)->vm, name);
	}
	live = dump(st);
	loaded = fd_dump(brk_record_fd(rec));
	assert_same(live, loaded);
	free(live);
	free(loaded);
	brk_record_free(rec);
}

static void test_record_adopt_unsealed_refused(void **state)
{
	int fd = memfd_create("not-sealed", MFD_CLOEXEC);
	struct brk_record *rec = NULL;
	struct vb_err err = {0};

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(brk_record_adopt(fd, &rec, &err), -EPERM);
	assert_null(rec);
	assert_non_null(strstr(err.msg, "not sealed against shrinking"));
	close(fd);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: what a call costs the loop, whatever else the machine runs. */
static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 65535 maps (the kernel's default limit) through the journal: the appends stay O(1) (the whole
 * run costs a few compactions, not 65535 rewrites), and the result reloads exactly. Prints the
 * figures; asserts only what does not depend on the machine's speed. */
static void test_record_65535_maps_appended_and_compacted(void **state)
{
	struct brk_record *rec = rec_new();
	struct brk_rec_vm vm = vm_of("big", 65535);
	struct brk_record_stats s;
	struct brk_journal j;
	struct stat sb;
	double t0, t1, t2, t3, worst = 0, worst_cpu = 0;
	char *live, *loaded;
	uint32_t i;

	(void)state;
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dma_journal(rec, "big", &j), 0);
	t0 = now_s();
	for (i = 0; i < 65535; i++) {
		double a = now_s(), ca = cpu_s(), b, cb;

		jmap(&j, 1, (uint64_t)i << 12, 0x1000, true);
		b = now_s();
		cb = cpu_s();
		worst = b - a > worst ? b - a : worst;
		worst_cpu = cb - ca > worst_cpu ? cb - ca : worst_cpu;
	}
	t1 = now_s();
	brk_record_stats(rec, &s);
	assert_int_equal(brk_record_state(rec)->vms[0]->nmaps, 65535);
	assert_int_equal(s.appends, 2 * 65535 + 1);
	/* Geometric growth: each compaction at least doubles the journal room. */
	assert_in_range(s.compactions, 2, 20);
	/* Past the first 64 KiB of snapshot, compactions are written by a thread. */
	assert_true(s.bg_compactions >= 1);
	t2 = now_s();
	assert_int_equal(brk_record_compact(rec), 0);
	t3 = now_s();
	live = dump(brk_record_state(rec));
	loaded = fd_dump(brk_record_fd(rec));
	assert_same(live, loaded);
	brk_record_stats(rec, &s);
	assert_int_equal(fstat(brk_record_fd(rec), &sb), 0);
	/* The dead region's pages went back: what the memfd holds is about one region. */
	assert_true((uint64_t)sb.st_blocks * 512 < s.snap_bytes + s.jrn_cap + 2 * REC_PAGE);
	print_message(
	    "# 65535 maps: %.2f us per map (intent + commit), the longest %.2f ms (%.2f ms "
	    "of the loop's CPU), %llu compactions (%llu by a thread, %llu waited for), "
	    "%.1f ms for one compaction of %llu snapshot bytes, file %llu bytes of which "
	    "%llu in memory\n",
	    (t1 - t0) * 1e6 / 65535, worst * 1e3, worst_cpu * 1e3,
	    (unsigned long long)s.compactions - 1, (unsigned long long)s.bg_compactions,
	    (unsigned long long)s.bg_waits, (t3 - t2) * 1e3, (unsigned long long)s.snap_bytes,
	    (unsigned long long)s.file_bytes, (unsigned long long)sb.st_blocks * 512);
	free(live);
	free(loaded);
	brk_record_free(rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_new_loads_empty),
	    cmocka_unit_test(test_record_mutations_survive_reload_and_adopt),
	    cmocka_unit_test(test_record_bad_arguments_change_nothing),
	    cmocka_unit_test(test_record_torn_last_entry_loads_state_before),
	    cmocka_unit_test(test_record_torn_compaction_loads_same_state),
	    cmocka_unit_test(test_record_intents_pending_on_load_and_resolved),
	    cmocka_unit_test(test_record_damaged_or_unknown_refused_with_reason),
	    cmocka_unit_test(test_record_adopt_clears_remnant_after_tail),
	    cmocka_unit_test(test_record_del_drops_pending_intents),
	    cmocka_unit_test(test_record_many_vms_and_devices_found_by_name),
	    cmocka_unit_test(test_record_adopt_unsealed_refused),
	    cmocka_unit_test(test_record_65535_maps_appended_and_compacted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
