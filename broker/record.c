/*
 * record: the state record's file: the memfd, its two header slots, the region (snapshot plus
 * journal) each slot names, appending, compaction, adoption and the journal hooks of the DMA
 * table and the interrupt state. Layout and entry format: record_priv.h; reading a record:
 * record_load.c; what entries mean: record_apply.c.
 *
 * Why it survives a SIGKILL at any instant: the memfd's pages belong to the file, so a store
 * that happened is kept whatever the process does next. An entry is checked by its own CRC
 * (seeded by the generation, so bytes left from older regions never pass) and sequence number,
 * so a half-written entry ends the journal on load and whatever follows it was never written.
 * A compaction writes the new region where the live one is not, then the other slot: a slot
 * half-written fails its CRC and the previous one still names an intact region.
 *
 * Compaction off the loop: a snapshot of 65535 mappings is 5 MB and took the broker's loop 20-70
 * ms to encode and write. Once the journal is half full (and the snapshot worth it), the loop
 * copies the state (a few memcpy) and a thread encodes that copy and writes it, with pwrite,
 * into the region the next compaction would use: nothing any slot names. Changes go on being
 * appended to the live journal meanwhile. When the thread is done, the next change re-frames
 * the entries appended since the copy (their bytes are in the live journal) after the new
 * snapshot and writes the other slot, the last store as before. A SIGKILL at any instant so
 * leaves what it left before: the live slot's region intact until the flip. The loop waits for
 * the thread only when the journal fills before it is done (counted: bg_waits).
 *
 * Trusts: nothing in a record it loads (record_apply.c checks every entry); its own memfd once
 * adopted (sealed against shrinking, so the mapping cannot fault).
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

/* Journal room of a new region: at least this, and at least the snapshot's size, so the O(size)
 * compaction happens once per as many bytes of appends (O(1) amortized). */
#define REC_JRN_MIN (256u * 1024)
/* Room an intent keeps for its commit (an IRQ commit with 2048 vectors is the largest). */
#define REC_DONE_ROOM 512u
/* A snapshot this small is written on the loop in well under a millisecond, less than a thread
 * costs to start. */
#define REC_BG_MIN (64u * 1024)

void (*rec_bg_hook)(enum rec_bg_point point);

/* A compaction in a thread: what the loop gives it, and what it gives back once `done`. */
struct rec_bg {
	pthread_t th;
	bool running; /* started and not joined */
	atomic_bool done;
	/* in: the state when it started (the thread's, freed by it), the file, the live region */
	struct brk_rec_state *copy;
	int fd;
	uint64_t gen, live_off, live_end, j0;
	/* out */
	int result;
	uint64_t off, snap_len, jrn_cap, count;
	uint32_t snap_crc;
};

struct brk_record {
	int fd;
	uint8_t *base;
	size_t size; /* the memfd's size, all mapped */
	struct brk_rec_state *st;
	unsigned slot; /* the live slot */
	uint64_t gen, region_off, snap_len, jrn_cap, jrn_used, seq;
	uint64_t appends, compactions, bg_compactions, bg_waits;
	struct rec_buf payload, frame;
	bool broken; /* a commit could not be applied: refuse everything after */
	struct rec_bg bg;
};

