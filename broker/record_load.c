/*
 * record_load: reading a state record: which header slot is live (both checked: magic, version,
 * CRC, a region inside the file), the snapshot and journal it names replayed entry by entry into
 * a state (record_apply.c says what each means), and the journal's end where the first entry
 * that does not check out stands. Trusts nothing in the bytes it is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "base.h"
#include "crc32c.h"
#include "le.h"
#include "record_priv.h"

struct slot_info {
	bool magic, crc_ok;
	uint32_t version, size;
	uint64_t gen, off, snap_len, jrn_cap;
	uint32_t snap_crc;
};

static void read_slot(const uint8_t *s, struct slot_info *si)
{
	si->magic = !memcmp(s, REC_MAGIC, 8);
	si->crc_ok = si->magic && vb_crc32c(0, s, REC_SLOT_CRC) == vb_le32_get(s + REC_SLOT_CRC);
	si->version = vb_le32_get(s + REC_SLOT_VERSION);
	si->size = vb_le32_get(s + REC_SLOT_SIZE);
	si->gen = vb_le64_get(s + REC_SLOT_GEN);
	si->off = vb_le64_get(s + REC_SLOT_OFF);
	si->snap_len = vb_le64_get(s + REC_SLOT_SNAPLEN);
	si->jrn_cap = vb_le64_get(s + REC_SLOT_JRNCAP);
	si->snap_crc = vb_le32_get(s + REC_SLOT_SNAPCRC);
}

/* The slot to trust, checked against the file's size. */
static int pick_slot(const uint8_t *buf, size_t len, struct slot_info *out, unsigned *ret_slot,
		     struct vb_err *err)
{
	struct slot_info si[2];
	unsigned i, best;

	if (len < REC_PAGE)
		return vb_errf(err, -EBADMSG,
			       "state record: %zu bytes, shorter than its header page", len);
	for (i = 0; i < 2; i++)
		read_slot(buf + i * REC_SLOT_STEP, &si[i]);
	if (!si[0].magic && !si[1].magic)
		return vb_errf(err, -EBADMSG, "state record: no header slot has the magic %s",
			       REC_MAGIC);
	if (!si[0].crc_ok && !si[1].crc_ok)
		return vb_errf(err, -EBADMSG, "state record: both header slots fail their CRC");
	best = !si[0].crc_ok || (si[1].crc_ok && si[1].gen > si[0].gen);
	*out = si[best];
	*ret_slot = best;
	if (out->version != BRK_RECORD_VERSION)
		return vb_errf(err, -EPROTO,
			       "state record: version %u unknown (this broker reads %u)",
			       out->version, BRK_RECORD_VERSION);
	if (out->size != REC_SLOT_LEN || out->gen == 0 || out->off < REC_PAGE ||
	    out->off % REC_PAGE || out->snap_len % 8 || out->jrn_cap % 8 || out->off > len ||
	    out->snap_len > len - out->off || out->jrn_cap > len - out->off - out->snap_len)
		return vb_errf(
		    err, -EBADMSG,
		    "state record: generation %llu's region 0x%llx+0x%llx+0x%llx does not "
		    "fit its %zu-byte file",
		    (unsigned long long)out->gen, (unsigned long long)out->off,
		    (unsigned long long)out->snap_len, (unsigned long long)out->jrn_cap, len);
	if (vb_crc32c(0, buf + out->off, out->snap_len) != out->snap_crc)
		return vb_errf(err, -EBADMSG,
			       "state record: generation %llu's snapshot fails its CRC",
			       (unsigned long long)out->gen);
	return 0;
}

/* Applies the entries in [p, p + len); a snapshot must be all entries, a journal ends at the
 * first that does not check (a torn write). Returns the bytes used, or an error. */
