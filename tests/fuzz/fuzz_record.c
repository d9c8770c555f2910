/*
 * Fuzz target: the broker's state record loader (broker/record*.c), the input a restarted broker
 * reads from the fd store before it trusts anything.
 *
 * Input: byte 0 chooses the form.
 *   even: the rest is a record file as it is, for the header slots, region bounds and CRCs;
 *   odd:  the rest is a list of entries {type u8, length u16 le, payload}, framed here with the
 *         right CRCs and sequence numbers (byte 1: how many go to the snapshot, the others to the
 *         journal; bit 1 of byte 0: the last entry is torn in half), so the fuzzer spends its
 *         time on what the entries say rather than on CRCs.
 * Whatever the input, the loader returns a state or a negative errno with a message and no
 * state. A state it returns, written again as a snapshot and loaded, gives the same snapshot
 * bytes (nothing the loader accepts is lost or changed by a compaction).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fuzz_fail.h"
#include "le.h"
#include "record_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GEN 5

/* A record image: page 0 with slot 0, the snapshot at REC_PAGE, then the journal. */
static void image(const struct rec_buf *snap, const struct rec_buf *jrn, struct rec_buf *out)
{
	uint64_t jcap = (jrn->len + 7) & ~(uint64_t)7;
	uint8_t slot[REC_SLOT_LEN];

	out->len = 0;
	if (rec_buf_reserve(out, REC_PAGE + snap->len + jcap) < 0)
		fuzz_fail("set-up: no memory for a record image");
	memset(out->p, 0, REC_PAGE + snap->len + jcap);
	rec_slot_fill(slot, GEN, REC_PAGE, snap->len, jcap, vb_crc32c(0, snap->p, snap->len));
	memcpy(out->p, slot, REC_SLOT_LEN);
	if (snap->len)
		memcpy(out->p + REC_PAGE, snap->p, snap->len);
	if (jrn->len)
		memcpy(out->p + REC_PAGE + snap->len, jrn->p, jrn->len);
	out->len = REC_PAGE + snap->len + jcap;
}

static void structured(const uint8_t *d, size_t n, bool tear, struct rec_buf *out)
{
	struct rec_buf snap = {0}, jrn = {0};
	unsigned nsnap = n ? d[0] : 0, i = 0;
	size_t off = 1, plen, last = 0;
	uint64_t seq = 0;

	while (off + 3 <= n) {
		unsigned type = d[off];

		plen = vb_le16_get(d + off + 1);
		off += 3;
		if (plen > n - off)
			plen = n - off;
		last = jrn.len;
		rec_frame(i < nsnap ? &snap : &jrn, GEN, seq++, type, d + off, plen);
		off += plen;
		i++;
	}
	if (tear && jrn.len)
		jrn.len = last + (jrn.len - last) / 2;
	if (snap.oom || jrn.oom)
		fuzz_fail("set-up: no memory for a record's snapshot or journal");
	image(&snap, &jrn, out);
	rec_buf_free(&snap);
	rec_buf_free(&jrn);
}

static void check_roundtrip(const struct brk_rec_state *st)
{
	struct rec_buf a = {0}, b = {0}, img = {0}, empty = {0};
	struct brk_rec_state *st2 = NULL;
	struct vb_err err = {0};
	uint64_t count;

	rec_enc_snapshot(st, GEN, &a, &count);
	image(&a, &empty, &img);
	if (a.oom)
		fuzz_fail("no memory to encode a loaded state");
	if (brk_record_parse(img.p, img.len, &st2, &err) != 0)
		fuzz_fail("a state the loader built does not load again: %s", err.msg);
	rec_enc_snapshot(st2, GEN, &b, &count);
	if (a.len != b.len || memcmp(a.p, b.p, a.len))
		fuzz_fail("a state loaded twice encodes differently (%zu and %zu bytes)",
			  (size_t)a.len, (size_t)b.len);
	brk_rec_state_free(st2);
	rec_buf_free(&a);
	rec_buf_free(&b);
	rec_buf_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rec_buf built = {0};
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};
	const uint8_t *buf = data + 1;
	size_t len = size ? size - 1 : 0;
	int r;

	if (size && (data[0] & 1)) {
		structured(data + 1, size - 1, (data[0] & 2) != 0, &built);
		buf = built.p;
		len = built.len;
	}
	r = brk_record_parse(buf, len, &st, &err);
	if (r == 0) {
		if (!st)
			fuzz_fail("brk_record_parse returned 0 without a state");
		check_roundtrip(st);
		brk_rec_state_free(st);
	} else if (r > 0 || r < -4095 || !err.msg[0] || err.code != r || st) {
		/* An error is a negative errno with a message, and no state. */
		fuzz_fail("brk_record_parse returned %d (err.code %d, message \"%s\", %s state)", r,
			  err.code, err.msg, st ? "a" : "no");
	}
	rec_buf_free(&built);
	return 0;
}
