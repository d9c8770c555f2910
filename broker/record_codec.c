/*
 * record_codec: the state record's entries as bytes: the payload encoders, the framing (length,
 * sequence number, type, CRC seeded by the generation) and the snapshot, which is every entry
 * that rebuilds a state. Reading them back, with every check, is record_apply.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "crc32c.h"
#include "le.h"
#include "record_priv.h"

/* ---- buffers ------------------------------------------------------------------------------ */

void rec_buf_free(struct rec_buf *b)
{
	free(b->p);
	*b = (struct rec_buf){0};
}

static uint8_t *rec_grow(struct rec_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->oom)
		return NULL;
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	b->len += n;
	return b->p + b->len - n;
}

int rec_buf_reserve(struct rec_buf *b, size_t cap)
{
	uint8_t *p;

	if (b->cap >= cap)
		return 0;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void rec_put(struct rec_buf *b, const void *v, size_t n)
{
	uint8_t *p = rec_grow(b, n);

	if (p && n)
		memcpy(p, v, n);
}

void rec_put_u8(struct rec_buf *b, uint8_t v)
{
	rec_put(b, &v, 1);
}

void rec_put_u32(struct rec_buf *b, uint32_t v)
{
	uint8_t p[4];

	vb_le32_put(p, v);
	rec_put(b, p, 4);
}

void rec_put_u64(struct rec_buf *b, uint64_t v)
{
	uint8_t p[8];

	vb_le64_put(p, v);
	rec_put(b, p, 8);
}

void rec_put_str(struct rec_buf *b, const char *s)
{
	size_t n = strlen(s);
	uint8_t p[2];

	vb_le16_put(p, (uint16_t)n);
	rec_put(b, p, 2);
	rec_put(b, s, n);
}

/* ---- encoders ----------------------------------------------------------------------------- */

void rec_enc_broker(struct rec_buf *b, uint64_t starts, uint64_t epoch, uint64_t next_id)
{
	rec_put_u64(b, starts);
	rec_put_u64(b, epoch);
	rec_put_u64(b, next_id);
}

void rec_enc_vm_put(struct rec_buf *b, const struct brk_rec_vm *vm)
{
	rec_put_str(b, vm->name);
	rec_put_u32(b, vm->max_mappings);
	rec_put_u64(b, vm->max_pinned_bytes);
	rec_put_u32(b, vm->owner_uid);
	rec_put_u32(b, vm->owner_gid);
	rec_put_u32(b, vm->dma_flags);
}

void rec_enc_vm_stats(struct rec_buf *b, const struct brk_rec_vm *vm)
{
	rec_put_str(b, vm->name);
	rec_put_u64(b, vm->maps);
	rec_put_u64(b, vm->unmaps);
	rec_put_u64(b, vm->shares);
}

void rec_enc_dev_put(struct rec_buf *b, const struct brk_rec_dev *d)
{
	rec_put_str(b, d->bdf);
	rec_put_str(b, d->vm);
	rec_put_u32(b, d->state);
	rec_put_u64(b, d->id);
	rec_put_u32(b, d->owner_uid);
	rec_put_u32(b, d->owner_gid);
	rec_put_u8(b, d->allow_mmap);
	rec_put_u32(b, d->protocols);
	rec_put_u32(b, d->iommu_group);
	rec_put_str(b, d->socket_path);
	rec_put_str(b, d->vfu_socket_path);
	rec_put_u32(b, d->generation);
	rec_put_u32(b, d->restarts);
	rec_put_u32(b, d->worker_pid);
	rec_put_u32(b, d->worker_uid);
	rec_put_u32(b, d->worker_gid);
	rec_put_u32(b, d->resets_before);
	rec_put_str(b, d->last_fault);
}

void rec_enc_map(struct rec_buf *b, const char *vm, const struct brk_dma_mapping *m)
{
	uint32_t i;

	rec_put_str(b, vm);
	rec_put_u64(b, m->iova);
	rec_put_u64(b, m->size);
	rec_put_u64(b, m->offset);
	rec_put_u32(b, m->prot);
	rec_put_u64(b, m->dev);
	rec_put_u64(b, m->ino);
	rec_put_u64(b, m->owner);
	rec_put_u32(b, m->nalso);
	for (i = 0; i < m->nalso; i++)
		rec_put_u64(b, m->also[i]);
}

/* count, enabled, unmask_fd, then one bit per vector. */
void rec_enc_irq_state(struct rec_buf *b, uint32_t count, uint32_t enabled, bool unmask_fd,
		       const uint8_t *trig)
{
	uint8_t bits[BRK_REC_MAX_VECTORS / 8] = {0};
	uint32_t i;

	rec_put_u32(b, count);
	rec_put_u32(b, enabled);
	rec_put_u8(b, unmask_fd);
	for (i = 0; i < count && i < BRK_REC_MAX_VECTORS; i++)
		bits[i / 8] |= (uint8_t)((trig[i] ? 1 : 0) << (i % 8));
	rec_put(b, bits, (count + 7) / 8);
}

void rec_enc_irq(struct rec_buf *b, const char *bdf, uint32_t index, uint32_t count,
		 uint32_t enabled, bool unmask_fd, const uint8_t *trig)
{
	rec_put_str(b, bdf);
	rec_put_u32(b, index);
	rec_enc_irq_state(b, count, enabled, unmask_fd, trig);
}

void rec_enc_intent(struct rec_buf *b, const struct brk_rec_pending *p)
{
	rec_put_u64(b, p->id);
	rec_put_u8(b, (uint8_t)p->kind);
	rec_put_str(b, p->key);
	if (p->kind == BRK_JOP_IRQ_SET) {
		rec_put_u32(b, p->index);
		return;
	}
	rec_put_u64(b, p->owner);
	rec_put_u64(b, p->iova);
	rec_put_u64(b, p->size);
	rec_put_u64(b, p->offset);
	rec_put_u32(b, p->prot);
	rec_put_u64(b, p->dev);
	rec_put_u64(b, p->ino);
}

void rec_enc_id(struct rec_buf *b, uint64_t id)
{
	rec_put_u64(b, id);
}

void rec_enc_owner(struct rec_buf *b, const char *vm, uint64_t iova, uint64_t size, uint64_t owner)
{
	rec_put_str(b, vm);
	rec_put_u64(b, iova);
	rec_put_u64(b, size);
	rec_put_u64(b, owner);
}

/* ---- framing ------------------------------------------------------------------------------ */

static uint32_t entry_crc(uint64_t gen, const uint8_t *p, size_t len)
{
	uint8_t g[8];

	vb_le64_put(g, gen);
	return vb_crc32c(vb_crc32c(0, g, 8), p + 4, len - 4);
}

void rec_frame(struct rec_buf *out, uint64_t gen, uint64_t seq, unsigned type,
	       const uint8_t *payload, size_t plen)
{
	size_t len = REC_HDR_LEN + plen;
	uint8_t *p = rec_grow(out, rec_pad8(len));

	if (!p)
		return;
	memset(p, 0, rec_pad8(len));
	vb_le32_put(p + 4, (uint32_t)len);
	vb_le64_put(p + 8, seq);
	vb_le16_put(p + 16, (uint16_t)type);
	if (plen)
		memcpy(p + REC_HDR_LEN, payload, plen);
	vb_le32_put(p, entry_crc(gen, p, len));
}

size_t rec_entry_ok(const uint8_t *p, size_t avail, uint64_t gen, uint64_t seq)
{
	size_t len;

	if (avail < REC_HDR_LEN)
		return 0;
	len = vb_le32_get(p + 4);
	if (len < REC_HDR_LEN || len > avail || vb_le64_get(p + 8) != seq)
		return 0;
	return entry_crc(gen, p, len) == vb_le32_get(p) ? len : 0;
}

/* ---- snapshot ----------------------------------------------------------------------------- */

struct snap_out {
	struct rec_buf *out, payload;
	uint64_t gen, seq;
};

static void snap_emit(struct snap_out *s, unsigned type)
{
	rec_frame(s->out, s->gen, s->seq++, type, s->payload.p, s->payload.len);
	s->payload.len = 0;
	if (s->payload.oom)
		s->out->oom = true;
}

void rec_enc_snapshot(const struct brk_rec_state *st, uint64_t gen, struct rec_buf *out,
		      uint64_t *ret_count)
{
	struct snap_out s = {.out = out, .gen = gen};
	uint32_t i, k;

	rec_enc_broker(&s.payload, st->starts, st->epoch, st->next_id);
	snap_emit(&s, REC_BROKER);
	for (i = 0; i < st->nvms; i++) {
		const struct brk_rec_vm *vm = st->vms[i];

		rec_enc_vm_put(&s.payload, vm);
		snap_emit(&s, REC_VM_PUT);
		rec_enc_vm_stats(&s.payload, vm);
		snap_emit(&s, REC_VM_STATS);
		for (k = 0; k < vm->nmaps; k++) {
			rec_enc_map(&s.payload, vm->name, &vm->map[k]);
			snap_emit(&s, REC_MAP);
		}
	}
	for (i = 0; i < st->ndevs; i++) {
		const struct brk_rec_dev *d = st->devs[i];

		rec_enc_dev_put(&s.payload, d);
		snap_emit(&s, REC_DEV_PUT);
		for (k = 0; k < BRK_REC_MAX_IRQS; k++) {
			const struct brk_rec_irq *x = d->irq[k];

			if (!x || !x->count)
				continue;
			rec_enc_irq(&s.payload, d->bdf, k, x->count, x->enabled, x->unmask_fd,
				    x->trig);
			snap_emit(&s, REC_IRQ);
		}
	}
	for (i = 0; i < st->npending; i++) {
		rec_enc_intent(&s.payload, &st->pending[i]);
		snap_emit(&s, REC_INTENT);
	}
	rec_buf_free(&s.payload);
	*ret_count = s.seq;
}