static uint64_t round_page(uint64_t n)
{
	return (n + REC_PAGE - 1) & ~(uint64_t)(REC_PAGE - 1);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* The memfd grows to `size` bytes (never shrinks: it is sealed against that). */
static int grow(struct brk_record *rec, uint64_t size)
{
	void *p;

	if (size <= rec->size)
		return 0;
	if (size > BRK_RECORD_MAX_BYTES)
		return -ENOSPC;
	if (ftruncate(rec->fd, (off_t)size) < 0)
		return -errno;
	p = rec->base ? mremap(rec->base, rec->size, size, MREMAP_MAYMOVE)
		      : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, rec->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	rec->base = p;
	rec->size = size;
	return 0;
}

void rec_slot_fill(uint8_t *slot, uint64_t gen, uint64_t off, uint64_t snap_len, uint64_t jrn_cap,
		   uint32_t snap_crc)
{
	memset(slot, 0, REC_SLOT_LEN);
	memcpy(slot, REC_MAGIC, 8);
	vb_le32_put(slot + REC_SLOT_VERSION, BRK_RECORD_VERSION);
	vb_le32_put(slot + REC_SLOT_SIZE, REC_SLOT_LEN);
	vb_le64_put(slot + REC_SLOT_GEN, gen);
	vb_le64_put(slot + REC_SLOT_OFF, off);
	vb_le64_put(slot + REC_SLOT_SNAPLEN, snap_len);
	vb_le64_put(slot + REC_SLOT_JRNCAP, jrn_cap);
	vb_le32_put(slot + REC_SLOT_SNAPCRC, snap_crc);
	vb_le32_put(slot + REC_SLOT_CRC, vb_crc32c(0, slot, REC_SLOT_CRC));
}

/* Zeroes [off, off + len) of the memfd by giving its pages back (a hole reads as zeros), so that
 * clearing a journal costs no memory; the memset is for a kernel that refuses. */
static void clear(struct brk_record *rec, uint64_t off, uint64_t len)
{
	if (len && fallocate(rec->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			     (off_t)len) < 0)
		memset(rec->base + off, 0, len);
}

/* A region for a snapshot of `snap_len` bytes: its journal room is at least as much. */
static uint64_t region_for(uint64_t snap_len)
{
	return round_page(snap_len + (snap_len > REC_JRN_MIN ? snap_len : REC_JRN_MIN));
}

/* Writes the whole state as a new region and flips to it. Nothing the live slot names is
 * touched until the flip, which is the last store. */
static int compact(struct brk_record *rec)
{
	_cleanup_(rec_buf_free) struct rec_buf snap = {0};
	uint64_t count, off, jrn_cap, region, live_end;
	uint8_t slot[REC_SLOT_LEN] = {0};
	int r;

	rec_enc_snapshot(rec->st, rec->gen + 1, &snap, &count);
	if (snap.oom)
		return -ENOMEM;
	region = region_for(snap.len);
	jrn_cap = region - snap.len;
	live_end = round_page(rec->region_off + rec->snap_len + rec->jrn_cap);
	off = rec->gen == 0 || REC_PAGE + region <= rec->region_off ? REC_PAGE : live_end;
	r = grow(rec, off + region);
	if (r < 0)
		return r;
	memcpy(rec->base + off, snap.p, snap.len);
	/* Old regions' bytes never pass as entries of this generation, whatever they say: even
	 * text that reached the record (a fault message) laid out as an entry cannot. */
	clear(rec, off + snap.len, jrn_cap);
	rec_slot_fill(slot, rec->gen + 1, off, snap.len, jrn_cap, vb_crc32c(0, snap.p, snap.len));
	/* The snapshot is in the file before the slot that names it. */
	atomic_thread_fence(memory_order_seq_cst);
	memcpy(rec->base + (rec->slot ^ 1) * REC_SLOT_STEP, slot, REC_SLOT_LEN);
	atomic_thread_fence(memory_order_seq_cst);
	/* The region the other slot names is dead now: its memory goes back. */
	if (rec->gen)
		clear(rec, rec->region_off, rec->snap_len + rec->jrn_cap);
	rec->slot ^= 1;
	rec->gen++;
	rec->region_off = off;
	rec->snap_len = snap.len;
	rec->jrn_cap = jrn_cap;
	rec->jrn_used = 0;
	rec->seq = count;
	rec->compactions++;
	return 0;
}

static void bg_hook(enum rec_bg_point point)
{
	if (rec_bg_hook)
		rec_bg_hook(point);
}

static int pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	ssize_t n;

	while (len) {
		n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* The thread's part of a compaction: clear()'s and the snapshot's writes, through the fd (the
 * loop may move its mapping meanwhile). */
static int bg_write(struct rec_bg *bg, const struct rec_buf *snap)
{
	static const uint8_t zeros[REC_PAGE];
	uint64_t end = bg->off + bg->snap_len + bg->jrn_cap, o;
	struct stat s;
	int r;

	if (end > BRK_RECORD_MAX_BYTES)
		return -ENOSPC;
	if (fstat(bg->fd, &s) < 0)
		return -errno;
	if ((uint64_t)s.st_size < end && ftruncate(bg->fd, (off_t)end) < 0)
		return -errno;
	/* Half, then the rest: a test stops the thread between them. */
	r = pwrite_all(bg->fd, snap->p, snap->len / 2, bg->off);
	bg_hook(REC_BG_HALF_WRITTEN);
	if (r == 0)
		r = pwrite_all(bg->fd, snap->p + snap->len / 2, snap->len - snap->len / 2,
			       bg->off + snap->len / 2);
	if (r < 0 || fallocate(bg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (off_t)(bg->off + bg->snap_len), (off_t)bg->jrn_cap) == 0)
		return r;
	for (o = bg->off + bg->snap_len; o < end && r == 0; o += sizeof(zeros))
		r = pwrite_all(bg->fd, zeros, end - o < sizeof(zeros) ? end - o : sizeof(zeros), o);
	return r;
}

static void *bg_main(void *arg)
{
	struct rec_bg *bg = arg;
	struct rec_buf snap = {0};
	uint64_t region;

	rec_enc_snapshot(bg->copy, bg->gen + 1, &snap, &bg->count);
	brk_rec_state_free(bg->copy);
	bg->copy = NULL;
	bg->result = snap.oom ? -ENOMEM : 0;
	if (bg->result == 0) {
		/* Twice the journal room compact() gives: appends go on while the next one is
		 * written, and the loop waits for it only if they fill it first. */
		region = round_page(snap.len +
				    (2 * snap.len > REC_JRN_MIN ? 2 * snap.len : REC_JRN_MIN));
		bg->snap_len = snap.len;
		bg->jrn_cap = region - snap.len;
		/* Where compact() would put it: before the live region if it fits, else after. */
		bg->off = REC_PAGE + region <= bg->live_off ? REC_PAGE : bg->live_end;
		bg->snap_crc = vb_crc32c(0, snap.p, snap.len);
		bg->result = bg_write(bg, &snap);
	}
	rec_buf_free(&snap);
	bg_hook(REC_BG_WRITTEN);
	atomic_store_explicit(&bg->done, true, memory_order_release);
	return NULL;
}

/* Starts a compaction in a thread once the journal is half full. Nothing happens when it cannot
 * start: ensure_room() compacts on the loop as before. */
static void bg_start(struct brk_record *rec)
{
	struct brk_rec_state *copy;
	sigset_t all, old;
	int r;

	if (rec->bg.running || rec->broken || rec->snap_len < REC_BG_MIN ||
	    rec->jrn_used * 4 < rec->jrn_cap)
		return;
	copy = rec_state_copy(rec->st);
	if (!copy)
		return;
	rec->bg = (struct rec_bg){
	    .copy = copy,
	    .fd = rec->fd,
	    .gen = rec->gen,
	    .live_off = rec->region_off,
	    .live_end = round_page(rec->region_off + rec->snap_len + rec->jrn_cap),
	    .j0 = rec->jrn_used,
	};
	atomic_init(&rec->bg.done, false);
	/* The thread takes no signal: they stay the loop's (libuv's handlers, SIGCHLD). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&rec->bg.th, NULL, bg_main, &rec->bg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		brk_rec_state_free(copy);
		rec->bg.copy = NULL;
		return;
	}
	rec->bg.running = true;
}

/* Makes the thread's region live: the entries appended since it started, framed again for the
 * new generation after its snapshot, then the other slot. -ENOSPC when they do not fit in its
 * journal (then the live region simply stays). */
static int bg_flip(struct brk_record *rec)
{
	_cleanup_(rec_buf_free) struct rec_buf f = {0};
	struct rec_bg *bg = &rec->bg;
	uint64_t pos = bg->j0, seq = bg->count, used = 0, gen = rec->gen + 1;
	uint8_t slot[REC_SLOT_LEN];
	const uint8_t *jrn;
	uint8_t *dst;
	int r;

	r = grow(rec, bg->off + bg->snap_len + bg->jrn_cap);
	if (r < 0)
		return r;
	jrn = rec->base + rec->region_off + rec->snap_len;
	dst = rec->base + bg->off + bg->snap_len;
	while (pos < rec->jrn_used) {
		uint32_t len = vb_le32_get(jrn + pos + 4);

		f.len = 0;
		rec_frame(&f, gen, seq, vb_le16_get(jrn + pos + 16), jrn + pos + REC_HDR_LEN,
			  len - REC_HDR_LEN);
		if (f.oom)
			return -ENOMEM;
		if (used + f.len > bg->jrn_cap)
			return -ENOSPC;
		memcpy(dst + used, f.p, f.len);
		used += f.len;
		seq++;
		pos += rec_pad8(len);
	}
	bg_hook(REC_BG_DELTA_WRITTEN);
	rec_slot_fill(slot, gen, bg->off, bg->snap_len, bg->jrn_cap, bg->snap_crc);
	atomic_thread_fence(memory_order_seq_cst);
	memcpy(rec->base + (rec->slot ^ 1) * REC_SLOT_STEP, slot, REC_SLOT_LEN);
	atomic_thread_fence(memory_order_seq_cst);
	bg_hook(REC_BG_FLIPPED);
	clear(rec, rec->region_off, rec->snap_len + rec->jrn_cap);
	rec->slot ^= 1;
	rec->gen = gen;
	rec->region_off = bg->off;
	rec->snap_len = bg->snap_len;
	rec->jrn_cap = bg->jrn_cap;
	rec->jrn_used = used;
	rec->seq = seq;
	rec->compactions++;
	rec->bg_compactions++;
	return 0;
}

/* Collects the thread's compaction when it is done (or, with `wait`, once it is) and flips to
 * it. */
static void bg_finish(struct brk_record *rec, bool wait)
{
	if (!rec->bg.running)
		return;
	if (!atomic_load_explicit(&rec->bg.done, memory_order_acquire)) {
		if (!wait)
			return;
		rec->bg_waits++;
	}
	pthread_join(rec->bg.th, NULL);
	rec->bg.running = false;
	if (rec->bg.result == 0 && !rec->broken)
		(void)bg_flip(rec);
}

/* Journal room for `bytes` more, compacting when the live journal lacks it. */
static int ensure_room(struct brk_record *rec, uint64_t bytes)
{
	int r;

	bg_finish(rec, false);
	if (rec->jrn_used + bytes <= rec->jrn_cap)
		return 0;
	bg_finish(rec, true);
	if (rec->jrn_used + bytes <= rec->jrn_cap)
		return 0;
	r = compact(rec);
	if (r == 0 && rec->jrn_used + bytes > rec->jrn_cap)
		r = -ENOSPC;
	return r;
}

/* Applies rec->payload as an entry of `type` to the live state, then appends it. Room must
 * have been ensured. */
static int append(struct brk_record *rec, unsigned type, struct vb_err *err)
{
	uint8_t *at;
	int r;

	if (rec->payload.oom)
		return vb_errf(err, -ENOMEM, "out of memory");
	r = rec_apply(rec->st, type, false, rec->payload.p, rec->payload.len, err);
	if (r < 0)
		return r;
	rec->frame.len = 0;
	rec_frame(&rec->frame, rec->gen, rec->seq, type, rec->payload.p, rec->payload.len);
	if (rec->frame.oom || rec->jrn_used + rec->frame.len > rec->jrn_cap) {
		/* Cannot happen once room was ensured and the frame buffer grown; refuse later
		 * changes rather than keep a state the file lacks. */
		rec->broken = true;
		return vb_errf(err, -EIO, "state record: an applied change could not be written");
	}
	at = rec->base + rec->region_off + rec->snap_len + rec->jrn_used;
	memcpy(at, rec->frame.p, rec->frame.len);
	rec->jrn_used += rec->frame.len;
	rec->seq++;
	rec->appends++;
	return 0;
}

/* One change: room for it (and `extra` more, for the commit an intent promises), then apply and
 * append. The frame buffer is grown first so that append cannot fail for memory. */
static int change(struct brk_record *rec, unsigned type, uint64_t extra, struct vb_err *err)
{
	uint64_t len = rec_pad8(REC_HDR_LEN + rec->payload.len);
	int r;

	if (rec->broken)
		return vb_errf(err, -EIO, "state record: refusing changes after a failed write");
	if (rec->payload.oom)
		return vb_errf(err, -ENOMEM, "out of memory");
	r = ensure_room(rec, len + extra);
	if (r < 0)
		return vb_errf(err, r, "state record: no room for a change: %s", strerror(-r));
	if (rec_buf_reserve(&rec->frame, len + extra) < 0)
		return vb_errf(err, -ENOMEM, "out of memory");
	r = append(rec, type, err);
	if (r == 0)
		bg_start(rec);
	return r;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static struct brk_record *rec_alloc(int fd)
{
	struct brk_record *rec = calloc(1, sizeof(*rec));

	if (rec)
		rec->fd = fd;
	return rec;
}

void brk_record_free(struct brk_record *rec)
{
	if (!rec)
		return;
	if (rec->bg.running)
		pthread_join(rec->bg.th, NULL);
	if (rec->base)
		munmap(rec->base, rec->size);
	if (rec->fd >= 0)
		close(rec->fd);
	brk_rec_state_free(rec->st);
	rec_buf_free(&rec->payload);
	rec_buf_free(&rec->frame);
	free(rec);
}

int brk_record_new(struct brk_record **ret, struct vb_err *err)
{
	_cleanup_(brk_record_freep) struct brk_record *rec = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	fd = memfd_create(BRK_RECORD_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return vb_errf(err, -errno, "state record: memfd_create: %s", strerror(errno));
	/* Sealed against shrinking: a mapping of it can never fault, here or in a later broker. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
		return vb_errf(err, -errno, "state record: sealing the memfd: %s", strerror(errno));
	rec = rec_alloc(fd);
	if (!rec)
		return vb_errf(err, -ENOMEM, "out of memory");
	TAKE_FD(fd);
	rec->st = rec_state_new();
	rec->slot = 1; /* the first compaction writes slot 0, generation 1 */
	r = rec->st ? grow(rec, REC_PAGE) : -ENOMEM;
	if (r == 0)
		r = compact(rec);
	if (r < 0)
		return vb_errf(err, r, "state record: creating it: %s", strerror(-r));
	*ret = TAKE_PTR(rec);
	return 0;
}

int brk_record_adopt(int fd, struct brk_record **ret, struct vb_err *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_(brk_record_freep) struct brk_record *rec = NULL;
	_cleanup_close_ int dup = -1;
	struct rec_pos pos;
	size_t len = 0;
	int seals, r;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return vb_errf(err, -EPERM,
			       "state record: the memfd is not sealed against shrinking");
	r = rec_read_all(fd, &buf, &len, err);
	if (r == 0 && len > BRK_RECORD_MAX_BYTES)
		r = vb_errf(err, -EFBIG, "state record: too large");
	if (r < 0)
		return r;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0)
		return vb_errf(err, -errno, "state record: keeping the memfd: %s", strerror(errno));
	rec = rec_alloc(dup);
	if (!rec)
		return vb_errf(err, -ENOMEM, "out of memory");
	TAKE_FD(dup);
	r = rec_parse(buf, len, &rec->st, &pos, err);
	if (r < 0)
		return r;
	rec->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, rec->fd, 0);
	if (rec->base == MAP_FAILED) {
		rec->base = NULL;
		return vb_errf(err, -errno, "state record: mmap: %s", strerror(errno));
	}
	/* What follows the tail is a torn entry or nothing: cleared, so that an entry appended over
	 * a longer torn one can never be followed by a remnant that checks. */
	rec->size = len;
	clear(rec, pos.region_off + pos.snap_len + pos.jrn_used, pos.jrn_cap - pos.jrn_used);
	rec->slot = pos.slot;
	rec->gen = pos.gen;
	rec->region_off = pos.region_off;
	rec->snap_len = pos.snap_len;
	rec->jrn_cap = pos.jrn_cap;
	rec->jrn_used = pos.jrn_used;
	rec->seq = pos.seq;
	*ret = TAKE_PTR(rec);
	return 0;
}

int brk_record_fd(const struct brk_record *rec)
{
	return rec->fd;
}

const struct brk_rec_state *brk_record_state(const struct brk_record *rec)
{
	return rec->st;
}

int brk_record_compact(struct brk_record *rec)
{
	bg_finish(rec, true);
	return rec->broken ? -EIO : compact(rec);
}

void brk_record_stats(const struct brk_record *rec, struct brk_record_stats *out)
{
	*out = (struct brk_record_stats){
	    .appends = rec->appends,
	    .compactions = rec->compactions,
	    .bg_compactions = rec->bg_compactions,
	    .bg_waits = rec->bg_waits,
	    .file_bytes = rec->size,
	    .snap_bytes = rec->snap_len,
	    .jrn_bytes = rec->jrn_used,
	    .jrn_cap = rec->jrn_cap,
	    .generation = rec->gen,
	    .broken = rec->broken,
	};
}

/* ---- mutations ---------------------------------------------------------------------------- */

static bool str_fits(const char *s, size_t max)
{
	return strnlen(s, max + 1) <= max;
}

/* A change the caller asked for: what apply calls damage is a bad argument here. */
static int user_change(struct brk_record *rec, unsigned type)
{
	int r = change(rec, type, 0, NULL);

	return r == -EBADMSG ? -EINVAL : r;
}

static struct rec_buf *payload(struct brk_record *rec)
{
	rec->payload.len = 0;
	rec->payload.oom = false;
	return &rec->payload;
}

int brk_record_set_broker(struct brk_record *rec, uint64_t starts, uint64_t epoch)
{
	rec_enc_broker(payload(rec), starts, epoch, rec->st->next_id);
	return user_change(rec, REC_BROKER);
}

int brk_record_vm_put(struct brk_record *rec, const struct brk_rec_vm *vm)
{
	if (!str_fits(vm->name, BRK_REC_NAME_MAX))
		return -EINVAL;
	rec_enc_vm_put(payload(rec), vm);
	return user_change(rec, REC_VM_PUT);
}

int brk_record_vm_del(struct brk_record *rec, const char *name)
{
	uint32_t i;

	if (!str_fits(name, BRK_REC_NAME_MAX) || !rec_state_vm(rec->st, name))
		return -ENOENT;
	for (i = 0; i < rec->st->ndevs; i++) {
		if (!strcmp(rec->st->devs[i]->vm, name))
			return -EBUSY;
	}
	rec_put_str(payload(rec), name);
	return user_change(rec, REC_VM_DEL);
}

int brk_record_dev_put(struct brk_record *rec, const struct brk_rec_dev *dev)
{
	if (!str_fits(dev->bdf, BRK_REC_BDF_MAX) || !str_fits(dev->vm, BRK_REC_NAME_MAX) ||
	    !str_fits(dev->socket_path, BRK_REC_PATH_MAX - 1) ||
	    !str_fits(dev->vfu_socket_path, BRK_REC_PATH_MAX - 1) ||
	    !str_fits(dev->last_fault, BRK_REC_FAULT_MAX - 1))
		return -EINVAL;
	if (!rec_state_vm(rec->st, dev->vm))
		return -ENOENT;
	rec_enc_dev_put(payload(rec), dev);
	return user_change(rec, REC_DEV_PUT);
}

int brk_record_dev_del(struct brk_record *rec, const char *bdf)
{
	if (!str_fits(bdf, BRK_REC_BDF_MAX) || !rec_state_dev(rec->st, bdf))
		return -ENOENT;
	rec_put_str(payload(rec), bdf);
	return user_change(rec, REC_DEV_DEL);
}

int brk_record_resolve(struct brk_record *rec, uint64_t id)
{
	if (!rec_state_pending(rec->st, id))
		return -ENOENT;
	rec_enc_id(payload(rec), id);
	return user_change(rec, REC_RESOLVE);
}

/* ---- journal hooks ------------------------------------------------------------------------ */

/* What an intent needs before it is written, so its commit cannot fail: the VM's room for one
 * more mapping, the device's slot for the index's state. */
static int intent_reserve(struct brk_record *rec, const struct brk_jop *op, const char *key)
{
	struct brk_rec_vm *vm;
	struct brk_rec_dev *d;

	if (op->kind == BRK_JOP_IRQ_SET) {
		d = rec_state_dev(rec->st, key);
		if (!d)
			return -ENOENT;
		if (op->index >= BRK_REC_MAX_IRQS)
			return -EINVAL;
		if (!d->irq[op->index] &&
		    !(d->irq[op->index] = calloc(1, sizeof(struct brk_rec_irq))))
			return -ENOMEM;
		return 0;
	}
	vm = rec_state_vm(rec->st, key);
	if (!vm)
		return -ENOENT;
	return op->kind == BRK_JOP_DMA_MAP ? rec_vm_reserve(vm) : 0;
}

static int hook_intent(const struct brk_journal *j, struct brk_jop *op)
{
	struct brk_record *rec = j->ctx;
	struct brk_rec_pending p = {.kind = op->kind,
				    .owner = op->owner,
				    .iova = op->iova,
				    .size = op->size,
				    .offset = op->offset,
				    .prot = op->prot,
				    .dev = op->dev,
				    .ino = op->ino,
				    .index = op->index};
	int r;

	switch (op->kind) {
	case BRK_JOP_DMA_SHARE:
	case BRK_JOP_DMA_UNSHARE:
		/* No kernel call: the change itself is recorded, and the caller makes it next. */
		rec_enc_owner(payload(rec), j->key, op->iova, op->size, op->owner);
		return change(rec, op->kind == BRK_JOP_DMA_SHARE ? REC_SHARE : REC_UNSHARE, 0,
			      NULL);
	case BRK_JOP_DMA_FORGET:
		rec_put_str(payload(rec), j->key);
		return change(rec, REC_FORGET, 0, NULL);
	case BRK_JOP_DMA_MAP:
	case BRK_JOP_DMA_UNMAP:
	case BRK_JOP_IRQ_SET:
		break;
	default:
		return -EINVAL;
	}
	r = intent_reserve(rec, op, j->key);
	if (r == 0 && rec_buf_reserve(&rec->payload, REC_DONE_ROOM) < 0)
		r = -ENOMEM;
	if (r < 0)
		return r;
	p.id = rec->st->next_id;
	memcpy(p.key, j->key, sizeof(p.key));
	rec_enc_intent(payload(rec), &p);
	r = change(rec, REC_INTENT, REC_DONE_ROOM, NULL);
	if (r == 0)
		op->id = p.id;
	return r == -EBADMSG ? -EINVAL : r;
}

static void hook_done(const struct brk_journal *j, const struct brk_jop *op, bool ok)
{
	struct brk_record *rec = j->ctx;
	struct rec_buf *b;

	if (op->kind != BRK_JOP_DMA_MAP && op->kind != BRK_JOP_DMA_UNMAP &&
	    op->kind != BRK_JOP_IRQ_SET)
		return; /* recorded by intent() */
	b = payload(rec);
	rec_enc_id(b, op->id);
	if (ok && op->kind == BRK_JOP_IRQ_SET) {
		rec_enc_irq_state(b, op->irq_count, op->irq_enabled, op->irq_unmask_fd,
				  op->irq_trig);
	}
	/* The room was ensured by the intent; a failure here marks the record broken. */
	if (append(rec, ok ? REC_COMMIT : REC_ABORT, NULL) < 0)
		rec->broken = true;
}

static int journal(struct brk_record *rec, const char *key, size_t max, struct brk_journal *j)
{
	if (!str_fits(key, max) || !*key)
		return -EINVAL;
	*j = (struct brk_journal){.ctx = rec, .intent = hook_intent, .done = hook_done};
	strcpy(j->key, key);
	return 0;
}

int brk_record_dma_journal(struct brk_record *rec, const char *vm, struct brk_journal *j)
{
	return journal(rec, vm, BRK_REC_NAME_MAX, j);
}

int brk_record_irq_journal(struct brk_record *rec, const char *bdf, struct brk_journal *j)
{
	return journal(rec, bdf, BRK_REC_BDF_MAX, j);
}