static int64_t replay(struct brk_rec_state *st, const uint8_t *p, uint64_t len, bool snap,
		      uint64_t gen, uint64_t *seq, struct vb_err *err)
{
	const char *where = snap ? "snapshot" : "journal";
	struct vb_err e = {0};
	uint64_t off = 0;
	size_t l;
	int r;

	while (off < len) {
		l = rec_entry_ok(p + off, len - off, gen, *seq);
		if (!l && snap)
			return vb_errf(err, -EBADMSG,
				       "state record: snapshot entry %llu at offset %llu does not "
				       "check",
				       (unsigned long long)*seq, (unsigned long long)off);
		if (!l)
			break;
		r = rec_apply(st, vb_le16_get(p + off + 16), snap, p + off + REC_HDR_LEN,
			      l - REC_HDR_LEN, &e);
		if (r < 0)
			return vb_errf(err, r, "state record: %s entry %llu (%s): %s", where,
				       (unsigned long long)*seq,
				       rec_type_name(vb_le16_get(p + off + 16)), vb_err_msg(&e, r));
		off += rec_pad8(l);
		(*seq)++;
	}
	return (int64_t)off;
}

int rec_parse(const uint8_t *buf, size_t len, struct brk_rec_state **ret, struct rec_pos *pos,
	      struct vb_err *err)
{
	_cleanup_(brk_rec_state_freep) struct brk_rec_state *st = NULL;
	struct slot_info si = {0};
	int64_t used;
	int r;

	r = pick_slot(buf, len, &si, &pos->slot, err);
	if (r < 0)
		return r;
	st = rec_state_new();
	if (!st)
		return vb_errf(err, -ENOMEM, "out of memory");
	pos->seq = 0;
	used = replay(st, buf + si.off, si.snap_len, true, si.gen, &pos->seq, err);
	if (used >= 0)
		used = replay(st, buf + si.off + si.snap_len, si.jrn_cap, false, si.gen, &pos->seq,
			      err);
	if (used < 0)
		return (int)used;
	pos->gen = si.gen;
	pos->region_off = si.off;
	pos->snap_len = si.snap_len;
	pos->jrn_cap = si.jrn_cap;
	pos->jrn_used = (uint64_t)used;
	*ret = TAKE_PTR(st);
	return 0;
}

int brk_record_parse(const uint8_t *buf, size_t len, struct brk_rec_state **ret, struct vb_err *err)
{
	struct rec_pos pos;

	if (len > BRK_RECORD_MAX_BYTES)
		return vb_errf(err, -EFBIG, "state record: %zu bytes, more than the %llu accepted",
			       len, (unsigned long long)BRK_RECORD_MAX_BYTES);
	return rec_parse(buf, len, ret, &pos, err);
}

/* The whole file, read (not mapped: a file another process may truncate must not fault us). */
int rec_read_all(int fd, uint8_t **ret, size_t *ret_len, struct vb_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat s;
	size_t off = 0;
	ssize_t n;

	if (fstat(fd, &s) < 0)
		return vb_errf(err, -errno, "state record: fstat: %s", strerror(errno));
	if (!S_ISREG(s.st_mode))
		return vb_errf(err, -EBADMSG, "state record: not a regular file (a memfd)");
	if ((uint64_t)s.st_size > BRK_RECORD_MAX_BYTES)
		return vb_errf(err, -EFBIG, "state record: %lld bytes, more than the %llu accepted",
			       (long long)s.st_size, (unsigned long long)BRK_RECORD_MAX_BYTES);
	buf = malloc(s.st_size ? (size_t)s.st_size : 1);
	if (!buf)
		return vb_errf(err, -ENOMEM, "out of memory");
	while (off < (size_t)s.st_size) {
		n = pread(fd, buf + off, (size_t)s.st_size - off, (off_t)off);
		if (n < 0)
			return vb_errf(err, -errno, "state record: read: %s", strerror(errno));
		if (n == 0)
			return vb_errf(err, -EBADMSG, "state record: shrank while read");
		off += (size_t)n;
	}
	*ret = TAKE_PTR(buf);
	*ret_len = off;
	return 0;
}

int brk_record_load(int fd, struct brk_rec_state **ret, struct vb_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	r = rec_read_all(fd, &buf, &len, err);
	return r < 0 ? r : brk_record_parse(buf, len, ret, err);
}
